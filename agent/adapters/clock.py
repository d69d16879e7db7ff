"""The system clock, and whether it is synchronised.

A unit has no real-time clock: until chrony has locked onto the GNSS (or NTP
over the cellular link), the system time after a boot may be hours or years
off. Reports say where their time came from, so the core needs to know. The
kernel knows: ``adjtimex(2)`` returns ``TIME_ERROR`` while the clock is
unsynchronised. This is read through ``ctypes`` (no extra package) and cached
for a few seconds, because it is asked on every event.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import time

TIME_ERROR = 5


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: only ``modes`` (0 = read only) is set; the
    # padding is larger than the struct on every architecture, so the kernel's
    # write stays inside the buffer.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 256)]


class SystemClock:
    def __init__(self, *, recheck_s: float = 10.0, monotonic=time.monotonic):
        self._recheck_s = recheck_s
        self._monotonic = monotonic
        self._checked_at: float | None = None
        self._synced = False
        path = ctypes.util.find_library("c")
        self._adjtimex = getattr(ctypes.CDLL(path, use_errno=True), "adjtimex", None) if path else None

    def utc(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def synced(self) -> bool:
        now = self._monotonic()
        if self._checked_at is None or now - self._checked_at >= self._recheck_s:
            self._checked_at = now
            self._synced = self._query()
        return self._synced

    def _query(self) -> bool:
        if self._adjtimex is None:
            return False
        buf = _Timex()
        state = self._adjtimex(ctypes.byref(buf))
        return state >= 0 and state != TIME_ERROR
