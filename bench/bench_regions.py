"""A national fleet on regional brokers: 5,000 units at 1 Hz across three regions bridged to a central one.

How it measures: ``hil.regions.Topology`` starts three regional Mosquittos and
a central one from the shipped files (``firmware-config/mosquitto``,
``fleet/mosquitto``), bridged over mutual TLS; ``hil.fleet_regions.run_regions``
(``umps-hil fleet --regions 3``) runs the units, one process per region,
CBOR telemetry. Two levels subscribe as the rooms would: each region's
dispatch on its regional broker, command on the central one. Per level: the
delivered rate against what the units made, latency percentiles (arrival
minus the report's ``ts``) and the loss by ``seq`` (hil/seq_ledger.py).
Each broker's CPU comes from ``/proc`` over the run, and each rig process
reports its own: that is what docs/fleet.md sizes a deployment from. Runs
below and above the target (1,500 and 8,000 units, the same topology) show
how the brokers' cost grows with the load, and a last run puts 5,000 units on
a single regional broker (what one region's Mosquitto carries).

The units and rooms are the rig's plain-socket ones (``hil/fleet_wire.py``):
a unit is its own TCP connection, client id, password and ACL, MQTT 5, but
costs the rig well under 0.1 ms of CPU a report, so the brokers, not the rig,
are what is measured. Everything (four brokers, the units, the four
subscribers, the rig's TCP forwarders on the bridges) still shares this
2-core machine.

Run: ``python -m bench.bench_regions [--units N] [--seconds S] [--generator wire|paho]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench.common import Figure, Skip, log, mosquitto_binary, proc_cpu_seconds  # noqa: E402

REGIONS = 3
UNITS = 5000
SMALL, LARGE = 1500, 8000
ONE_REGION = 5000  # all on one regional broker: what one region's Mosquitto carries


def run(units: int, seconds: float, generator: str = "wire", regions: int = REGIONS) -> dict:
    if mosquitto_binary() is None:
        raise Skip("mosquitto is not installed (Debian package mosquitto)")
    from hil.fleet_regions import run_regions, unit_ids
    from hil.regions import Topology

    per_region = units // regions
    ids = [u for region in unit_ids(regions, per_region) for u in region]
    workdir = Path(tempfile.mkdtemp(prefix="bench-regions-"))
    topology = Topology(workdir, regions=regions, units=ids)
    try:
        topology.start()
        brokers = {"central": topology.central, **{r.name: r.broker for r in topology.region_list}}
        marks: dict[str, tuple[float, dict[str, float], list[dict[str, int]]]] = {}

        def on_phase(phase: str) -> None:  # the brokers' CPU and the bridges' bytes while the units report
            marks[phase] = (time.monotonic(), {name: proc_cpu_seconds(b.pid) or 0.0 for name, b in brokers.items()},
                            [dict(r.cable.bytes) for r in topology.region_list])

        log(f"bench_regions: {units} units at 1 Hz in {regions} region(s) for {seconds:.0f} s")
        report = run_regions(topology, per_region=per_region, duration_s=seconds, rate_hz=1.0, encoding="cbor",
                             drain_s=60.0, progress=log, generator=generator, on_phase=on_phase)
        (t0, cpu0, bytes0), (t1, cpu1, bytes1) = marks["reporting"], marks["reported"]
        cpu = {name: cpu1[name] - cpu0[name] for name in brokers}
        out = report.to_json()
        out["broker_cpu_pct"] = {name: 100 * c / (t1 - t0) for name, c in cpu.items()}
        out["broker_cpu_s"] = cpu
        out["bridge_bytes"] = {way: sum(b1[way] - b0[way] for b0, b1 in zip(bytes0, bytes1)) for way in ("up", "down")}
        out["window_s"] = t1 - t0
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
                       digits=0, note=f"regional {sum(regional) / len(regional):.0f} % each"))
    if reports:
        secs = r["broker_cpu_s"]
        per_region = reports / r["regions"]
        regional_us = [1e6 * v / per_region for k, v in secs.items() if k != "central"]
        figs.append(Figure("Regions", f"{label}: broker CPU per report, regional / central",
                           sum(regional_us) / len(regional_us), "µs", digits=0,
                           note=f"central {1e6 * secs['central'] / reports:.0f} µs; a regional report is taken in, "
                                f"sent to its room and across the bridge; a central one taken in and sent to "
                                f"command's room"))
    rig = r.get("process_cpu") or {}
    figs.append(Figure("Regions", f"{label}: rig CPU, all its processes", 100 * r["rig_cpu_s"] / r["duration_s"],
                       "% of a core", digits=0,
                       note=f"{r.get('generator', 'paho')} units and rooms; "
                            + "; ".join(f"{k} {100 * v / r['duration_s']:.0f} %" for k, v in rig.items())))
    return figs


def collect(quick: bool = False) -> dict:
    seconds = 20.0 if quick else 45.0
    small = run(SMALL, seconds)
    big = run(UNITS, seconds)
    large = run(LARGE, seconds)
    single = run(ONE_REGION, seconds, regions=1)
    figs = (_figures(big, f"{UNITS:,} units", True) + _figures(small, f"{SMALL:,} units", False)
            + _figures(large, f"{LARGE:,} units", False)
            + _figures(single, f"{ONE_REGION:,} units, one region", False))
    runs = (big, small, large, single)
    notes = [
        "Three regional Mosquittos (one in the last run) bridged over mutual TLS (QoS 1, persistent) to a central "
        "one, all from the "
        "shipped files, on this 2-core machine with the simulated units (one process per region, plain sockets: "
        "hil/fleet_wire.py), each level's subscribers (one process each) and the rig's TCP forwarders on the "
        "bridges. "
        f"Measured for {big['duration_s']:.0f} s each.",
        "Where the delivered rate is below what was offered, the units made fewer reports than 1 Hz (everything "
        "shares two cores); loss counts reports made and never delivered, audited by seq per unit.",
        "Connected: " + ", ".join(f"{r['connected']:,} of {r['units']:,}" for r in runs)
        + ". Load average at the end of each run: " + ", ".join(f"{r['load_average']:.1f}" for r in runs)
        + " (other work on the machine competes with the rig for the two cores).",
    ]
    return {"title": "Regional brokers bridged to a central one (issue #19)", "figures": [f.as_dict() for f in figs],
            "notes": notes, "runs": {"big": big, "small": small, "large": large, "one_region": single}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=UNITS)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--generator", choices=("wire", "paho"), default="wire")
    ap.add_argument("--regions", type=int, default=REGIONS)
    args = ap.parse_args(argv)
    r = run(args.units, args.seconds, args.generator, args.regions)
    for k, v in r.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
