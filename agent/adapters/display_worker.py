"""The panel display's own thread: draws the newest view and turns its pages.

A full 128×64 frame is about 1 KiB over I2C: 25 ms at 400 kHz, 100 ms at the
default 100 kHz, so the unit's core never draws itself. ``post(view)`` only
leaves the view in a one-slot mailbox and returns; the worker draws the latest
view (intermediate ones are skipped: only the newest matters on a display).
Works for the OLED and the character LCD alike (anything with
``show(view) -> bool``, and ``pages`` / ``turn_page()`` for a display whose
views may take several pages).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agent.core.panel_view import PanelView

log = logging.getLogger(__name__)

PAGE_S = 3.0  # how long each page of a long nature or address stays up


class DisplayWorker:
    """Draws on its own thread so a slow bus never holds up the caller.

    When the view on show has several pages (``display.pages``), the worker
    turns them every ``page_s`` seconds (``display.turn_page()``) until a new
    view comes.
    """

    def __init__(self, display, name: str = "panel-display", page_s: float = PAGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.display = display
        self.page_s = page_s
        self._clock = clock
        self._wake = threading.Condition()
        self._pending: PanelView | None = None
        self._busy = False
        self._stopping = False
        # When the next page turns, and what the pages on show are made of. A new view with
        # the same paged text (the distance changed) keeps the timer: pages turn every page_s
        # whatever else the view does; another text starts a new one.
        self._turn_at: float | None = None
        self._paged: object = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def post(self, view: PanelView) -> None:
        with self._wake:
            self._pending = view
            self._wake.notify_all()

    def wait_drawn(self, timeout: float) -> bool:
        """Wait until the last posted view has been handed to the display; False on timeout."""
        with self._wake:
            return self._wake.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("panel display worker did not stop")

    def _run(self) -> None:
        while True:
            with self._wake:
                turn_at = self._turn_at
                timeout = None if turn_at is None else max(0.0, turn_at - self._clock())
                self._wake.wait_for(lambda: self._pending is not None or self._stopping, timeout)
                if self._stopping:
                    return
                view, self._pending, self._busy = self._pending, None, True
            try:
                if view is not None:
                    self.display.show(view)
                    self._shown()
                if self._turn_at is not None and self._clock() >= self._turn_at:
                    self.display.turn_page()
                    # On time, not from whenever this thread got round to it; a late thread
                    # (a slow bus) starts a fresh interval rather than turning twice at once.
                    self._turn_at += self.page_s
                    if self._turn_at <= self._clock():
                        self._turn_at = self._clock() + self.page_s
            except Exception:  # show() is not supposed to raise; never let the worker die
                log.exception("panel display worker: drawing failed")
            finally:
                with self._wake:
                    self._busy = False
                    self._wake.notify_all()

    def _shown(self) -> None:
        """After a new view: keep, start or stop the page timer."""
        pages = getattr(self.display, "pages", 1)
        paged = getattr(self.display, "page_key", None)
        if pages < 2:
            self._turn_at = None
        elif paged != self._paged or self._turn_at is None:
            self._turn_at = self._clock() + self.page_s
        self._paged = paged
