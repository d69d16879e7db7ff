"""The rollback guard: undo a broker change that cut the unit off."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Armed:
    version: int
    request_id: str | None
    deadline: float  # monotonic seconds


class RollbackGuard:
    """Undo a dangerous change that cut the unit off from every broker.

    ``arm()`` when a dangerous change is applied (and at start when the loaded
    config is still ``pending``); ``connected()`` when the link is up with the
    new settings *and the broker accepted a publish*: the first QoS 1 publish
    after CONNACK (the ``config/current`` or ``online`` message) acknowledged
    with a reason code below 0x80. A bare CONNACK is not enough: a wrong
    prefix or identity connects fine and is then refused by the ACL, which
    Mosquitto 2.0 reports only in the PUBACK (0x87, MQTT 5); it grants any
    subscription. ``tick()`` on every tick: it returns the armed change, once,
    when the deadline passes unconfirmed. Times are monotonic seconds.
    """

    def __init__(self, timeout_s: float):
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        self._armed: Armed | None = None

    @property
    def armed(self) -> Armed | None:
        return self._armed

    def arm(self, now: float, version: int, request_id: str | None, timeout_s: float | None = None) -> None:
        """Start (or restart) the wait; ``timeout_s`` overrides the default."""
        if self._armed is not None:
            # A further push while still unconfirmed: same deadline, newest version.
            self._armed = Armed(version, request_id, self._armed.deadline)
            return
        self._armed = Armed(version, request_id, now + (timeout_s if timeout_s is not None else self.timeout_s))

    def connected(self, now: float, version: int | None = None) -> Armed | None:
        """The link is up with config ``version``: returns what this confirmed.

        ``version`` guards against a stale "connected" from the link that was
        being replaced; pass the version the connection was made with.
        """
        armed = self._armed
        if armed is None or (version is not None and version != armed.version):
            return None
        if now > armed.deadline:
            return None  # too late: tick() decides
        self._armed = None
        return armed

    def tick(self, now: float) -> Armed | None:
        armed = self._armed
        if armed is None or now <= armed.deadline:
            return None
        self._armed = None
        return armed
