"""Fleet mode: many simulated units on one broker, for dispatch-side load tests.

What a unit is here
-------------------
Not N agent processes: one agent with its emulators takes about 60 MB and a
few per cent of a core, so a thousand would not fit on the 2-core rig. A
:class:`SimUnit` instead speaks the same MQTT contract as the agent
(``docs/mqtt-api.md``) from a small state: it connects with the agent's
client id (``umps-<unit>``) and last will (``online`` false, retained),
publishes its ``online`` birth and retained ``status`` at connect, a telemetry
report per ``1/rate`` seconds with a contiguous ``seq`` and a position moving
along the Kénitra route (each unit starts at its own offset), and answers a
``call`` with a ``call/response`` ``received``. QoS 1 throughout, like the
agent.

How it runs
-----------
By default (``generator="wire"``) the units and the subscriber are the
plain-socket ones of ``hil/fleet_wire.py``: one selector, a socket and a few
counters per unit, PUBLISH packets framed once; the subscriber on a thread
of its own. With ``generator="paho"`` each unit is a paho client (the class
below) driven by an external loop (``loop_read``/``loop_write``/``loop_misc``
on a ``selectors`` loop), one thread for N sockets. Either way reports are
due on a shared schedule spread evenly over the period (no thundering herd),
and a unit's messages are those of ``hil/fleet_common.py``.

What is measured
----------------
A separate subscriber (``umps/+/telemetry`` and ``umps/+/online``, QoS 1)
counts what the broker delivers: the sustained rate, per-unit intervals (mean,
p95, max) and the reports missing by ``seq``, counted as a track server does
(hil/seq_ledger.py): "lost in transit", and "declared lost" inside a gap a
unit's birth declared (``seq_start``/``seq_gap``; a simulated unit never
crashes, so it declares none). With the rig's own broker, Mosquitto's ``$SYS``
counters (``sys_interval 1``) give its own received/sent rates. The result is
a :class:`FleetReport`.
"""

from __future__ import annotations

import datetime as dt
import selectors
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hil import fleet_common
from hil.fleet_common import FleetStats, Schedule, iso, seq_and_latency
from hil.fleet_wire import WireFleet, WireSubscriber, WireUnit, serve
from hil.route import Route, default_route
from hil.seq_ledger import SeqLedger
from hil.stats import percentile

CONNECT_BATCH = 50


class SimUnit:
    """One simulated unit: a paho client on an external loop."""

    def __init__(self, unit_id: str, host: str, port: int, *, prefix: str, route: Route, offset_s: float,
                 username: str | None = None, password: str | None = None, encoding: str = "json"):
        self.id = unit_id
        self.encoding = encoding
        self.base = f"{prefix}/{unit_id}/"
        self.route = route
        self.offset_s = offset_s
        self.seq = 1
        self.connected = False
        self.published = 0
        self.acked = 0
        self.calls_answered = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"umps-{unit_id}",
                                  protocol=MQTTProtocolVersion.MQTTv311, clean_session=False)
        self.client.max_inflight_messages_set(20)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.will_set(self.base + "online", b'{"online":false}', qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.host, self.port = host, port

    def connect(self) -> None:
        self.client.connect(self.host, self.port, keepalive=30)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        self.connected = True
        client.subscribe(self.base + "call", qos=1)
        now = iso(dt.datetime.now(dt.timezone.utc))
        client.publish(self.base + "online", fleet_common.birth(self.seq, now), qos=1, retain=True)
        client.publish(self.base + "status", fleet_common.status(now), qos=1, retain=True)
        self.published += 2

    def _on_disconnect(self, *args: Any) -> None:
        self.connected = False

    def _on_publish(self, *args: Any) -> None:
        self.acked += 1

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        answer = fleet_common.call_response(msg.payload, iso(dt.datetime.now(dt.timezone.utc)))
        if answer is None:
            return
        client.publish(self.base + "call/response", answer, qos=1)
        self.calls_answered += 1
        self.published += 1

    def report(self, t: float, now: dt.datetime) -> None:
        payload = fleet_common.report(self.id, self.seq, iso(now), self.route.at(t + self.offset_s), self.encoding)
        self.seq += 1
        self.published += 1
        self.client.publish(self.base + "telemetry", payload, qos=1)


@dataclass(frozen=True)
class FleetReport:
    units: int
    rate_hz: float
    duration_s: float
    connected: int
    reports: int  # telemetry reports made
    published: int  # every message the units sent (reports, births, status, call responses)
    acked: int
    delivered: int
    sustained_rate: float  # reports/s delivered over the measuring window
    interval_mean: float | None
    interval_p95: float | None
    interval_max: float | None
    units_late: int  # units with any interval > 2 periods
    missing: int  # reports missing by seq at the subscriber: lost in transit (declared nowhere)
    broker_received_rate: float | None  # from Mosquitto's $SYS counters (own broker only)
    broker_sent_rate: float | None
    broker_clients: str | None
    publisher_cpu_s: float
    declared_lost: int = 0  # missing by seq, inside a gap a birth declared

    def text(self) -> str:
        target = self.units * self.rate_hz
        lines = [
            f"fleet: {self.units} simulated units at {self.rate_hz:g} Hz for {self.duration_s:g} s "
            f"({self.connected} connected)",
            f"  reports made {self.reports}; messages published {self.published}, acknowledged by the broker "
            f"{self.acked}; reports delivered to the subscriber {self.delivered}",
            f"  sustained delivery {self.sustained_rate:.0f} reports/s (target {target:.0f}/s, "
            f"{100 * self.sustained_rate / target if target else 0:.1f} %)",
        ]
        if self.interval_mean is not None:
            lines.append(f"  per-unit interval: mean {self.interval_mean:.3f} s, p95 {self.interval_p95:.3f} s, "
                         f"max {self.interval_max:.3f} s; {self.units_late} unit(s) had a gap over "
                         f"{2 / self.rate_hz:g} s")
        lines.append(f"  missing by seq at the subscriber: {self.missing} lost in transit, "
                     f"{self.declared_lost} declared lost by the units")
        lines.append(f"  rig process CPU (units and subscriber): {self.publisher_cpu_s:.1f} s for "
                     f"{self.duration_s:g} s ({100 * self.publisher_cpu_s / self.duration_s:.0f} % of one core)")
        if self.broker_received_rate is not None:
            lines.append(f"  broker ($SYS): PUBLISH received {self.broker_received_rate:.0f}/s, sent "
                         f"{self.broker_sent_rate or 0:.0f} msg/s, {self.broker_clients} clients connected")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class FleetSubscriber:
    """The dispatch side: everything the units report, timed."""

    def __init__(self, host: str, port: int, prefix: str, *, sys_topics: bool, username: str | None = None,
                 password: str | None = None):
        self.stats = FleetStats()
        self._lock = threading.Lock()
        self._prefix = prefix
        self.ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"umps-hil-fleet-sub-{id(self):x}",
                                  protocol=MQTTProtocolVersion.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        topics = [(f"{prefix}/+/telemetry", 1), (f"{prefix}/+/online", 1)]
        if sys_topics:
            topics += [("$SYS/broker/clients/connected", 0), ("$SYS/broker/publish/messages/received", 0),
                       ("$SYS/broker/publish/messages/sent", 0)]
        self.client.on_connect = lambda c, *a: c.subscribe(topics)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        if msg.topic.startswith("$SYS/"):
            name = msg.topic.removeprefix("$SYS/broker/")
            text = msg.payload.decode(errors="replace")
            with self._lock:
                self.stats.sys[name] = text
                if name.startswith("publish/messages/") and text.isdigit():
                    self.stats.counters.setdefault(name, []).append((now, int(text)))
            return
        unit = msg.topic[len(self._prefix) + 1:].split("/", 1)[0]
        if msg.topic.endswith("/online"):
            with self._lock:
                self.stats.births.setdefault(unit, []).append(bytes(msg.payload))
            return
        seq, latency = seq_and_latency(bytes(msg.payload))
        with self._lock:
            s = self.stats
            s.received += 1
            s.first = now if s.first is None else s.first
            s.last = now
            s.per_unit.setdefault(unit, []).append(now)
            if isinstance(seq, int):
                s.seqs.setdefault(unit, []).append(seq)
            if latency is not None:
                s.latencies.append(latency)

    def start(self, timeout: float = 10.0) -> "FleetSubscriber":
        self.client.loop_start()
        if not self.ready.wait(timeout):
            raise TimeoutError("the fleet subscriber could not subscribe")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_fleet(host: str, port: int, *, units: int, duration_s: float, rate_hz: float = 1.0, prefix: str = "umps",
              sys_topics: bool = False, progress: Callable[[str], None] = lambda _l: None,
              stop: threading.Event | None = None, encoding: str = "json", generator: str = "wire") -> FleetReport:
    """Run ``units`` simulated units for ``duration_s`` and measure what the broker delivers.

    ``generator`` "wire": plain-socket units and subscriber (hil/fleet_wire.py), the subscriber on a
    thread of its own; "paho": a paho client each (:class:`SimUnit`, :class:`FleetSubscriber`).
    """
    route = default_route()
    ids = [f"FLEET-{i:04d}" for i in range(units)]
    sub_stop = threading.Event()
    wire_sub: WireSubscriber | None = None
    if generator == "wire":
        wire_sub = WireSubscriber(host, port, prefix, sys_topics=sys_topics, arrivals=True)
        stats, sub_thread = wire_sub.stats, serve(wire_sub, sub_stop)
        sims: list[Any] = [WireUnit(u, host, port, prefix=prefix, route=route, offset_s=route_offset(route, i, units),
                                    encoding=encoding) for i, u in enumerate(ids)]
        driver: Any = WireFleet(sims, stop)
    elif generator == "paho":
        sub = FleetSubscriber(host, port, prefix, sys_topics=sys_topics).start()
        stats = sub.stats
        sims = [SimUnit(u, host, port, prefix=prefix, route=route, offset_s=route_offset(route, i, units),
                        encoding=encoding) for i, u in enumerate(ids)]
        driver = Driver(sims, stop)
    else:
        raise ValueError(f"generator is 'wire' or 'paho', not {generator!r}")
    try:
        connected = driver.connect()
        progress(f"fleet: {connected}/{units} units connected; reporting at {rate_hz:g} Hz for {duration_s:g} s")
        start, measured_s = driver.report(duration_s, rate_hz, lambda t: progress(
            f"fleet: {t:5.1f} s, {stats.received} reports delivered"))
        driver.settle(2.0)  # the last reports and their acknowledgements land
        cpu = driver.cpu()
    finally:
        driver.close()
        if wire_sub is not None:
            sub_stop.set()
            sub_thread.join(5.0)
            wire_sub.close()
        else:
            sub.stop()
    return _report(sims, stats, units, rate_hz, measured_s, connected, cpu, (start + 1.0, start + measured_s))


def route_offset(route: Route, i: int, units: int) -> float:
    """Where unit ``i`` of ``units`` starts on the route: spread evenly along it."""
    return (i * route.duration_s / max(units, 1)) % max(route.duration_s, 1.0)


class Driver(Schedule):
    """Runs simulated units on one thread: connect, report on a shared schedule, settle, close."""

    def __init__(self, sims: list[SimUnit], stop: threading.Event | None = None):
        self.sims = sims
        self.stop = stop or threading.Event()
        self.sel = selectors.DefaultSelector()
        self.pump = _Pump(self.sel, sims)
        self._cpu0 = time.process_time()

    def connect(self, timeout: float = 15.0) -> int:
        """Connect every unit (in batches); returns how many are connected."""
        for i, u in enumerate(self.sims):
            u.connect()
            self.sel.register(u.client.socket(), selectors.EVENT_READ, u)
            if i % CONNECT_BATCH == CONNECT_BATCH - 1:
                self.pump(0.0)
        deadline = time.monotonic() + timeout
        while sum(u.connected for u in self.sims) < len(self.sims) and time.monotonic() < deadline \
                and not self.stop.is_set():
            self.pump(0.05)
        return sum(u.connected for u in self.sims)

    def emit(self, unit: SimUnit, t: float, utc: dt.datetime) -> None:
        unit.report(t, utc)

    def wait(self, due: float, now: float, end: float) -> None:
        self.pump(max(0.0, min(due - time.monotonic(), 0.02)))

    def close(self) -> None:
        for u in self.sims:
            try:
                u.client.disconnect()
                u.client.loop_write()
            except Exception:  # tearing down a few hundred sockets: keep going
                pass
            sock = u.client.socket()
            if sock is not None:
                try:
                    self.sel.unregister(sock)
                except (KeyError, ValueError):
                    pass
                sock.close()
        self.sel.close()


class _Pump:
    """One turn of the external loop: read what is ready, flush what waits, keepalives once a second."""

    def __init__(self, sel: selectors.BaseSelector, sims: list[SimUnit]):
        self.sel, self.sims = sel, sims
        self.last_misc = 0.0

    def __call__(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            key.data.client.loop_read(100)
        for u in self.sims:
            if u.client.want_write():
                u.client.loop_write()
        now = time.monotonic()
        if now - self.last_misc >= 1.0:
            self.last_misc = now
            for u in self.sims:
                u.client.loop_misc()


def _report(sims: list[Any], stats: FleetStats, units: int, rate_hz: float, duration_s: float, connected: int,
            cpu: float, window: tuple[float, float]) -> FleetReport:
    intervals: list[float] = []
    late = 0
    for times in stats.per_unit.values():
        gaps = [b - a for a, b in zip(times, times[1:])]
        intervals += gaps
        if any(g > 2.0 / rate_hz for g in gaps):
            late += 1
    missing = declared = 0
    for unit, seqs in stats.seqs.items():
        ledger = SeqLedger(received=set(seqs))
        for birth in stats.births.get(unit, []):
            ledger.on_message("online", birth)
        summary = ledger.summary()
        missing += len(summary.lost_in_transit)
        declared += len(summary.declared_lost)
    span = (stats.last - stats.first) if stats.first is not None and stats.last is not None else 0.0
    srt = sorted(intervals)
    return FleetReport(
        units=units, rate_hz=rate_hz, duration_s=round(duration_s, 3), connected=connected,
        reports=sum(u.seq - 1 for u in sims), published=sum(u.published for u in sims), acked=sum(u.acked for u in sims), delivered=stats.received,
        sustained_rate=(stats.received - 1) / span if span > 0 else 0.0,
        interval_mean=statistics.fmean(srt) if srt else None,
        interval_p95=percentile(srt, 95) if srt else None,
        interval_max=srt[-1] if srt else None,
        units_late=late, missing=missing, declared_lost=declared,
        broker_received_rate=stats.broker_rate("publish/messages/received", window[0], window[1]),
        broker_sent_rate=stats.broker_rate("publish/messages/sent", window[0], window[1]),
        broker_clients=stats.sys.get("clients/connected"), publisher_cpu_s=round(cpu, 2),
    )
