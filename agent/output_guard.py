"""One guard per output of the unit, so a fault in one never silences the others.

The core thread refreshes the touchscreen, the rider display, the LEDs and
buzzer, the speech, the state file and the status file through an
:class:`OutputGuard` each. A refresh that raises:

* is counted (``failures``), and the output is marked ``failing`` until a
  refresh succeeds again (then ``ok``, logged once);
* is logged with its traceback the first time this error is seen; the same
  error again is logged at most once a minute, with how often it happened
  meanwhile (a full disk or a broken screen must not flood the journal);
* degrades that output alone: after a failure the guard skips the output for a
  short back-off (0.5 s doubling to :data:`MAX_BACKOFF_S`), so a refresh that
  fails every time costs a retry every few seconds, not a busy core. A skipped
  refresh is not a failure; ``skipped`` counts them.

The core never sees the exception: the event's other effects, the telemetry
schedule and the answers to dispatch go on.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Callable

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 5.0
REPEAT_LOG_S = 60.0
KNOWN_ERRORS = 32  # distinct errors remembered per output, oldest forgotten first


class OutputGuard:
    def __init__(self, name: str, log: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.log = log
        self.clock = clock
        self.failures = 0
        self.skipped = 0
        self.consecutive = 0
        self.last_error: str | None = None
        self._retry_at = 0.0
        self._seen: OrderedDict[str, list[float]] = OrderedDict()  # error -> [last logged at, repeats since]

    @property
    def ok(self) -> bool:
        return self.consecutive == 0

    def run(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Call ``fn(*args)``; True when it ran without raising (False: failed, or skipped
        during the back-off; a caller that must get through, like a state write, calls again)."""
        now = self.clock()
        if self.consecutive and now < self._retry_at:
            self.skipped += 1
            return False
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the point of the guard
            self._failed(exc, now)
            return False
        if self.consecutive:
            self.log.warning("%s works again after %d failed refreshes", self.name, self.consecutive)
            self.consecutive = 0
        return True

    def _failed(self, exc: BaseException, now: float) -> None:
        self.failures += 1
        self.consecutive += 1
        backoff = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** min(self.consecutive - 1, 16))
        self._retry_at = now + backoff
        error = f"{type(exc).__name__}: {exc}"[:300]
        self.last_error = error
        key = _kind(exc)
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = [now, 0]
            while len(self._seen) > KNOWN_ERRORS:
                self._seen.popitem(last=False)
            self.log.error("%s failed (it alone is skipped for %g s, the unit carries on): %s",
                           self.name, backoff, error, exc_info=exc)
            return
        self._seen.move_to_end(key)
        seen[1] += 1
        if now - seen[0] >= REPEAT_LOG_S:
            self.log.error("%s still failing: %s (%d more times in the last %.0f s)",
                           self.name, error, seen[1], now - seen[0])
            seen[0], seen[1] = now, 0

    def snapshot(self) -> dict[str, Any]:
        """For ``umps-agent status``."""
        return {"state": "ok" if self.ok else "failing", "failures": self.failures, "skipped": self.skipped,
                "last_error": self.last_error}


def _kind(exc: BaseException) -> str:
    """What makes two errors "the same" for the log: an OSError by its errno (a full disk is a
    full disk whatever temporary file it hit), anything else by its type and text."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{type(exc).__name__}: [Errno {exc.errno}] {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"[:300]
