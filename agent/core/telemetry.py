"""Telemetry: when a report is due, and what it says.

Cadence
-------
Reports follow a grid on the monotonic clock: slot ``k`` is due at
``t0 + k/rate``, and each slot yields exactly one report, so N reports take N
periods whatever the load (no drift from "sleep one period after the last").

A report should carry the newest fix. The receiver completes an epoch at its
own rhythm; a report built when an epoch completes is fresher than one built
on a timer that ignores it. So a slot is served by the first fix that
completes within ``tolerance`` before the slot is due (or after it, while the
slot waits); if no fix arrives, the slot is served by the timer ``grace``
after it is due, with the last known fix and its age. A slot waits only when
the receiver's own rhythm (the interval between its last two fixes) puts a
fix within the grace: reports faster than the receiver (2 Hz from a 1 Hz
receiver) have every other slot served when due, so they stay evenly
spaced. When fixes keep arriving but keep missing the window (the receiver's
phase drifted from the grid), the grid is moved once to sit just after the
fix arrivals, so fix age at publish stays near zero.

Time
----
``ts`` comes from the best clock available, and the report says which
(``time_source``): the system clock when it is synchronised (chrony, NTP),
else UTC from the receiver carried forward on the monotonic clock, else the
unsynchronised system clock.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from dataclasses import dataclass, field

from .events import Fix

UTC = dt.timezone.utc


@dataclass
class ReportSchedule:
    """Decides when the next telemetry report is due. Pure; times in seconds."""

    period: float
    next_due: float
    tolerance: float = 0.0
    grace: float = 0.0
    _stale_in_a_row: int = 0
    _last_fix_at: float | None = None
    _fix_interval: float | None = None  # between the last two fixes

    REPHASE_AFTER = 3  # timer-served slots in a row, with fixes flowing, before moving the grid
    REPHASE_LEAD = 0.02  # the grid sits this long after the fix arrivals

    @classmethod
    def start(cls, rate_hz: float, now: float) -> "ReportSchedule":
        period = 1.0 / rate_hz
        return cls(period=period, next_due=now + period, tolerance=min(0.1, period / 4), grace=min(0.2, period / 4))

    def set_rate(self, rate_hz: float, now: float) -> None:
        self.period = 1.0 / rate_hz
        self.tolerance = min(0.1, self.period / 4)
        self.grace = min(0.2, self.period / 4)
        self.next_due = min(self.next_due, now + self.period)

    def on_fix(self, now: float) -> bool:
        """A fix completed at ``now``; True when it should be reported now."""
        if self._last_fix_at is not None:
            self._fix_interval = now - self._last_fix_at
        self._last_fix_at = now
        if now >= self.next_due - self.tolerance:
            self._advance(now)
            self._stale_in_a_row = 0
            return True
        return False

    def on_time(self, now: float) -> bool:
        """The timer: True when a slot passed without a fix and must be served now."""
        if now < self.deadline():
            return False
        fixes_flowing = self._last_fix_at is not None and now - self._last_fix_at < 2 * self.period
        self._stale_in_a_row = self._stale_in_a_row + 1 if fixes_flowing else 0
        if self._stale_in_a_row >= self.REPHASE_AFTER and self._last_fix_at is not None:
            # Fixes arrive, but always between slots: put the slots just after them.
            phase = (self._last_fix_at + self.REPHASE_LEAD - self.next_due) % self.period
            self._advance(now)
            self.next_due += phase - self.period if phase > self.period / 2 else phase
            if self.next_due <= now:
                self.next_due += self.period
            self._stale_in_a_row = 0
        else:
            self._advance(now)
        return True

    def deadline(self) -> float:
        return self.next_due + self._wait()

    def _wait(self) -> float:
        """How long the next slot waits for a fix: the grace, unless none is expected in it."""
        if self._last_fix_at is None or self._fix_interval is None:
            return self.grace
        expected = self._last_fix_at + self._fix_interval
        return 0.0 if expected > self.next_due + self.grace else self.grace

    def _advance(self, now: float) -> None:
        self.next_due += self.period
        if self.next_due <= now - self.period:
            # A long stall (suspend, debugger): skip the missed slots rather than burst.
            missed = math.floor((now - self.next_due) / self.period) + 1
            self.next_due += missed * self.period


# Fixes whose UTC-minus-monotonic samples TimeBase keeps (see there).
TIMEBASE_SAMPLES = 16


@dataclass
class TimeBase:
    """UTC for reports: system clock if synchronised, else GNSS carried forward.

    Each valid fix gives a sample of UTC minus monotonic time, taken when the
    fix is read: late by the serial and decoding delay, and by any stall of the
    agent. A sample can be late, never early, so the offset is the largest of
    the last TIMEBASE_SAMPLES: a fix read a second late does not pull ``ts``
    back by a second, and the clocks drift apart by far less than a
    millisecond over that many fixes. A real change of the receiver's UTC
    (after a cold start) takes over once the older samples have left.
    """

    samples: deque[float] = field(default_factory=lambda: deque(maxlen=TIMEBASE_SAMPLES))

    @property
    def gnss_offset(self) -> float | None:
        """UTC epoch seconds minus monotonic seconds, from the receiver; None before a fix."""
        return max(self.samples) if self.samples else None

    def on_fix(self, fix: Fix, mono: float) -> None:
        stamp = fix.timestamp
        if stamp is not None and fix.valid:
            self.samples.append(stamp.timestamp() - mono)

    def now(self, mono: float, system_utc: dt.datetime, system_synced: bool) -> tuple[dt.datetime, str]:
        return best_time(mono, system_utc, system_synced, self.gnss_offset)


# The unit's clock can judge an expiry: anything but an unsynchronised system clock with no GNSS time.
TRUSTED_TIME_SOURCES = ("system", "gnss")


def best_time(mono: float, system_utc: dt.datetime, system_synced: bool,
              gnss_offset: float | None) -> tuple[dt.datetime, str]:
    """UTC now from the best clock, and its ``time_source``: ``system`` (synchronised),
    ``gnss`` (the receiver's UTC carried forward on the monotonic clock) or ``system_unsynced``."""
    if system_synced:
        return system_utc, "system"
    if gnss_offset is not None:
        return dt.datetime.fromtimestamp(mono + gnss_offset, UTC), "gnss"
    return system_utc, "system_unsynced"


FIX_STALE_S = 3.0  # an epoch older than this is no longer a current fix


def fix_json(last_valid: Fix | None, valid_mono: float | None, current_mode: int, now_mono: float) -> dict:
    """The ``fix`` object of a report.

    ``current_mode`` is the mode of the latest epoch (1 when the receiver says
    there is no fix, is silent or is gone). The position is the last valid
    one, and ``age`` (seconds) says how old it is, so a map can grey it out.
    """
    out = {"mode": current_mode if last_valid is not None else min(current_mode, 1),
           "time": None, "lat": None, "lon": None, "alt": None, "speed": None,
           "track": None, "hdop": None, "sats": None, "age": None}
    if last_valid is None or valid_mono is None:
        return out
    out.update(
        time=last_valid.iso_time(),
        lat=last_valid.lat,
        lon=last_valid.lon,
        alt=last_valid.alt,
        speed=last_valid.speed,
        track=last_valid.track,
        hdop=last_valid.hdop,
        sats=last_valid.sats,
        age=round(max(0.0, now_mono - valid_mono), 3),
    )
    return out
