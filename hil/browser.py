"""Debian's Chromium as the tests, the bench and the rig drive it through Playwright.

One place for the binary and its flags, so the page is measured and tested
in the same browser the car's kiosk runs (``systemd/umps-kiosk.service``):
Playwright's own browsers are never downloaded (``executable_path``, never
``playwright install``). The flags keep a headless Chromium quiet on a closed
network (no background connections, no component updates, no sync) and let
a call alert sound before anyone touched the screen, as in the kiosk.
"""

from __future__ import annotations

import os
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # As in the car's kiosk: a call alert may sound before anyone touched the screen.
    "--autoplay-policy=no-user-gesture-required",
)


def chromium_missing() -> str | None:
    """Why Chromium cannot be driven here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"Debian chromium not installed at {CHROMIUM} (`make test` installs it)"
    return None


def launch(playwright: Any) -> Any:
    """A headless Debian Chromium from a started ``sync_playwright()``."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
