"""Fleet mode: 1,000 simulated units at 1 Hz against one broker (the dispatch side's load).

How it measures: ``hil.fleet.run_fleet`` (the rig's fleet mode, ``umps-hil
fleet``) against a private Mosquitto (``hil.broker.Broker``, free port,
``sys_interval 1``): every unit speaks the agent's MQTT contract (birth,
retained status, QoS 1 telemetry with a contiguous seq), all in one process
on one selector (the plain-socket units of ``hil/fleet_wire.py``); a
subscriber on ``umps/+/telemetry``, on a thread of its own, counts what the
broker delivers.
The figure is the sustained delivery rate against units x rate, with the
reports missing by seq and the per-unit intervals.

Run: ``python -m bench.bench_fleet [--units N] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench.common import Figure, Skip, log, mosquitto_binary  # noqa: E402

UNITS = 1000


def run(units: int, seconds: float) -> dict:
    if mosquitto_binary() is None:
        raise Skip("mosquitto is not installed (Debian package mosquitto)")
    from hil.broker import Broker
    from hil.fleet import run_fleet

    workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    broker = Broker(workdir, extra_config="sys_interval 1").start()
    try:
        host, port = broker.address
        log(f"bench_fleet: {units} units at 1 Hz for {seconds:.0f} s against mosquitto on {port}")
        report = run_fleet(host, port, units=units, duration_s=seconds, rate_hz=1.0, sys_topics=True)
        return report.to_json()
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def collect(quick: bool = False) -> dict:
    r = run(UNITS, 20.0 if quick else 60.0)
    target = r["units"] * r["rate_hz"]
    figs = [
        Figure("Fleet", f"sustained telemetry delivered by the broker, {r['units']:,} units at 1 Hz",
               r["sustained_rate"], "reports/s", target=0.99 * target, op=">=", digits=1,
               source=f"#7: {r['units']:,} units at 1 Hz kept up with, i.e. 99 % of the {target:,.0f}/s offered",
               note=f"{r['connected']} connected; {r['delivered']:,} delivered of {r['reports']:,} made"),
        Figure("Fleet", "reports missing by seq at the subscriber", float(r["missing"]), "reports", target=0,
               source="#3 (none lost)", digits=0),
        Figure("Fleet", "per-unit interval at the subscriber, p95", r["interval_p95"], "s", digits=3,
               note=f"mean {r['interval_mean'] or float('nan'):.3f} s, max {r['interval_max'] or float('nan'):.3f} s; "
                    f"{r['units_late']} unit(s) with a gap over 2 s"),
        Figure("Fleet", "CPU of the rig's fleet process (all units and the subscriber)",
               100 * r["publisher_cpu_s"] / r["duration_s"], "% of a core", digits=0),
    ]
    notes = [
        "The rig's fleet mode (`umps-hil fleet`): simulated units speaking the agent's MQTT contract on plain "
        "sockets (hil/fleet_wire.py), one process, one thread for the units and one for the subscriber, against a "
        "private Mosquitto on the same 2-core machine.",
    ]
    if r.get("broker_received_rate") is not None:
        notes.append(f"Broker ($SYS): PUBLISH received {r['broker_received_rate']:.0f}/s, sent "
                     f"{r['broker_sent_rate'] or 0:.0f}/s, {r['broker_clients']} clients connected.")
    return {"title": "Fleet load on the broker (issue #7)", "figures": [f.as_dict() for f in figs], "notes": notes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=UNITS)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args(argv)
    r = run(args.units, args.seconds)
    for k, v in r.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
