"""What the core asks the link to send: a ``Publish`` record on a priority ``Lane``.

The core builds these (telemetry reports, status changes, call responses,
alarms, config results) and hands them to the uplink, which stores each one in
the durable outbox before it goes on the wire. Topics are relative to
``<prefix>/<unit id>/``; the link adds the prefix. Pure: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Lane(IntEnum):
    """Outbox lanes, lowest value first on the wire.

    ``LIVE`` holds the newest telemetry report; a report that could not go
    out live (link down, or a newer one arrived first) moves to ``BACKLOG``
    and is published on ``telemetry/backlog``.
    """

    EMERGENCY = 0
    STATUS = 1  # status, call responses, config results
    LIVE = 2  # live telemetry
    BACKLOG = 3


TELEMETRY_LANES = (Lane.LIVE, Lane.BACKLOG)


@dataclass(frozen=True, slots=True)
class Publish:
    """One message for the broker.

    ``payload`` is UTF-8 JSON. ``seq`` is set on telemetry reports only: the
    per-unit report counter (contiguous, never reused).
    """

    topic: str
    payload: bytes
    lane: Lane
    qos: int = 1
    retain: bool = False
    seq: int | None = None

    def __post_init__(self) -> None:
        if not self.topic or self.topic.startswith("/") or "#" in self.topic or "+" in self.topic:
            raise ValueError(f"bad relative topic {self.topic!r}")
        if self.qos not in (0, 1, 2):
            raise ValueError(f"bad qos {self.qos!r}")
        if not isinstance(self.payload, bytes):
            raise TypeError("payload must be bytes")
