"""Fix age at publish, 1 Hz cadence, RSS and CPU of the real agent with a 10 Hz receiver.

How it measures: the rig (``bench.rig``) runs the agent as a motorcycle (no
touchscreen, display ``none``; mutual TLS to the broker and an admin key, as
on a vehicle) with its GNSS port on the GNSS emulator's pty,
the emulator driving the Kénitra route at 10 Hz (GN talker, RMC VTG GGA GSA
every epoch, GSV and ZDA once a second). The emulator stamps the wall clock
right after it wrote each epoch, keyed by the epoch's UTC time. A subscriber
on ``umps/<unit>/telemetry`` stamps each report on receipt. For each report:

* fix age at publish = report ``ts`` - the time its fix's epoch was written
  (both from the same system clock; ``ts`` is the agent's own publish stamp);
* fix age at receipt = subscriber receipt - the epoch's write time;
* the ``fix.age`` the agent itself reports.

Cadence: the intervals between consecutive reports on receipt, error against
1 / rate_hz, and reports counted against elapsed seconds (drift). Memory and
CPU: the agent process's VmRSS at the end and its utime+stime over the steady
part of the run (after a warm-up), as a share of one core.

Peer, same run, same emulator (a second pty carrying the same bytes): a
minimal process reading the port with pyserial, parsing with pynmea2 and
publishing the newest fix at 1 Hz with raw paho (QoS 1, the same mutual TLS)
as soon as an epoch's GGA completes; no outbox, no state. Its fix age, RSS
and CPU are measured the same way.

Run: ``python -m bench.bench_fix [--seconds N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench.common import (  # noqa: E402
    ROOT, Figure, log, proc_cpu_seconds, proc_memory_kib, proc_rss_kib, proc_write_bytes, ratio, summary,
)
from agent.adapters.outbox import OFFLINE_COMMIT_INTERVAL_S  # noqa: E402
from bench.peers import command as peer_command  # noqa: E402
from bench.rig import PREFIX, Rig, topic  # noqa: E402
from hil.expect import parse_utc  # noqa: E402

RATE_HZ = 10
WARMUP_S = 10.0
PEER_UNIT = "PEER-01"



def analyse(rig: Rig, topic_name: str, since_mono: float, rate_hz: float) -> dict:
    msgs = [m for m in rig.watcher.on(topic_name) if m.mono >= since_mono]
    age_pub, age_recv, age_self, age_stamp, unmatched, seqs = [], [], [], [], 0, []
    for m in msgs:
        body = m.json() or {}
        fix = body.get("fix") or {}
        if isinstance(body.get("seq"), int):
            seqs.append(body["seq"])
        if isinstance(fix.get("age"), (int, float)):
            age_self.append(1000 * fix["age"])
        fix_time = parse_utc(fix.get("time"))
        sent = rig.gnss.emitted_wall(fix_time) if fix_time else None
        ts = parse_utc(body.get("ts"))
        # A ts from a GNSS-disciplined clock is on the receiver's timeline (UTC = system
        # clock + offset); a ts from the system clock is not: bring both to the same one.
        offset = rig.gnss.utc_offset_s if body.get("time_source") == "gnss" else 0.0
        if ts is not None and fix_time is not None:
            age_stamp.append(1000 * ((ts - fix_time).total_seconds() - offset + rig.gnss.utc_offset_s))
        if sent is None or ts is None:
            unmatched += 1
            continue
        age_pub.append(1000 * (ts.timestamp() - offset - sent))
        age_recv.append(1000 * (m.wall - sent))
    intervals = [b.mono - a.mono for a, b in zip(msgs, msgs[1:])]
    errors = [1000 * abs(iv - 1 / rate_hz) for iv in intervals]
    span = msgs[-1].mono - msgs[0].mono if len(msgs) > 1 else float("nan")
    gaps = sum(1 for a, b in zip(seqs, seqs[1:]) if b != a + 1)
    return {
        "reports": len(msgs), "span_s": span, "unmatched": unmatched, "seq_gaps": gaps,
        "age_pub": age_pub, "age_recv": age_recv, "age_self": age_self, "age_stamp": age_stamp, "interval_err": errors,
        "drift_reports": (len(msgs) - 1) - span * rate_hz if len(msgs) > 1 else float("nan"),
    }


# What the agent's memory is made of: imports added one after the other to a fresh
# interpreter, the libraries first (the peer's, then the agent's others), its own code last.
IMPORT_LADDER = (
    ("pyserial + pynmea2 + paho (what the peer imports)", "import serial, pynmea2, paho.mqtt.client"),
    ("sqlite3", "import sqlite3"),
    ("tenacity", "import tenacity"),
    ("gpiozero + its pigpio pin factory", "import gpiozero, gpiozero.pins.pigpio"),
    ("the agent's own code", "import agent.cli, agent.runtime, agent.adapters.gpio"),
)
# Not in the agent: what its validation child holds (pydantic and the config schema built),
# and so what in-process validation would add to the agent all day.
VALIDATION_STEP = ("pydantic with the config schema built", "import agent.config_validate as v\nv._adapter()")



def import_ladder() -> list[tuple[str, float]]:
    """RSS (MiB) after each step of IMPORT_LADDER, from the bare interpreter on."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    steps = (*IMPORT_LADDER, VALIDATION_STEP)
    proc = subprocess.run(peer_command("import_ladder", json.dumps([c for _, c in steps])),
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    if proc.returncode != 0:
        return []
    kib = json.loads(proc.stdout)
    return [(label, k / 1024) for label, k in zip(["bare interpreter", *(n for n, _ in steps)], kib)]


def unplug_rounds(rig: Rig, rounds: int) -> tuple[list[float], list[float]]:
    """Pull the receiver's cable (the pty goes away) and plug it back, ``rounds`` times.

    Returns the seconds from unplug to the agent's "lost" log line, and from replug to
    its "open" line (the reopen back-off is capped by ``[gnss] reopen_max_wait_s``).
    """
    lost, reopened = [], []
    for _ in range(rounds):
        t = time.monotonic()
        rig.gnss.unplug()
        seen = rig.agent.wait_line(" lost", t, 10.0)
        if seen is not None:
            lost.append(seen - t)
        time.sleep(2.0)  # the cable stays out a moment (timing a physical action)
        t = time.monotonic()
        rig.gnss.replug()
        seen = rig.agent.wait_line("open", t, 15.0)
        if seen is not None:
            reopened.append(seen - t)
        mark = rig.watcher.mark()
        rig.watcher.wait_message(lambda m: m.topic == topic("telemetry") and ((m.json() or {}).get("fix") or {}).get("mode", 0)
                         >= 2, 10.0, mark)
    return lost, reopened


def run(seconds: float, unplugs: int = 5, down_seconds: float = 30.0) -> dict:
    rig = Rig(kind="motorcycle", gnss_rate_hz=RATE_HZ, extra_ptys=1).start()
    out: dict = {"seconds": seconds}
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    peer_topic = f"{PREFIX}/{PEER_UNIT}/telemetry"
    peer = None
    try:
        peer_seen_as = rig.watch(peer_topic)
        tls = rig.client_tls("bench-peer-gnss")
        peer = subprocess.Popen(peer_command("gnss", rig.peer_ptys[0], str(rig.broker.port), peer_topic, *tls.argv()),
                                stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        if peer.stdout.readline().strip() != "ready":
            raise RuntimeError("the GNSS peer did not start")
        log(f"bench_fix: agent up (pid {rig.agent.pid}), peer pid {peer.pid}; warm-up {WARMUP_S:.0f} s, "
            f"then {seconds:.0f} s with a {RATE_HZ} Hz receiver")
        time.sleep(WARMUP_S)  # a timed run: the figures are taken over a fixed window
        t0 = time.monotonic()
        cpu0 = {"agent": proc_cpu_seconds(rig.agent.pid), "peer": proc_cpu_seconds(peer.pid)}
        io0 = proc_write_bytes(rig.agent.pid)
        time.sleep(seconds)
        wall = time.monotonic() - t0
        cpu1 = {"agent": proc_cpu_seconds(rig.agent.pid), "peer": proc_cpu_seconds(peer.pid)}
        io1 = proc_write_bytes(rig.agent.pid)
        out["write_bytes_per_day"] = (io1 - io0) * 86400 / wall if io0 is not None and io1 is not None else None
        out["rss_kib"] = {"agent": proc_rss_kib(rig.agent.pid), "peer": proc_rss_kib(peer.pid)}
        memory = proc_memory_kib(rig.agent.pid)
        out["agent_rss_split_kib"] = {"anon": memory.get("RssAnon"), "file": memory.get("RssFile")}
        out["import_ladder"] = import_ladder()
        out["cpu_pct"] = {k: 100 * (cpu1[k] - cpu0[k]) / wall if cpu0[k] is not None and cpu1[k] is not None
                          else float("nan") for k in cpu0}
        out["agent"] = analyse(rig, topic("telemetry"), t0, 1.0)
        out["peer"] = analyse(rig, peer_seen_as, t0, 1.0)
        out["agent_alive"] = rig.agent.alive()
        out["emulator"] = dict(rig.gnss.stats)
        peer.terminate()  # it has no reopen logic: unplugging would only crash it
        peer.wait(5)
        out["lost"], out["reopened"] = unplug_rounds(rig, unplugs)
        # Link down: the broker goes away; every report now waits in the outbox's backlog.
        rig.broker.stop()
        # A day with the broker gone is a day at the offline cadence (a commit every 30 s), which the
        # outbox takes once nothing was acknowledged for that long: measured from then on.
        time.sleep(OFFLINE_COMMIT_INTERVAL_S + 5.0)
        io0, t1 = proc_write_bytes(rig.agent.pid), time.monotonic()
        time.sleep(down_seconds)
        io1, wall = proc_write_bytes(rig.agent.pid), time.monotonic() - t1
        out["down_seconds"] = wall
        out["down_write_bytes_per_day"] = ((io1 - io0) * 86400 / wall
                                           if io0 is not None and io1 is not None else None)
        out["utc_offset_ms"] = 1000 * rig.gnss.utc_offset_s
        last = rig.watcher.on(topic("telemetry"))
        out["sample"] = last[-1].payload.decode("utf-8", "replace") if last else None
    finally:
        if peer is not None and peer.poll() is None:
            peer.terminate()
            try:
                peer.wait(5)
            except subprocess.TimeoutExpired:
                peer.kill()
                peer.wait()
        info = rig.stop()
        out["agent_log_tail"] = info.get("agent_log_tail", "")
    return out


def collect(quick: bool = False) -> dict:
    r = run(30.0 if quick else 300.0, 3 if quick else 8, 30.0 if quick else 600.0)
    a, p = r["agent"], r["peer"]
    ar, pr = summary(a["age_recv"]), summary(p["age_recv"])
    asf = summary(a["age_self"])
    ae, pe = summary(a["interval_err"]), summary(p["interval_err"])
    peer_label = "pyserial + pynmea2 + raw paho, same receiver, same TLS"
    ast, pst = summary(a["age_stamp"]), summary(p["age_stamp"])
    figs = [
        Figure("Telemetry", f"fix age at publish, upper bound: epoch written -> report received by a subscriber, "
               f"p50 ({ar['n']} reports)", ar["p50"], "ms", target=100, source="#3 (well under 100 ms)",
               peer=pr["p50"], peer_label=peer_label),
        Figure("Telemetry", "fix age at publish, upper bound (as above), p99", ar["p99"], "ms", target=100,
               source="#3", peer=pr["p99"], peer_label=peer_label, note=f"max {ar['max']:.1f} ms"),
        Figure("Telemetry", "fix age by the report's own stamps (ts - fix.time), p99", ast["p99"], "ms",
               peer=pst["p99"], peer_label=peer_label, note=f"p50 {ast['p50']:.1f} ms"),
        Figure("Telemetry", "fix.age as the agent reports it, p99", asf["p99"], "ms",
               note=f"p50 {asf['p50']:.1f} ms"),
        Figure("Telemetry", f"1 Hz interval error on receipt, p50 ({ae['n']} intervals)", ae["p50"], "ms",
               peer=pe["p50"], peer_label=peer_label),
        Figure("Telemetry", "1 Hz interval error on receipt, p99", ae["p99"], "ms", peer=pe["p99"],
               peer_label=peer_label, note=f"max {ae['max']:.1f} ms"),
        Figure("Telemetry", f"drift: reports received minus seconds elapsed over {a['span_s']:.0f} s",
               a["drift_reports"], "reports", digits=2, peer=p["drift_reports"], peer_label=peer_label,
               note=f"{a['reports']} reports, {a['seq_gaps']} seq gaps"),
        Figure("GNSS", f"receiver unplugged (pty closed) -> agent logs \"GNSS lost\", worst of {len(r['lost'])}",
               max(r["lost"]) if r["lost"] else None, "s", target=3, source="#2", digits=3,
               note=f"median {summary(r['lost'])['p50']:.3f} s" if r["lost"] else "never seen"),
        Figure("GNSS", f"receiver plugged back -> port open again, worst of {len(r['reopened'])}",
               max(r["reopened"]) if r["reopened"] else None, "s", digits=2,
               note="reopen back-off capped by [gnss] reopen_max_wait_s, default 5 s"
                    + (f"; median {summary(r['reopened'])['p50']:.2f} s" if r["reopened"] else "")),
        Figure("Resources", "steady RSS of the whole agent, no touchscreen, no display, 10 Hz receiver (the "
               "real profiles' memory and its growth are in the memory section)",
               (r["rss_kib"]["agent"] or float("nan")) / 1024, "MiB",
               peer=(r["rss_kib"]["peer"] or float("nan")) / 1024, peer_label=peer_label, note=rss_note(r)),
        Figure("Resources", "disk writes of the whole agent process, link up, 1 Hz reports (write_bytes, per day)",
               r["write_bytes_per_day"] / 1e6 if r.get("write_bytes_per_day") is not None else None, "MB/day",
               target=50, source="#3", digits=2,
               note=f"{r['seconds']:.0f} s measured, extrapolated; runtime dir on tmpfs as on the unit"),
        Figure("Resources", "disk writes of the whole agent process, broker gone (all to backlog), "
               "1 Hz reports (write_bytes, per day)",
               r["down_write_bytes_per_day"] / 1e6 if r.get("down_write_bytes_per_day") is not None else None,
               "MB/day", target=30, source="#27 (was ≤ 50, #3)", digits=2,
               note=f"{r.get('down_seconds', 0):.0f} s measured from {OFFLINE_COMMIT_INTERVAL_S + 5:.0f} s after the broker was "
                    "stopped (the outbox's offline cadence), extrapolated"),
        Figure("Resources", "CPU of the whole agent with a 10 Hz receiver", r["cpu_pct"]["agent"], "% of a core",
               target=1.0, source="#3", peer=r["cpu_pct"]["peer"], peer_label=peer_label, digits=2),
        Figure("Resources", "CPU of the whole agent with a 10 Hz receiver, against the peer's in the same run",
               ratio(r["cpu_pct"]["agent"], r["cpu_pct"]["peer"]), "× the peer", target=0.5, source="#27",
               digits=2, note=f"agent {r['cpu_pct']['agent']:.2f} %, peer {r['cpu_pct']['peer']:.2f} % of a core"),
    ]
    notes = [
        f"The real agent process as a motorcycle (no touchscreen, display none), `[gpio]` on the rig's GPIO "
        f"emulator, GNSS on the emulator's pty at {RATE_HZ} Hz, a private Mosquitto; {WARMUP_S:.0f} s warm-up, "
        f"then {r['seconds']:.0f} s measured. The agent runs from byte code, as installed on the unit "
        "(scripts/install.sh compiles the venv).",
        "The peer reads a second pty carrying the same bytes and runs at the same time as the agent.",
        "Unplug: after the steady window the emulator closes its pty (a USB receiver pulled out), keeps it out "
        "for 2 s, then plugs it back at the same path; times are from the rig's action to the agent's log line "
        "(read through a pipe, stamped on receipt).",
        "Fix age: the emulator stamps (system clock) when each epoch's bytes were written; the subscriber stamps "
        "(same clock) when the report carrying that epoch's fix arrives. That includes the broker hop, so it "
        "bounds the age at publish from above. The agent stamps `ts` from its GNSS-disciplined clock "
        f"(`time_source` gnss; the emulated receiver's UTC was {r['utc_offset_ms']:.2f} ms off the system clock), "
        "so its own `ts - fix.time` cannot see the serial and decoding delay and reads about 0.",
        f"Reports whose fix time matched no emitted epoch: agent {a['unmatched']}, peer {p['unmatched']}.",
    ]
    ladder = r.get("import_ladder") or []
    if len(ladder) == len(IMPORT_LADDER) + 2:
        agent, (validation, with_validation) = ladder[:-1], ladder[-1]
        steps = [f"{agent[0][0]} {agent[0][1]:.1f} MiB"]
        steps += [f"+ {label} {mib - prev:+.1f} = {mib:.1f}" for (_, prev), (label, mib) in zip(agent, agent[1:])]
        notes.append("Where the agent's RSS goes: imports added one after the other to a fresh interpreter, "
                     "libraries first: " + "; ".join(steps) + f" MiB. The libraries alone come to "
                     f"{agent[-2][1]:.1f} MiB; what is left up to the figure is the agent running (threads and "
                     "their stacks and malloc arenas, the TLS session, SQLite, buffers). The agent validates its "
                     "config in process, remote pushes on its remote-request worker (`agent.adapters.remote_worker`): "
                     f"{validation} adds {with_validation - agent[-1][1]:+.1f} MiB to that.")
    if r.get("sample"):
        notes.append(f"A telemetry report as published: `{r['sample'][:600]}`")
    if a["unmatched"] or not a["reports"]:
        notes.append("Agent log tail:\n\n```\n" + r["agent_log_tail"][-1200:] + "\n```")
    return {"title": "Telemetry and resources end to end (issues #3, #27)", "figures": [f.as_dict() for f in figs],
            "notes": notes}


def rss_note(r: dict) -> str:
    split = r.get("agent_rss_split_kib") or {}
    if split.get("anon") is None or split.get("file") is None:
        return "with mutual TLS and an admin key, as on a vehicle"
    return (f"with mutual TLS and an admin key, as on a vehicle; {split['anon'] / 1024:.1f} MiB anonymous "
            f"(Python objects, heaps, stacks) + {split['file'] / 1024:.1f} MiB of mapped files "
            "(libpython, libcrypto, libsqlite... pages the kernel can drop and reread)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=150.0)
    args = ap.parse_args(argv)
    r = run(args.seconds)
    for who in ("agent", "peer"):
        x = r[who]
        for key in ("age_pub", "age_recv", "age_stamp", "age_self", "interval_err"):
            s = summary(x[key])
            print(f"{who:5s} {key:12s} n={s['n']} p50 {s['p50']:.1f} p99 {s['p99']:.1f} max {s['max']:.1f} ms")
        print(f"{who} reports {x['reports']} over {x['span_s']:.1f} s, seq gaps {x['seq_gaps']}, "
              f"unmatched {x['unmatched']}; RSS {r['rss_kib'][who]} KiB, CPU {r['cpu_pct'][who]:.2f} %")
    print(json.dumps(r.get("sample")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
