"""The floor of authenticated time: the latest time the unit has proof of, and how requests are judged by it.

A signed request carries ``expires`` so that a capture cannot be used for ever. Judging it needs
the time, and a unit often has none it can trust: a Raspberry Pi has no battery clock, police
APNs often route only to the broker (no NTP), and a GNSS cold start under a roof takes minutes.
Refusing everything until then would refuse dispatch's calls to a unit that has just rebooted
in a garage. Believing the system clock would let a capture through on a clock left in the past.

The floor sits between the two. It is the latest UTC the unit has *proof* of, carried forward
on the monotonic clock (time since a proof can only have passed, never less):

- a trusted clock: a GNSS fix's UTC or a synchronised system clock (``time_source`` ``gnss``
  or ``system``), seen at every event while the unit has one;
- the ``issued`` time of a request signed by a key the unit trusts: dispatch or an admin said
  "it is at least then" when they signed it, and nobody else can say it for them.

It is stored on the card (at most every few minutes: a lower bound may lag) and read back at
the next start, where it is a lower bound on the time still, however long the unit was off.

Judging an ``expires`` (:meth:`UnitClock.judge`):

- with a trusted clock, as always: expired, or valid for too long, is refused;
- without one, an ``expires`` at or before the floor is refused as expired: that much is proven;
- otherwise the expiry cannot be judged. What follows is the caller's policy
  (``docs/safety.md``, "Where safety and security pull apart"): a call and a command are taken
  (a call is shown, its age marked unverified on the screens), a config push waits for trusted
  time. Dispatch's answer to an alarm is not judged by its expiry at all (its alarm id makes it
  fresh: :mod:`agent.core.signed_dispatch`).

A request that carries both ``issued`` and ``expires`` is checked for its lifetime without any
clock: ``expires - issued`` may not exceed the request's longest life.

Where a trusted clock and the floor disagree, the trusted clock wins: a floor above it by more
than :data:`TRUST_SKEW` came from a sender whose clock runs fast, and is brought down, and an
``issued`` beyond the trusted clock by more than that proves nothing. Without a trusted clock
such a floor refuses requests that expire before it, until the unit has trusted time again: a
sender's clock that is wrong by hours is a fault for dispatch to fix, and the unit says why it
refuses (the floor it judged by is in the message).

Pure: times in, judgements out. The floor is kept by :mod:`agent.adapters.time_floor_store`,
which the remote-request worker and the core thread share.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
# How far a sender's clock may run ahead of the unit's trusted clock and still count as proof.
TRUST_SKEW = dt.timedelta(minutes=5)
STORED_VERSION = 1

UNJUDGEABLE = ("cannot be judged yet: the unit has no trusted time (no GNSS fix and the system clock "
               "not synchronised); send it again once the unit reports time_source gnss or system")


class Expiry(StrEnum):
    VALID = "valid"  # judged on a trusted clock, in the future and not too far ahead
    REFUSED = "refused"  # expired (on the trusted clock or by the floor), or valid for too long
    UNJUDGED = "unjudged"  # no trusted clock, and not before the floor: the caller's policy decides


def iso(when: dt.datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class TimeFloor:
    """The latest proven UTC (``utc``) and the monotonic time it was proven at (``mono``)."""

    utc: dt.datetime | None = None
    mono: float | None = None

    def at(self, mono: float) -> dt.datetime | None:
        """The proven lower bound on UTC at monotonic time ``mono`` (None before any proof)."""
        if self.utc is None or self.mono is None:
            return None
        return self.utc + dt.timedelta(seconds=max(0.0, mono - self.mono))

    def prove(self, when: dt.datetime, mono: float, trusted_now: dt.datetime | None = None) -> bool:
        """A signed ``issued``: it was at least ``when`` at ``mono``. True when the floor rose.

        ``trusted_now``: the unit's trusted clock at ``mono``, if it has one; a proof beyond it by
        more than :data:`TRUST_SKEW` is a sender's fast clock and proves nothing.
        """
        if when.tzinfo is None:
            raise ValueError("a proof of time must be timezone-aware")
        if trusted_now is not None and when > trusted_now + TRUST_SKEW:
            return False
        current = self.at(mono)
        if current is not None and when <= current:
            return False
        self.utc, self.mono = when.astimezone(UTC), mono
        return True

    def trust(self, now: dt.datetime, mono: float) -> None:
        """The trusted clock says ``now`` at ``mono``: the floor follows it, down too when it was
        raised more than :data:`TRUST_SKEW` beyond it by a fast sender."""
        current = self.at(mono)
        if current is None or now > current or now < current - TRUST_SKEW:
            self.utc, self.mono = now.astimezone(UTC), mono

    def stored(self, mono: float) -> dict[str, Any] | None:
        """What to keep on the card (the floor as of ``mono``), or None before any proof."""
        floor = self.at(mono)
        return None if floor is None else {"version": STORED_VERSION, "utc": iso(floor)}

    @classmethod
    def from_stored(cls, data: Any, mono: float) -> "TimeFloor":
        """The floor read back at start (``mono``: now); raises ValueError on anything else."""
        if not isinstance(data, dict) or data.get("version") != STORED_VERSION:
            raise ValueError(f"not a time floor of version {STORED_VERSION}")
        text = data.get("utc")
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if isinstance(text, str) else None
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise ValueError(f"time floor utc {text!r} is not an ISO 8601 time with a zone")
        return cls(when.astimezone(UTC), mono)


@dataclass(frozen=True, slots=True)
class UnitClock:
    """What a remote request is judged against: the unit's best UTC, whether it is trusted, and
    the floor (the latest proven UTC, carried to now)."""

    now: dt.datetime
    trusted: bool = True
    floor: dt.datetime | None = None

    @classmethod
    def of(cls, now: "dt.datetime | UnitClock") -> "UnitClock":
        """A trusted clock at ``now`` (a datetime), or ``now`` itself."""
        if isinstance(now, UnitClock):
            return now
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return cls(now)

    @property
    def proven(self) -> dt.datetime:
        """A time that has certainly passed: the trusted clock, else the floor (else 1970).

        What the replay memory forgets by: an entry leaves once its expiry is before this, so a
        clock that is wrong can never make it forget a request that is still valid."""
        if self.trusted:
            return self.now
        return self.floor or EPOCH

    def judge(self, expires: dt.datetime, max_lifetime: dt.timedelta | None, what: str) -> tuple[Expiry, str | None]:
        """Is ``expires`` valid now? The verdict, and the reason when it is refused."""
        if self.trusted:
            if expires <= self.now:
                return Expiry.REFUSED, f"expired at {iso(expires)} (unit clock {iso(self.now)})"
            if max_lifetime is not None and expires - self.now > max_lifetime:
                hours = max_lifetime.total_seconds() / 3600
                return Expiry.REFUSED, f"{what} may be valid for at most {hours:g} h (unit clock {iso(self.now)})"
            return Expiry.VALID, None
        if self.floor is not None and expires <= self.floor:
            return Expiry.REFUSED, (f"expired at {iso(expires)} (the unit's clock is not set, but it has proof "
                                    f"that it is at least {iso(self.floor)})")
        return Expiry.UNJUDGED, None


def lifetime_problem(issued: dt.datetime, expires: dt.datetime, max_lifetime: dt.timedelta | None,
                     what: str) -> str | None:
    """Why ``issued`` and ``expires`` do not go together (needs no clock), or None."""
    if issued > expires:
        return f"is after expires ({iso(expires)})"
    if max_lifetime is not None and expires - issued > max_lifetime:
        hours = max_lifetime.total_seconds() / 3600
        return f"{what} may be valid for at most {hours:g} h from issued to expires"
    return None
