"""Events: small frozen records that adapters post to the runtime's inbox.

Adapters (serial GNSS, GPIO, MQTT, web UI, timers) translate what happened in
the outside world into one of these and return at once; the core thread
handles them one at a time, in order. Times are ``float`` seconds on the
monotonic clock (``mono``) unless the name says otherwise; wall-clock times
are timezone-aware ``datetime`` objects in UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

UTC = dt.timezone.utc


# --------------------------------------------------------------------- GNSS


@dataclass(frozen=True, slots=True)
class Fix:
    """One navigation epoch assembled from the receiver's NMEA sentences.

    ``mode`` follows gpsd: 0 unknown, 1 no fix, 2 two-dimensional, 3
    three-dimensional. Position fields are only meaningful when ``mode >= 2``
    (the receiver said the fix is valid). ``time`` is the UTC time of day of
    the epoch; ``date`` is known only once a sentence that carries one (RMC,
    ZDA) has been seen.
    """

    mode: int = 0
    time: dt.time | None = None
    date: dt.date | None = None
    lat: float | None = None
    lon: float | None = None
    alt: float | None = None  # metres above mean sea level
    speed: float | None = None  # metres per second over ground
    track: float | None = None  # degrees true
    hdop: float | None = None
    sats: int | None = None  # satellites used in the solution

    @property
    def valid(self) -> bool:
        return self.mode >= 2 and self.lat is not None and self.lon is not None

    @property
    def timestamp(self) -> dt.datetime | None:
        """The full UTC date and time of the epoch, when the date is known."""
        if self.time is None or self.date is None:
            return None
        return dt.datetime.combine(self.date, self.time.replace(tzinfo=None), tzinfo=UTC)

    def iso_time(self) -> str | None:
        """``2024-03-01T10:20:30.500Z`` with a date, ``10:20:30.500`` without."""
        if self.time is None:
            return None
        tod = f"{self.time.hour:02d}:{self.time.minute:02d}:{self.time.second:02d}.{self.time.microsecond // 1000:03d}"
        if self.date is None:
            return tod
        return f"{self.date.isoformat()}T{tod}Z"


@dataclass(frozen=True, slots=True)
class FixReceived:
    fix: Fix
    mono: float


@dataclass(frozen=True, slots=True)
class GnssLost:
    """The receiver's port vanished or went silent."""

    reason: str
    mono: float


@dataclass(frozen=True, slots=True)
class GnssRestored:
    mono: float


# ------------------------------------------------------------- crew inputs


@dataclass(frozen=True, slots=True)
class ButtonPressed:
    """A crew input: a panel button, a touch on the screen, a remote command.

    ``name`` is a status code (``available``, ``en_route``, ...), ``ack``,
    ``decline``, ``cleared`` or ``emergency``; ``source`` says where it came
    from (``panel``, ``touch``, ``remote``), for the log only: every source
    takes the same path.
    """

    name: str
    mono: float
    source: str = "panel"


@dataclass(frozen=True, slots=True)
class ButtonReleased:
    name: str
    mono: float
    source: str = "panel"


@dataclass(frozen=True, slots=True)
class SirenChanged:
    on: bool
    mono: float


# ----------------------------------------------------------------- the link


@dataclass(frozen=True, slots=True)
class LinkUp:
    broker: str
    mono: float


@dataclass(frozen=True, slots=True)
class LinkDown:
    reason: str
    mono: float


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """An inbound MQTT message, topic relative to ``<prefix>/<unit>/``."""

    topic: str
    payload: bytes
    mono: float
    retained: bool = False
    # Set by the remote-request worker once a signed dispatch message passed its checks.
    verified: bool = False


@dataclass(frozen=True, slots=True)
class DispatchRefused:
    """A ``call``, ``alarm/ack`` or ``alarm/clear`` that failed the signed-dispatch checks."""

    topic: str
    id: str | None
    error: str
    mono: float


# ------------------------------------------------------------------ timers


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; the core checks its deadlines."""

    mono: float


@dataclass(frozen=True, slots=True)
class Stop:
    reason: str = "shutdown"
    mono: float = 0.0


@dataclass(frozen=True, slots=True)
class IgnitionChanged:
    """The vehicle's ignition sense changed (debounced), or its level read at start."""

    on: bool
    mono: float


@dataclass(frozen=True, slots=True)
class StorageChanged:
    """Whether everything the unit keeps reaches its card (agent/storage_health.py), and why not."""

    durable: bool
    reason: str | None
    mono: float
