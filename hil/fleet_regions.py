"""Fleet mode across regions: simulated units on regional brokers bridged to a central one.

``umps-hil fleet --regions N`` and ``tests/test_fleet_bridge.py`` run this.
The units (:class:`hil.fleet.SimUnit`, the agent's MQTT contract) are spread
over the regions of a :class:`hil.regions.Topology`, each connected to its
own regional broker. Two levels watch them, as the rooms would:

- **regional**: each region's dispatch account subscribes on its regional
  broker and should see its own units' reports;
- **central**: command's account subscribes on the central broker and should
  see every unit's reports, through the bridges.

Each level reports the delivered rate, the latency (arrival minus the
report's ``ts``: the same machine's clock on both ends) as percentiles, and
the loss by ``seq`` against what the units made. A bridge can be cut for a
while during the run (``cut``): the regional level should not notice, and
the central level should get everything once the bridge is back (the run
waits for it, up to ``drain_s``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hil.fleet import Driver, FleetStats, FleetSubscriber, SimUnit, route_offset
from hil.regions import Topology
from hil.route import default_route


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
    rig_cpu_s: float

    def level(self, name: str) -> LevelFigures:
        return next(lv for lv in self.levels if lv.level == name)

    def text(self) -> str:
        lines = [f"fleet: {self.units} units ({self.connected} connected) in {self.regions} regions at "
                 f"{self.rate_hz:g} Hz, {self.encoding}, for {self.duration_s:g} s"
                 + (f"; {self.cut}" if self.cut else "")]
        lines += [lv.text() for lv in self.levels]
        lines.append(f"  rig process CPU: {self.rig_cpu_s:.1f} s ({100 * self.rig_cpu_s / self.duration_s:.0f} % "
                     "of a core)")
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


def run_regions(topology: Topology, *, per_region: int, duration_s: float, rate_hz: float = 1.0,
                encoding: str = "cbor", cut: Cut | None = None, drain_s: float = 60.0,
                progress: Callable[[str], None] = lambda _l: None,
                stop: threading.Event | None = None) -> RegionsReport:
    """Drive ``per_region`` units in each region of a started ``topology`` (made with those unit ids)."""
    route = default_route()
    ids = unit_ids(len(topology.region_list), per_region)
    total = sum(map(len, ids))
    pw = topology.password
    sims: list[SimUnit] = []
    members: dict[str, list[SimUnit]] = {}
    for region, names in zip(topology.region_list, ids):
        host, port = region.address
        units = [SimUnit(u, host, port, prefix="umps", route=route, offset_s=route_offset(route, len(sims) + i, total),
                         username=u, password=pw, encoding=encoding) for i, u in enumerate(names)]
        members[region.name] = units
        sims += units
    assert topology.central is not None
    subs = {r.name: FleetSubscriber(*r.address, "umps", sys_topics=False, username=r.dispatch, password=pw).start()
            for r in topology.region_list}
    central = FleetSubscriber(*topology.central.address, "umps", sys_topics=False,
                              username=Topology.CENTRAL_DISPATCH, password=pw).start()
    driver = Driver(sims, stop)
    timers: list[threading.Timer] = []
    try:
        connected = driver.connect()
        progress(f"fleet: {connected}/{total} units connected in {len(ids)} regions; {rate_hz:g} Hz, {encoding}")
        if cut is not None:
            cable = topology.region_list[cut.region].cable
            timers = [threading.Timer(cut.at_s, cable.cut), threading.Timer(cut.at_s + cut.for_s, cable.connect)]
            for t in timers:
                t.daemon = True
                t.start()
        start, measured = driver.report(duration_s, rate_hz, lambda t: progress(
            f"fleet: {t:5.1f} s, central {central.stats.received}, regional "
            f"{sum(s.stats.received for s in subs.values())} reports"))
        for t in timers:
            t.join()  # a cut longer than the run ends before the drain
        made = sum(u.seq - 1 for u in sims)
        driver.settle(drain_s, until=lambda: central.stats.received >= made
                      and sum(s.stats.received for s in subs.values()) >= made)
        driver.settle(1.0)  # duplicates in flight
        cpu = driver.cpu()
    finally:
        for t in timers:
            t.cancel()
        driver.close()
        for s in (*subs.values(), central):
            s.stop()
    regional = FleetStats()
    for s in subs.values():
        for unit, seqs in s.stats.seqs.items():
            regional.seqs.setdefault(unit, []).extend(seqs)
        regional.latencies += s.stats.latencies
    levels = (_level("regional", regional, sims, measured), _level("central", central.stats, sims, measured))
    cut_text = None
    if cut is not None:
        cut_text = f"bridge of {topology.region_list[cut.region].name} cut at {cut.at_s:g} s for {cut.for_s:g} s"
    return RegionsReport(regions=len(ids), units=total, connected=connected, rate_hz=rate_hz, encoding=encoding,
                         duration_s=round(measured, 2), cut=cut_text, levels=levels, rig_cpu_s=round(cpu, 2))


def _level(name: str, stats: FleetStats, sims: list[SimUnit], seconds: float) -> LevelFigures:
    expected = delivered = dups = 0
    for u in sims:
        made = u.seq - 1
        seen = stats.seqs.get(u.id, [])
        distinct = {s for s in seen if 1 <= s <= made}
        expected += made
        delivered += len(distinct)
        dups += len(seen) - len(set(seen))
    lat = sorted(stats.latencies)

    def pct(q: float) -> float | None:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None

    return LevelFigures(level=name, expected=expected, delivered=delivered, duplicates=dups,
                        missing=expected - delivered, rate=delivered / seconds if seconds > 0 else 0.0,
                        latency_p50=pct(0.50), latency_p95=pct(0.95), latency_p99=pct(0.99),
                        latency_max=lat[-1] if lat else None)
