"""The system clock, and whether it is synchronised.

A unit has no real-time clock: until chrony has locked onto the GNSS (or NTP
over the cellular link), the system time after a boot may be hours or years
off. Reports say where their time came from, so the core needs to know. The
kernel knows: ``adjtimex(2)`` returns ``TIME_ERROR`` while the clock is
unsynchronised. This is read through ``ctypes`` (no extra package) and cached
for a few seconds, because it is asked on every event.

``UMPS_AGENT_CLOCK=unsynchronised`` in the agent's environment makes it take its
system clock as never synchronised, whatever the kernel says: the state of a
unit booted without NTP. The rig uses it (``clock = "unsynchronised"`` in a
scenario) to play a cold boot on a machine whose clock is set; an installer can
use it to see the unit as it is before chrony locks on. It can only make the
unit trust its clock less, never more.

:class:`UnitTime` is the unit's time as every part of the agent reads it: the
system clock while it is synchronised, else the receiver's UTC carried forward
on the monotonic clock (:func:`agent.core.telemetry.best_time`), with the
``time_source`` every message the unit sends carries. It also keeps the floor
of authenticated time fed (:mod:`agent.core.time_floor`): every trusted reading
is a proof, and :meth:`UnitTime.judging_clock` is what remote requests are
judged against.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import os
import time

from agent.adapters.time_floor_store import TimeFloorStore
from agent.core.dispatch import iso
from agent.core.telemetry import TRUSTED_TIME_SOURCES, best_time
from agent.core.time_floor import UnitClock
from agent.core.unit import Now

TIME_ERROR = 5
CLOCK_ENV = "UMPS_AGENT_CLOCK"


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: only ``modes`` (0 = read only) is set; the
    # padding is larger than the struct on every architecture, so the kernel's
    # write stays inside the buffer.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 256)]


class SystemClock:
    def __init__(self, *, recheck_s: float = 10.0, monotonic=time.monotonic, never_synced: bool | None = None):
        if never_synced is None:
            never_synced = os.environ.get(CLOCK_ENV, "") == "unsynchronised"
        self._never_synced = never_synced
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
        if self._adjtimex is None or self._never_synced:
            return False
        buf = _Timex()
        state = self._adjtimex(ctypes.byref(buf))
        return state >= 0 and state != TIME_ERROR


class UnitTime:
    """The unit's best time, from any thread. The core thread publishes the receiver's UTC
    offset (UTC - monotonic, one float: :attr:`gnss_offset`) after every event it handles;
    the remote-request worker, the MQTT link's birth message and the answers read it."""

    def __init__(self, clock: SystemClock | None = None, floor: TimeFloorStore | None = None) -> None:
        self.clock = clock or SystemClock()
        self.gnss_offset: float | None = None  # set by the core thread only
        self.floor = floor or TimeFloorStore(None, time.monotonic())

    def now(self) -> Now:
        """The time of an event handled now."""
        return Now(time.monotonic(), self.clock.utc(), self.clock.synced())

    def best_time(self, now: Now | None = None) -> tuple[dt.datetime, str]:
        """UTC from the unit's best clock, and its ``time_source``; a trusted reading feeds the floor."""
        now = now or self.now()
        utc, source = best_time(now.mono, now.wall, now.wall_synced, self.gnss_offset)
        if source in TRUSTED_TIME_SOURCES:
            self.floor.trust(utc, now.mono)
        return utc, source

    def judging_clock(self) -> UnitClock:
        """What a remote request is judged against now: the best UTC, whether it is trusted, the floor."""
        now = self.now()
        utc, source = self.best_time(now)
        trusted = source in TRUSTED_TIME_SOURCES
        return UnitClock(utc, trusted, None if trusted else self.floor.at(now.mono))

    def stamp(self) -> dict[str, str]:
        """``ts`` and ``time_source`` of a message sent now."""
        ts, source = self.best_time()
        return {"ts": iso(ts), "time_source": source}
