"""Fleet mode across regions: simulated units on regional brokers bridged to a central one.

``umps-hil fleet --regions N`` and ``tests/test_fleet_bridge.py`` run this.
The units (:class:`hil.fleet.SimUnit`, the agent's MQTT contract) are spread
over the regions of a :class:`hil.regions.Topology`, each connected to its
own regional broker. Two levels watch them, as the rooms would:

- **regional**: each region's dispatch account subscribes on its regional
  broker and should see its own units' reports;
- **central**: command's account subscribes on the central broker and should
  see every unit's reports, through the bridges.

Each region's units run in a process of their own, and each room's
subscriber too; the cables stay here. The units and rooms are the rig's
plain-socket ones by default (``generator="wire"``, ``hil/fleet_wire.py``:
a unit is a socket and a few counters, so 5,000 of them leave the cores to
the brokers), or paho clients (``generator="paho"``, :class:`hil.fleet.SimUnit`
and :class:`hil.fleet.FleetSubscriber`: the reference client, at a few
hundred microseconds of Python per message). Each level reports the delivered rate, the latency (arrival minus the
report's ``ts``: the same machine's clock on both ends) as percentiles, and
the loss by ``seq`` against what the units made. A bridge can be cut for a
while during the run (``cut``): the regional level should not notice, and
the central level should get everything once the bridge is back (the run
waits for it, up to ``drain_s``).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hil.fleet import Driver, FleetStats, FleetSubscriber, SimUnit, route_offset
from hil.fleet_wire import WireFleet, WireSubscriber, WireUnit, check_nofile
from hil.regions import Topology
from hil.route import default_route
from hil.seq_ledger import SeqLedger
from hil.stats import percentile
from hil.wait import poll_until


@dataclass(frozen=True)
class LevelFigures:
    level: str
    expected: int  # reports the units it should see made
    delivered: int  # distinct (unit, seq) received
    duplicates: int
    missing: int
    rate: float  # reports/s received over the reporting time
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    latency_max: float | None

    def text(self) -> str:
        lat = "no reports"
        if self.latency_p50 is not None:
            lat = (f"latency p50 {1000 * self.latency_p50:.0f} ms, p95 {1000 * self.latency_p95:.0f} ms, "
                   f"p99 {1000 * self.latency_p99:.0f} ms, max {1000 * self.latency_max:.0f} ms")
        return (f"  {self.level:8s} delivered {self.delivered}/{self.expected} ({self.rate:.0f} reports/s), "
                f"missing {self.missing}, duplicates {self.duplicates}; {lat}")


@dataclass(frozen=True)
class RegionsReport:
    regions: int
    units: int
    connected: int
    rate_hz: float
    encoding: str
    duration_s: float
    cut: str | None
    levels: tuple[LevelFigures, ...]
    rig_cpu_s: float  # all the rig's processes: units, rooms, main
    generator: str = "wire"
    process_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of each rig process

    def level(self, name: str) -> LevelFigures:
        return next(lv for lv in self.levels if lv.level == name)

    def text(self) -> str:
        lines = [f"fleet: {self.units} units ({self.connected} connected) in {self.regions} regions at "
                 f"{self.rate_hz:g} Hz, {self.encoding}, for {self.duration_s:g} s"
                 + (f"; {self.cut}" if self.cut else "")]
        lines += [lv.text() for lv in self.levels]
        lines.append(f"  rig CPU ({self.generator} units and rooms): {self.rig_cpu_s:.1f} s "
                     f"({100 * self.rig_cpu_s / self.duration_s:.0f} % of a core)")
        if self.process_cpu:
            lines.append("    " + "; ".join(f"{name} {100 * c / self.duration_s:.0f} %"
                                           for name, c in self.process_cpu.items()))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["levels"] = [dict(lv.__dict__) for lv in self.levels]
        return out


@dataclass(frozen=True)
class Cut:
    """Cut ``region``'s bridge ``at_s`` seconds into the run, for ``for_s`` seconds."""

    region: int
    at_s: float
    for_s: float


def unit_ids(regions: int, per_region: int) -> list[list[str]]:
    return [[f"R{r + 1}-U{i:04d}" for i in range(per_region)] for r in range(regions)]


@dataclass(frozen=True)
class _WorkerSpec:
    units: list[tuple[str, float]]  # (unit id, route offset)
    host: str
    port: int
    password: str
    encoding: str
    rate_hz: float
    duration_s: float
    generator: str = "wire"


GENERATORS = ("wire", "paho")


def _region_worker(conn: Any, spec: _WorkerSpec) -> None:
    """One region's units in a process of their own (a Python thread is the rig's limit, not the brokers)."""
    route = default_route()
    unit = WireUnit if spec.generator == "wire" else SimUnit
    sims = [unit(u, spec.host, spec.port, prefix="umps", route=route, offset_s=offset, username=u,
                 password=spec.password, encoding=spec.encoding) for u, offset in spec.units]
    driver: Driver | WireFleet = WireFleet(sims) if spec.generator == "wire" else Driver(sims)
    try:
        conn.send(driver.connect(timeout=60.0))
        start_at = conn.recv()
        time.sleep(max(0.0, start_at - time.time()))
        _start, measured = driver.report(spec.duration_s, spec.rate_hz)
        driver.settle(10.0, until=lambda: sum(u.acked for u in sims) >= sum(u.published for u in sims))
        conn.send(({u.id: u.seq - 1 for u in sims}, driver.cpu(), measured))
    finally:
        driver.close()
        conn.close()


def _subscriber_worker(conn: Any, host: str, port: int, username: str, password: str, generator: str) -> None:
    """One room's subscriber in a process of its own: counts while running, its stats at the end."""
    if generator == "wire":
        sub = WireSubscriber(host, port, "umps", username=username, password=password)
        try:
            conn.send("ready")
            last = 0.0
            while not conn.poll(0):
                sub.pump(0.2)
                if time.monotonic() - last >= 0.5:
                    last = time.monotonic()
                    conn.send(sub.stats.received)
            conn.recv()
            conn.send(("stats", sub.stats.seqs, sub.stats.latencies, sub.stats.received, sub.stats.births,
                       time.process_time()))
        finally:
            sub.close()
            conn.close()
        return
    paho_sub = FleetSubscriber(host, port, "umps", sys_topics=False, username=username, password=password).start()
    try:
        conn.send("ready")
        while not conn.poll(0.5):
            conn.send(paho_sub.stats.received)
        conn.recv()
        conn.send(("stats", paho_sub.stats.seqs, paho_sub.stats.latencies, paho_sub.stats.received,
                   paho_sub.stats.births, time.process_time()))
    finally:
        paho_sub.stop()
        conn.close()


class RemoteSubscriber:
    """A level's subscriber running in its own process (see :func:`_subscriber_worker`)."""

    def __init__(self, ctx: Any, address: tuple[str, int], username: str, password: str, generator: str = "wire"):
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_subscriber_worker, args=(child, *address, username, password, generator),
                                name=f"fleet-sub-{username}", daemon=True)
        self.proc.start()
        self._received = 0
        self.cpu_s = 0.0  # the subscriber process's CPU, once finished

    def wait_ready(self) -> None:
        if _recv(self._conn, 60.0, "a subscriber ready") != "ready":
            raise RuntimeError("a subscriber process did not start")

    @property
    def received(self) -> int:
        while self._conn.poll():
            msg = self._conn.recv()
            if isinstance(msg, int):
                self._received = msg
        return self._received

    def finish(self) -> FleetStats:
        self._conn.send("stop")
        while True:
            msg = _recv(self._conn, 30.0, "a subscriber's figures")
            if isinstance(msg, tuple) and msg[0] == "stats":
                break
        self.proc.join(10.0)
        self.cpu_s = msg[5]
        return FleetStats(received=msg[3], seqs=msg[1], latencies=msg[2], births=msg[4])

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5.0)


def run_regions(topology: Topology, *, per_region: int, duration_s: float, rate_hz: float = 1.0,
                encoding: str = "cbor", cut: Cut | None = None, drain_s: float = 60.0,
                progress: Callable[[str], None] = lambda _l: None,
                stop: threading.Event | None = None, generator: str = "wire",
                on_phase: Callable[[str], None] = lambda _p: None) -> RegionsReport:
    """Drive ``per_region`` units in each region of a started ``topology`` (made with those unit ids).

    Each region's units run in a process of their own, each level's subscriber too; the cables
    run here. ``on_phase("reporting")`` is called as the units start reporting (all connected),
    ``on_phase("reported")`` once they have stopped and their last reports are acknowledged (a
    bench reads the brokers' CPU between the two).
    """
    route = default_route()
    ids = unit_ids(len(topology.region_list), per_region)
    total = sum(map(len, ids))
    pw = topology.password
    stop = stop or threading.Event()
    assert topology.central is not None
    ctx = multiprocessing.get_context("spawn")
    if generator not in GENERATORS:
        raise ValueError(f"generator is one of {GENERATORS}, not {generator!r}")
    check_nofile(max(map(len, ids)))  # here, before any process starts (they inherit the limit)
    subs = {r.name: RemoteSubscriber(ctx, r.address, r.dispatch, pw, generator) for r in topology.region_list}
    central = RemoteSubscriber(ctx, topology.central.address, Topology.CENTRAL_DISPATCH, pw, generator)
    workers = []
    timers: list[threading.Timer] = []
    process_cpu: dict[str, float] = {}  # CPU seconds of each rig process over the run
    cpu0 = time.process_time()
    try:
        for sub in (*subs.values(), central):
            sub.wait_ready()
        n = 0
        for region, names in zip(topology.region_list, ids):
            spec = _WorkerSpec([(u, route_offset(route, n + i, total)) for i, u in enumerate(names)], *region.address,
                               pw, encoding, rate_hz, duration_s, generator)
            n += len(names)
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_region_worker, args=(child, spec), name=f"fleet-{region.name}", daemon=True)
            proc.start()
            workers.append((proc, parent))
        connected = sum(_recv(conn, 90.0, "units connected") for _proc, conn in workers)
        progress(f"fleet: {connected}/{total} units connected in {len(ids)} regions; {rate_hz:g} Hz, {encoding}")
        start_at = time.time() + 0.5
        for _proc, conn in workers:
            conn.send(start_at)
        time.sleep(max(0.0, start_at - time.time()))
        on_phase("reporting")
        if cut is not None:
            cable = topology.region_list[cut.region].cable
            timers = [threading.Timer(0.5 + cut.at_s, cable.cut), threading.Timer(0.5 + cut.at_s + cut.for_s,
                                                                                     cable.connect)]
            for t in timers:
                t.daemon = True
                t.start()
        deadline = time.monotonic() + duration_s + 0.5
        while time.monotonic() < deadline and not stop.is_set():
            stop.wait(min(5.0, max(0.0, deadline - time.monotonic())))
            progress(f"fleet: central {central.received}, regional "
                     f"{sum(s.received for s in subs.values())} reports")
        made: dict[str, int] = {}
        measured = 0.0
        for region, (_proc, conn) in zip(topology.region_list, workers):
            counts, cpu, seconds = _recv(conn, 60.0, "the units' last acknowledgements")
            made.update(counts)
            process_cpu[f"units of {region.name}"] = round(cpu, 2)
            measured = max(measured, seconds)
        on_phase("reported")
        for t in timers:
            t.join()  # a cut longer than the run ends before the drain
        expected = sum(made.values())
        poll_until(lambda: stop.is_set() or (central.received >= expected
                                             and sum(s.received for s in subs.values()) >= expected), drain_s, 0.1)
        time.sleep(1.0)  # duplicates still in flight
        room_stats = [s.finish() for s in subs.values()]
        central_stats = central.finish()
        for name, s in subs.items():
            process_cpu[f"room of {name}"] = round(s.cpu_s, 2)
        process_cpu["command's room (central)"] = round(central.cpu_s, 2)
        process_cpu["rig main process"] = round(time.process_time() - cpu0, 2)
    finally:
        for t in timers:
            t.cancel()
        for proc, conn in workers:
            proc.join(10.0)
            if proc.is_alive():
                proc.kill()
        for s in (*subs.values(), central):
            s.kill()
    regional = FleetStats()
    for stats in room_stats:
        for unit, seqs in stats.seqs.items():
            regional.seqs.setdefault(unit, []).extend(seqs)
        for unit, births in stats.births.items():
            regional.births.setdefault(unit, []).extend(births)
        regional.latencies += stats.latencies
    levels = (_level("regional", regional, made, measured), _level("central", central_stats, made, measured))
    cut_text = None
    if cut is not None:
        cut_text = f"bridge of {topology.region_list[cut.region].name} cut at {cut.at_s:g} s for {cut.for_s:g} s"
    return RegionsReport(regions=len(ids), units=total, connected=connected, rate_hz=rate_hz, encoding=encoding,
                         duration_s=round(measured, 2), cut=cut_text, levels=levels,
                         rig_cpu_s=round(sum(process_cpu.values()), 2), generator=generator, process_cpu=process_cpu)


def _recv(conn: Any, timeout: float, what: str) -> Any:
    if not conn.poll(timeout):
        raise RuntimeError(f"a region's unit process gave no answer ({what}) within {timeout} s")
    return conn.recv()


def _level(name: str, stats: FleetStats, made_by: dict[str, int], seconds: float) -> LevelFigures:
    """A level's account of every unit's seq (hil/seq_ledger.py) against what the unit made."""
    expected = delivered = dups = missing = 0
    for unit, made in made_by.items():
        ledger = SeqLedger()
        for birth in stats.births.get(unit, []):
            ledger.on_message("online", birth)
        for seq in stats.seqs.get(unit, []):
            ledger.on_report({"seq": seq})
        summary = ledger.summary()
        expected += made
        received = sum(1 for s in ledger.received if 1 <= s <= made)
        delivered += received
        dups += summary.duplicates
        # lost in transit or declared lost inside the span, and the tail the level never saw
        tail = made - summary.hi if summary.hi is not None and summary.hi < made else (made if summary.hi is None
                                                                                      else 0)
        missing += len(summary.lost_in_transit) + len(summary.declared_lost) + tail
    lat = stats.latencies

    def pct(q: float) -> float | None:
        return percentile(lat, q) if lat else None

    return LevelFigures(level=name, expected=expected, delivered=delivered, duplicates=dups,
                        missing=missing, rate=delivered / seconds if seconds > 0 else 0.0,
                        latency_p50=pct(50), latency_p95=pct(95), latency_p99=pct(99), latency_max=pct(100))
