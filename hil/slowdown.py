"""How much slower than a Pi the machine running the rig is, for the rig's own deadlines.

The rig waits a bounded time for things the agent does: coming online, a message
arriving within a scenario's bound. Those bounds are set for a Pi or a developer's
machine. Under QEMU user emulation (``make test-arm64``, docs/platform.md) the same
agent runs about ten times slower, and the waits must stretch with it: the run still
checks what happens and in which order, only not on a Pi's clock.

``UMPS_RIG_SLOWDOWN`` (a number >= 1, default 1) is that factor. It widens deadlines
only, never what is checked; ``scripts/arm64-inside.sh`` sets it, nothing else does.
A value that is not a number >= 1 is refused with a clear error rather than ignored.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping

SLOWDOWN_ENV = "UMPS_RIG_SLOWDOWN"


def slowdown(environ: Mapping[str, str] | None = None) -> float:
    """The factor from ``UMPS_RIG_SLOWDOWN``: 1.0 when unset or empty."""
    text = (os.environ if environ is None else environ).get(SLOWDOWN_ENV, "").strip()
    if not text:
        return 1.0
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"{SLOWDOWN_ENV}={text!r}: not a number (a factor >= 1, e.g. 8)") from None
    if not math.isfinite(factor) or factor < 1.0:
        raise ValueError(f"{SLOWDOWN_ENV}={text!r}: the factor must be a finite number >= 1")
    return factor
