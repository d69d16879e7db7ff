"""A small harness that drives the pure core (agent.core.unit.Unit) with events and a fake clock.

The rig keeps one clock (monotonic seconds ``t`` and a UTC wall clock that moves with it),
hands every event to ``Unit.handle`` with the matching :class:`Now`, and keeps every effect
in ``log``. ``run_until`` wakes the unit the way the runtime does: at ``next_deadline()``,
with a ``Tick``. Nothing sleeps: time is passed explicitly.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable
from typing import Any

from agent.config import AgentConfig
from agent.config_validate import parse_config
from agent.core.events import (
    ButtonPressed, ButtonReleased, Fix, FixReceived, GnssLost, GnssRestored, IgnitionChanged, LinkDown, LinkUp,
    MessageReceived, SirenChanged, Tick,
)
from agent.core.publish import Publish
from agent.core.unit import Now, Unit

UTC = dt.timezone.utc
T0 = 100.0  # monotonic seconds at which every rig starts
WALL0 = dt.datetime(2026, 11, 25, 20, 0, 0, tzinfo=UTC)  # the system clock at T0


def alarm_uuid(n: int) -> str:
    """The rig's n-th alarm id: UUID-shaped like a unit's, but counted so a test can name it."""
    return f"00000000-0000-4000-8000-{n:012x}"


def alarm_ids() -> Callable[[], str]:
    """A unit's source of alarm ids in tests: alarm_uuid(1), alarm_uuid(2)..."""
    counter = itertools.count(1)
    return lambda: alarm_uuid(next(counter))


def config(kind: str = "car", **sections: Any) -> AgentConfig:
    data: dict[str, Any] = {"unit": {"id": "KEN-C-01" if kind == "car" else "KEN-M-07", "kind": kind}}
    data.update(sections)
    return parse_config(data, "<test>")


def wall(t: float) -> dt.datetime:
    return WALL0 + dt.timedelta(seconds=t - T0)


def iso(t: float) -> str:
    stamp = wall(t)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def now(t: float, synced: bool = True) -> Now:
    return Now(t, wall(t), synced)


def gnss_fix(t: float, *, mode: int = 3, lat: float = 34.2610, lon: float = -6.5802, date: bool = True) -> Fix:
    """A fix whose UTC time is ``wall(t)`` (the receiver agrees with the system clock)."""
    stamp = wall(t)
    return Fix(mode=mode, time=stamp.time(), date=stamp.date() if date else None,
               lat=lat if mode >= 2 else None, lon=lon if mode >= 2 else None,
               alt=12.5, speed=8.3, track=271.0, hdop=0.9, sats=9)


def call_payload(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "id": "C-1001", "action": "new", "priority": 1, "nature": "Accident de la circulation",
        "address": "Avenue Mohammed V, Kénitra", "location": {"lat": 34.2610, "lon": -6.5802},
        "created": "2026-11-25T19:58:00Z",
    }
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not None}, ensure_ascii=False).encode()


def pubs(effects: list[Any], topic: str | None = None) -> list[Publish]:
    return [e for e in effects if isinstance(e, Publish) and (topic is None or e.topic == topic)]


def one(effects: list[Any], topic: str) -> dict[str, Any]:
    """The body of the single Publish on ``topic`` among ``effects`` (fails if not exactly one)."""
    found = pubs(effects, topic)
    assert len(found) == 1, f"expected one {topic!r} publish, got {len(found)}: {effects}"
    return body(found[0])


def body(p: Publish) -> dict[str, Any]:
    return json.loads(p.payload.decode("utf-8"))


class Rig:
    def __init__(self, cfg: AgentConfig | None = None, next_seq: int = 1, t0: float = T0, synced: bool = True,
                 ids: Callable[[], str] | None = None):
        self.t = t0
        self.synced = synced
        # ``ids``: another rig's unit.alarm_ids, for a restart (a unit's random ids never repeat).
        self.unit = Unit(cfg or config(), next_seq, now(t0, synced), alarm_ids=ids or alarm_ids())
        self.log: list[Any] = []

    def now(self) -> Now:
        return now(self.t, self.synced)

    def send(self, event: Any, at: float | None = None) -> list[Any]:
        if at is not None:
            assert at >= self.t, "time goes forward"
            self.t = at
        out = self.unit.handle(event, self.now())
        self.log.extend(out)
        return out

    def at(self, t: float) -> "Rig":
        assert t >= self.t
        self.t = t
        return self

    def after(self, dt_s: float) -> "Rig":
        return self.at(self.t + dt_s)

    # -- inputs, at the rig's current time

    def press(self, name: str, source: str = "panel") -> list[Any]:
        return self.send(ButtonPressed(name, self.t, source))

    def release(self, name: str) -> list[Any]:
        return self.send(ButtonReleased(name, self.t))

    def tap(self, name: str) -> list[Any]:
        out = self.press(name)
        return out + self.release(name)

    def message(self, topic: str, payload: bytes) -> list[Any]:
        return self.send(MessageReceived(topic, payload, self.t))

    def fix(self, **kw: Any) -> list[Any]:
        return self.send(FixReceived(gnss_fix(self.t, **kw), self.t))

    def tick(self) -> list[Any]:
        return self.send(Tick(self.t))

    def siren(self, on: bool) -> list[Any]:
        return self.send(SirenChanged(on, self.t))

    def ignition(self, on: bool) -> list[Any]:
        return self.send(IgnitionChanged(on, self.t))

    def link_up(self) -> list[Any]:
        return self.send(LinkUp("broker-a:8883", self.t))

    def link_down(self) -> list[Any]:
        return self.send(LinkDown("keepalive", self.t))

    def gnss_lost(self) -> list[Any]:
        return self.send(GnssLost("silent", self.t))

    def gnss_restored(self) -> list[Any]:
        return self.send(GnssRestored(self.t))

    def run_until(self, end: float, fixes: list[float] = ()) -> list[Any]:
        """Wake at each deadline (and at each fix time in ``fixes``) up to ``end``, like the runtime."""
        out: list[Any] = []
        pending = sorted(f for f in fixes if f > self.t)
        for _ in range(1_000_000):
            deadline = self.unit.next_deadline()
            if pending and pending[0] <= min(deadline, end):
                self.t = pending.pop(0)
                out += self.fix()
                continue
            if deadline > end:
                break
            before = deadline
            out += self.send(Tick(max(deadline, self.t)), at=max(deadline, self.t))
            assert self.unit.next_deadline() > before, "a tick at the deadline must move it"
        self.t = end
        return out

    def reports(self, effects: list[Any] | None = None) -> list[dict[str, Any]]:
        return [body(p) for p in pubs(self.log if effects is None else effects, "telemetry")]
