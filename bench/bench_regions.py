"""A national fleet on regional brokers: 5,000 units at 1 Hz across three regions bridged to a central one.

How it measures: ``hil.regions.Topology`` starts three regional Mosquittos and
a central one from the shipped files (``firmware-config/mosquitto``,
``fleet/mosquitto``), bridged over mutual TLS; ``hil.fleet_regions.run_regions``
(``umps-hil fleet --regions 3``) runs the units, one process per region,
CBOR telemetry. Two levels subscribe as the rooms would: each region's
dispatch on its regional broker, command on the central one. Per level: the
delivered rate against what the units made, latency percentiles (arrival
minus the report's ``ts``) and the loss by ``seq``. Each broker's CPU comes
from ``/proc`` over the run, which is what docs/fleet.md sizes a deployment
from. A second, smaller run (the same topology) shows the figures where the
machine is not saturated.

Everything (four brokers, the units, the four subscribers) shares this 2-core
machine; the simulated units and subscribers are Python and cost more CPU
per message than the brokers do.

Run: ``python -m bench.bench_regions [--units N] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench.common import Figure, Skip, log, mosquitto_binary, proc_cpu_seconds  # noqa: E402

REGIONS = 3
UNITS = 5000


def run(units: int, seconds: float) -> dict:
    if mosquitto_binary() is None:
        raise Skip("mosquitto is not installed (Debian package mosquitto)")
    from hil.fleet_regions import run_regions, unit_ids
    from hil.regions import Topology

    per_region = units // REGIONS
    ids = [u for region in unit_ids(REGIONS, per_region) for u in region]
    workdir = Path(tempfile.mkdtemp(prefix="bench-regions-"))
    topology = Topology(workdir, regions=REGIONS, units=ids)
    try:
        topology.start()
        brokers = {"central": topology.central, **{r.name: r.broker for r in topology.region_list}}
        cpu0 = {name: proc_cpu_seconds(b.pid) for name, b in brokers.items()}
        bytes0 = [dict(r.cable.bytes) for r in topology.region_list]
        log(f"bench_regions: {units} units at 1 Hz in {REGIONS} regions for {seconds:.0f} s")
        report = run_regions(topology, per_region=per_region, duration_s=seconds, rate_hz=1.0, encoding="cbor",
                             drain_s=60.0, progress=log)
        cpu = {name: (proc_cpu_seconds(b.pid) or 0.0) - (cpu0[name] or 0.0) for name, b in brokers.items()}
        out = report.to_json()
        out["broker_cpu_pct"] = {name: 100 * c / report.duration_s for name, c in cpu.items()}
        out["bridge_bytes"] = {way: sum(r.cable.bytes[way] - b[way] for r, b in zip(topology.region_list, bytes0))
                               for way in ("up", "down")}
        out["load_average"] = os.getloadavg()[0]  # the machine is shared: how busy it was at the end
        return out
    finally:
        topology.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _figures(r: dict, label: str, target: bool) -> list[Figure]:
    offered = r["units"] * r["rate_hz"]
    figs = []
    for lv in r["levels"]:
        name = lv["level"]
        figs += [
            Figure("Regions", f"{label}: {name} level, delivered", lv["rate"], "reports/s",
                   target=0.99 * offered if target else None, op=">=", digits=0,
                   source=f"#19: {r['units']:,} units at 1 Hz" if target else "",
                   note=f"{lv['delivered']:,} of {lv['expected']:,} made; {lv['duplicates']} duplicates"),
            Figure("Regions", f"{label}: {name} level, lost by seq", float(lv["missing"]), "reports",
                   target=0 if target else None, source="#19 (0 lost)" if target else "", digits=0),
            Figure("Regions", f"{label}: {name} level, latency p50 / p95 / p99", (lv["latency_p50"] or 0) * 1000,
                   "ms", digits=0, note=f"p95 {1000 * (lv['latency_p95'] or 0):.0f} ms, p99 "
                                        f"{1000 * (lv['latency_p99'] or 0):.0f} ms, max "
                                        f"{1000 * (lv['latency_max'] or 0):.0f} ms"),
        ]
    reports = r["levels"][1]["delivered"]
    if reports:
        figs.append(Figure("Regions", f"{label}: bridge bytes per report, region → centre (TLS)",
                           r["bridge_bytes"]["up"] / reports, "B", digits=1,
                           note=f"centre → region {r['bridge_bytes']['down'] / reports:.1f} B a report (PUBACKs)"))
    cpu = r["broker_cpu_pct"]
    regional = [v for k, v in cpu.items() if k != "central"]
    figs.append(Figure("Regions", f"{label}: broker CPU, central / regional mean", cpu["central"], "% of a core",
                       digits=0, note=f"regional {sum(regional) / len(regional):.0f} % each; rig processes "
                                      f"{100 * r['rig_cpu_s'] / r['duration_s']:.0f} %"))
    return figs


def collect(quick: bool = False) -> dict:
    seconds = 20.0 if quick else 45.0
    small = run(1500, seconds)
    big = run(UNITS, seconds)
    figs = _figures(big, f"{UNITS:,} units", True) + _figures(small, "1,500 units", False)
    notes = [
        f"Three regional Mosquittos bridged over mutual TLS (QoS 1, persistent) to a central one, all from the "
        f"shipped files, on this 2-core machine with the simulated units (one Python process per region) and "
        f"the four subscribers (Python). Measured for {big['duration_s']:.0f} s and {small['duration_s']:.0f} s.",
        "Where the delivered rate is below what was offered, the units made fewer reports than 1 Hz (the rig's "
        "Python processes and the brokers share two cores); loss counts reports made and never delivered.",
        f"Connected: {big['connected']:,} of {big['units']:,} and {small['connected']:,} of {small['units']:,}. "
        f"Load average at the end of each run: {big['load_average']:.1f} and {small['load_average']:.1f} "
        "(other work on the machine competes with the rig for the two cores).",
    ]
    return {"title": "Regional brokers bridged to a central one (issue #19)", "figures": [f.as_dict() for f in figs],
            "notes": notes, "runs": {"big": big, "small": small}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=UNITS)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args(argv)
    r = run(args.units, args.seconds)
    for k, v in r.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
