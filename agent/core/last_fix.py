"""The last known fix across restarts: when it is stored, what is stored, how old it is after a restart.

Dispatch must never lose a unit's position. While the unit runs, a report
without a fix carries the last valid one and its age (:func:`.telemetry.fix_json`).
This module carries that across a restart: a unit that starts again in a
garage or a tunnel, with no fix, reports where it was, when (the fix's own
``time``) and how long ago (``age``), with ``receiver`` saying why there is no
fix now.

When (:class:`StoreRule`). Not at every epoch: each store is a write to the SD
card (a 4 KiB page rewritten in place, agent/adapters/last_fix_store.py), and
the card's budget with the broker gone is tight (docs/performance.md). What
matters is the last fix before it went, so a fix that is lost (a tunnel, a
garage, the receiver unplugged) is stored at once; while the fix is good it is
stored when the vehicle has moved :data:`MIN_MOVE_M` since the last store and
:data:`STORE_EVERY_S` have passed (a power cut while driving costs at most that
much of the track: a restart with the sky in view has a fix again in seconds);
and at a clean stop. Never twice within :data:`MIN_GAP_S`: a fix that comes and
goes in an urban canyon costs at most one write per few seconds. Driving all
day that is under 3 MB of writes a day; parked, none.

Its age after a restart (:func:`age_after_restart`). The monotonic clock runs
on across a restart of the agent within one boot: the age is then exact. After
a reboot it is the unit's best UTC now minus the fix's UTC, and at least the
time since this boot (the fix is from the boot before): a clock that is not
synchronised (a Pi has no battery clock) can make the first too small, never
the second.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .events import Fix
from .geo import distance_m

STORE_EVERY_S = 120.0
MIN_MOVE_M = 100.0
MIN_GAP_S = 5.0
FORMAT = 1


class StoreRule:
    """Says when the last valid fix should be stored (see the module docstring). Pure."""

    def __init__(self) -> None:
        self.stored: Fix | None = None
        self.stored_at: float | None = None  # monotonic time of the last store

    def due(self, fix: Fix | None, has_fix: bool, mono: float, *, stopping: bool = False) -> bool:
        if fix is None or fix is self.stored:
            return False
        if stopping or self.stored is None:
            return True
        assert self.stored_at is not None
        if mono - self.stored_at < MIN_GAP_S:
            return False
        if not has_fix:
            return True  # the fix went: the last one is the one to keep
        if mono - self.stored_at < STORE_EVERY_S:
            return False
        return distance_m(self.stored.lat, self.stored.lon, fix.lat, fix.lon) >= MIN_MOVE_M  # type: ignore[arg-type]

    def done(self, fix: Fix, mono: float) -> None:
        """``fix`` is stored (or restored: what is on the card already)."""
        self.stored, self.stored_at = fix, mono


def record(fix: Fix, utc: dt.datetime, mono: float, boot: str | None) -> dict[str, Any]:
    """What is stored: the fix, its UTC, and the boot and monotonic time it was seen at."""
    return {
        "format": FORMAT,
        "mode": fix.mode,
        "time": fix.time.isoformat() if fix.time else None,
        "date": fix.date.isoformat() if fix.date else None,
        "lat": fix.lat, "lon": fix.lon, "alt": fix.alt, "speed": fix.speed, "track": fix.track,
        "hdop": fix.hdop, "sats": fix.sats,
        "utc": utc.isoformat(),
        "boot": boot,
        "mono": mono,
    }


def from_record(data: dict[str, Any]) -> tuple[Fix, dt.datetime]:
    """The stored fix and its UTC; ValueError when the record is not one."""
    if data.get("format") != FORMAT:
        raise ValueError(f"not a last-fix record of format {FORMAT}")
    try:
        fix = Fix(
            mode=int(data["mode"]),
            time=dt.time.fromisoformat(data["time"]) if data.get("time") else None,
            date=dt.date.fromisoformat(data["date"]) if data.get("date") else None,
            lat=_number(data["lat"], 90), lon=_number(data["lon"], 180),
            alt=_optional(data.get("alt")), speed=_optional(data.get("speed")), track=_optional(data.get("track")),
            hdop=_optional(data.get("hdop")), sats=int(data["sats"]) if data.get("sats") is not None else None,
        )
        utc = dt.datetime.fromisoformat(data["utc"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"a last-fix record without {exc}") from None
    if not fix.valid or utc.tzinfo is None:
        raise ValueError("not a valid fix")
    return fix, utc


def age_after_restart(data: dict[str, Any], utc: dt.datetime, *, boot: str | None, mono: float,
                      now_utc: dt.datetime) -> float:
    """Seconds since the stored fix, as well as the unit can tell (see the module docstring)."""
    if boot is not None and data.get("boot") == boot and isinstance(data.get("mono"), (int, float)):
        return max(0.0, mono - float(data["mono"]))
    return max(0.0, (now_utc - utc).total_seconds(), mono)


def _number(value: Any, bound: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -bound <= value <= bound:
        raise ValueError(f"not a coordinate: {value!r}")
    return float(value)


def _optional(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a number: {value!r}")
    return float(value)
