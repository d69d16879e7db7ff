"""A call the unit holds: its fields, where the crew is with it, and its age on trusted time (pure).

:class:`Call` is what :mod:`.dispatch`'s call book keeps for each open call
(stored across a restart by ``to_json`` / ``from_json``); its ``state`` moves
by the transition table in :mod:`.dispatch`. :func:`call_age` judges how old a
call was when it reached the unit: only on trusted time (the unit's clock
synchronised, or GNSS time), since ``created`` is the dispatcher's clock and a
unit that booted without either cannot tell a days-old call from a fresh one.
Without trusted time the age is unverified (``None``), never guessed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

# The states of an open call, in the order the crew's answers move it.
_ORDER = {"new": 0, "received": 1, "accepted": 2, "en_route": 3, "on_scene": 4, "cleared": 5}


@dataclass(frozen=True, slots=True)
class CallAge:
    """How old a call was when it reached the unit, judged on trusted time only.

    ``age_s`` is None when the unit has no trusted time (the age is unverified);
    ``stale`` is then None too, else whether it exceeds the limit.
    """

    age_s: float | None
    stale: bool | None

    @property
    def verified(self) -> bool:
        return self.age_s is not None


def call_age(call: Call, now_utc: dt.datetime, trusted: bool, now_mono: float, stale_after_s: float) -> CallAge:
    """The age ``call`` had when it reached the unit (``received_mono``), on trusted time.

    ``now_utc`` is the unit's best time and ``trusted`` whether that time is
    (``agent.core.telemetry.TRUSTED_TIME_SOURCES``). A ``created`` in the future
    (the dispatcher's clock ahead) counts as age 0. ``stale_after_s`` 0: never stale.
    """
    if not trusted:
        return CallAge(None, None)
    age = (now_utc - call.created).total_seconds() - max(0.0, now_mono - call.received_mono)
    age = max(0.0, age)
    return CallAge(round(age, 1), bool(stale_after_s) and age > stale_after_s)


@dataclass(frozen=True, slots=True)
class Call:
    """A call the unit holds, with where the crew is with it."""

    id: str
    priority: int
    nature: str
    address: str
    created: dt.datetime
    code: str | None = None
    address_short: str | None = None  # the dispatcher's short form, for the small panel
    location: tuple[float, float] | None = None
    details: str | None = None
    caller: str | None = None
    state: str = "new"  # new, received, accepted, en_route, on_scene
    received_mono: float = 0.0
    updated: dt.datetime | None = None

    @property
    def acknowledged(self) -> bool:
        return _ORDER[self.state] >= _ORDER["accepted"]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "priority": self.priority,
            "nature": self.nature,
            "code": self.code,
            "address": self.address,
            "address_short": self.address_short,
            "location": {"lat": self.location[0], "lon": self.location[1]} if self.location else None,
            "details": self.details,
            "caller": self.caller,
            "created": iso(self.created),
            "state": self.state,
            "updated": iso(self.updated) if self.updated else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Call":
        loc = data.get("location")
        return cls(
            id=data["id"],
            priority=int(data["priority"]),
            nature=data["nature"],
            address=data["address"],
            created=dt.datetime.fromisoformat(data["created"].replace("Z", "+00:00")),
            code=data.get("code"),
            address_short=data.get("address_short"),
            location=(loc["lat"], loc["lon"]) if loc else None,
            details=data.get("details"),
            caller=data.get("caller"),
            state=data.get("state", "new"),
            updated=dt.datetime.fromisoformat(data["updated"].replace("Z", "+00:00")) if data.get("updated") else None,
        )


def iso(value: dt.datetime) -> str:
    """UTC ISO 8601 with milliseconds and a ``Z``."""
    value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
