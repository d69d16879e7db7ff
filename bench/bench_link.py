"""Benchmarks of the MQTT link and the outbox (not tests): prints figures for docs/performance.md.

Run: ``python -m bench.bench_link`` (full) or ``python -m bench.bench_link --quick``.

1. Backlog drain: N reports queued in the outbox (86,400 = 24 h at 1 Hz),
   then the link comes up; time until every one is acknowledged, while a
   live report is submitted at 1 Hz and its latency to a subscriber on
   ``telemetry`` is measured. Raw paho in the same run: N QoS 1 publishes
   with the same in-flight window, for comparison.
2. Bytes written to the state dir at 1 Hz, against the budget of 50 MB a day,
   for three cases: link up (each report acknowledged at once), link down
   (every report goes to backlog: a whole day simulated, so that WAL
   checkpoints and the growth of the database count), and drain (a backlog of
   one hour acknowledged). Time is simulated (an injected clock), the outbox
   code, SQLite and its fsyncs are real. Figures are ``write_bytes`` from
   /proc/self/io (bytes of page cache the process dirtied for the block device:
   every fsynced commit re-dirties at least the 4 KiB page the previous commit
   ended in, so this counts what the SD card is asked to write) and ``wchar``
   (bytes handed to write()), plus the growth of the database and WAL files.

   Measured on the development machine (ext4, kernel 6.18, SQLite 3.40), a
   day offline: 151 MB (write_bytes; wchar 115 MB) with the first outbox
   format; 24.7 MB now. Where it went, per 10 s commit of 10 reports (1 KiB
   pages, WAL frames of 1,048 bytes): ~5 table leaf frames for ~3.5 kB of
   JSON, ~1.6 interior (rowid b-tree) frames, page 1 (the database grows at
   every commit) and the rewritten half-full last leaf: ~8 kB of WAL, ~3 OS
   pages fsynced; then every 1,000 frames the checkpoint copies the pages into
   the database again (~4 kB a commit). One lever at a time, a day offline
   (agent/adapters/outbox.py): payloads deflated with a preset dictionary of
   a report's keys 86 MB, + 512-byte pages 75 MB, + 30 s batches while
   nothing has been acknowledged for 30 s (each fsynced commit costs at least
   one 4 KiB page whatever it holds: 8,640 commits a day are 35 MB before any
   data) 42 MB, + one row per commit, its reports deflated together (~30
   bytes a report instead of ~135 bytes a row) 24.7 MB.

   Simulated time misses two costs: the kernel writes back the dirty pages
   of SQLite's memory-mapped WAL index every ~30 s on its own (the agent
   opens the store exclusive, which keeps the index in memory), and the file
   system journals its metadata at each commit. ``--realtime-minutes N`` runs
   the link-down case on the real clock to count them (10 min measured here:
   43 MB/day; 57 with a row per report).
3. Steady RSS of a process running only the link (Outbox + Uplink + MqttLink
   at 1 Hz), next to a process running only a raw paho client.

A Mosquitto from PATH is started on a free port for the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.adapters.mqtt import MqttLink, MqttSettings
from agent.adapters.outbox import Outbox
from agent.adapters.uplink import Uplink
from agent.core.publish import Lane, Publish
from bench.peers import command as peer_command
from hil.broker import Broker
from hil.wait import poll_until

UNIT = "bench-1"


def report(seq: int, lane: Lane = Lane.BACKLOG) -> Publish:
    """A report as the unit builds it (agent/core/unit.py: compact JSON, ~350 bytes).

    The values move from one report to the next (time, position as NMEA
    minutes give it, speed, track, fix age), so that storing it compressed is
    not flattered by identical payloads.
    """
    t = 1_795_000_000 + seq
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    wobble = (seq * 7919) % 1000  # deterministic, irregular
    lat_min = 15.0 + seq * 0.0011 + wobble * 1e-7
    lon_min = 34.0 + seq * 0.0007
    body = {
        "unit": UNIT,
        "seq": seq,
        "ts": f"{stamp}.{wobble % 1000:03d}Z",
        "time_source": "system",
        "fix": {"mode": 3, "time": f"{stamp}.000Z", "lat": 34 + round(lat_min, 4) / 60,
                "lon": -(6 + round(lon_min, 4) / 60), "alt": round(12.5 + wobble / 400, 1),
                "speed": round(wobble / 40, 1), "track": round(wobble * 0.36, 1), "hdop": 0.9, "sats": 11,
                "age": round(wobble / 12_000, 3)},
        "status": "en_route",
        "siren": True,
        "emergency": False,
        "call": {"id": "C-2024-0042", "state": "en_route"},
    }
    return Publish("telemetry", json.dumps(body, separators=(",", ":")).encode(), lane, seq=seq)


# ------------------------------------------------------------- the broker


# ----------------------------------------------------------- 1. the drain


def bench_drain(broker: Broker, n: int, workdir: Path) -> dict[str, float]:
    state = workdir / "drain-state"
    box = Outbox(state)
    for seq in range(1, n + 1):
        box.put(report(seq))
    box.close()

    live_at: dict[int, float] = {}
    arrived: dict[int, float] = {}
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-live-map", protocol=MQTTProtocolVersion.MQTTv311)
    subscribed = threading.Event()
    sub.on_connect = lambda c, *_: c.subscribe(f"umps/{UNIT}/telemetry", 1)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda c, u, m: arrived.setdefault(json.loads(m.payload)["seq"], time.monotonic())
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    subscribed.wait(5)

    outbox = Outbox(state)
    holder: dict[str, Uplink] = {}
    link = MqttLink(
        MqttSettings(brokers=(("127.0.0.1", broker.port),)),
        unit_id=UNIT,
        on_up=lambda b: holder["u"].link_up(b),
        on_down=lambda r: holder["u"].link_down(r),
        on_message=lambda *a: None,
        birth=lambda: b'{"online": true}',
    )
    uplink = Uplink(outbox, link)
    holder["u"] = uplink
    uplink.start()
    start = time.monotonic()
    link.start()
    seq = outbox.next_seq()
    if not poll_until(lambda: link.connected, 30.0, 0.01):
        raise RuntimeError("the link did not come up within 30 s")
    next_live = time.monotonic()
    give_up = time.monotonic() + 600
    while outbox.pending()[Lane.BACKLOG] > 0 or uplink.stats().in_flight:
        if time.monotonic() > give_up:
            raise RuntimeError(f"drain stalled: {uplink.stats()}")
        if time.monotonic() >= next_live:
            live_at[seq] = time.monotonic()
            uplink.submit(report(seq, Lane.LIVE))
            seq += 1
            next_live += 1.0
        time.sleep(0.005)
    elapsed = time.monotonic() - start
    poll_until(lambda: set(live_at) <= set(arrived), 3.0, 0.01)  # the last live reports still on their way
    uplink.stop()
    link.stop()
    outbox.close()
    sub.disconnect()
    sub.loop_stop()
    latencies = [arrived[s] - t for s, t in live_at.items() if s in arrived]
    return {
        "reports": n,
        "seconds": elapsed,
        "rate": n / elapsed,
        "live_sent": len(live_at),
        "live_received": len(latencies),
        "live_latency_max_ms": 1000 * max(latencies) if latencies else float("nan"),
        "live_latency_p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
    }


def bench_raw_paho(broker: Broker, n: int, window: int) -> dict[str, float]:
    payload = report(1).payload
    done = threading.Event()
    acked = [0]
    # The same bounded window as the uplink; unbounded, paho's 16-bit message
    # ids wrap past 65,535 queued messages and acks get lost.
    slots = threading.Semaphore(window)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(window)

    def on_publish(*_a: object) -> None:
        slots.release()
        acked[0] += 1
        if acked[0] == n:
            done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    start = time.monotonic()
    for _ in range(n):
        slots.acquire()
        client.publish(f"umps/{UNIT}/telemetry/backlog", payload, qos=1)
    if not done.wait(120):
        raise RuntimeError(f"raw paho: only {acked[0]} of {n} acknowledged")
    elapsed = time.monotonic() - start
    client.disconnect()
    client.loop_stop()
    return {"reports": n, "seconds": elapsed, "rate": n / elapsed}


# -------------------------------------------------------- 2. disk writes


class SimClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def proc_io() -> dict[str, int]:
    with open("/proc/self/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def bench_writes(
    case: str, seconds: int, workdir: Path, commit_interval: float, *, realtime: bool = False
) -> dict[str, float]:
    """Simulate ``seconds`` of 1 Hz reports (or live them, ``realtime``); returns bytes written."""
    state = workdir / f"writes-{case}{'-realtime' if realtime else ''}"
    clock = time.monotonic if realtime else SimClock()
    if case == "drain":
        seed = Outbox(state, clock=clock)
        for seq in range(1, seconds + 1):
            seed.put(report(seq))
        seed.close()
    # As the agent opens it: exclusive, so the WAL index stays in memory.
    box = Outbox(state, clock=clock, commit_interval_s=commit_interval, exclusive=True)
    os.sync()
    io0, size0 = proc_io(), dir_bytes(state)
    seq = box.next_seq()
    start = time.monotonic()
    for i in range(seconds):
        if isinstance(clock, SimClock):
            clock.now += 1.0
        else:
            time.sleep(max(0.0, start + i + 1 - time.monotonic()))
        box.put(report(seq, Lane.LIVE if case != "down" else Lane.BACKLOG))
        seq += 1
        if case in ("up", "drain"):
            for rec in box.take(Lane.LIVE, 10):
                box.ack(rec.id)
        if case == "drain":
            # Drain as fast as the link would: the whole hour's backlog in the first seconds.
            for rec in box.take(Lane.BACKLOG, 5000):
                box.ack(rec.id)
        box.maybe_commit()
    box.commit()
    os.sync()
    io1, size1 = proc_io(), dir_bytes(state)
    stats = box.stats()
    box.close()
    return {
        "wchar": io1["wchar"] - io0["wchar"],
        "write_bytes": io1["write_bytes"] - io0["write_bytes"],
        "file_growth": size1 - size0,
        "commits": stats.commits,
        "pending": stats.pending["backlog"] + stats.pending["live"],
    }


# -------------------------------------------------------------- 3. RSS

def bench_rss(broker: Broker, workdir: Path, seconds: float) -> dict[str, dict[str, int]]:
    root = Path(__file__).parents[1]
    link = subprocess.run(
        peer_command("link_rss", str(broker.port), str(workdir / "rss-state"), str(seconds)),
        cwd=root, capture_output=True, text=True, timeout=seconds + 60,
    )
    raw = subprocess.run(
        peer_command("paho_rss", str(broker.port), str(seconds)),
        cwd=root, capture_output=True, text=True, timeout=seconds + 60,
    )
    if link.returncode or raw.returncode:
        raise RuntimeError(link.stderr + raw.stderr)
    return {"link": json.loads(link.stdout.strip().splitlines()[-1]), "raw_paho": json.loads(raw.stdout.strip().splitlines()[-1])}


# ------------------------------------------------------------------ main


def measure(quick: bool, realtime_minutes: int = 0) -> dict:
    n = 10_000 if quick else 86_400
    sim_seconds = 600 if quick else 3600
    offline_seconds = 3600 if quick else 86_400
    rss_seconds = 10.0 if quick else 60.0
    workdir = Path(tempfile.mkdtemp(prefix="bench-link-"))
    broker = Broker(workdir / "broker", extra_config="max_queued_messages 1000000").start()
    try:
        out: dict = {"n": n, "sim_seconds": sim_seconds, "offline_seconds": offline_seconds,
                     "rss_seconds": rss_seconds}
        out["drain"] = bench_drain(broker, n, workdir)
        out["raw"] = bench_raw_paho(broker, n, window=64)
        out["writes"] = {
            "up": bench_writes("up", sim_seconds, workdir, commit_interval=10.0),
            "down": bench_writes("down", offline_seconds, workdir, commit_interval=10.0),
            "drain": bench_writes("drain", sim_seconds, workdir, commit_interval=10.0),
        }
        if realtime_minutes:
            out["realtime_seconds"] = 60 * realtime_minutes
            out["writes"]["down_realtime"] = bench_writes("down", 60 * realtime_minutes, workdir,
                                                          commit_interval=10.0, realtime=True)
        out["rss"] = bench_rss(broker, workdir, rss_seconds)
        return out
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def collect(quick: bool = False) -> dict:
    """Figures for docs/performance.md (``python -m bench``)."""
    from bench.common import Figure

    m = measure(quick)
    d, raw, w, rss = m["drain"], m["raw"], m["writes"], m["rss"]
    up_day = 86400 / m["sim_seconds"]
    down_day = 86400 / m["offline_seconds"]
    figs = [
        Figure("Link", f"backlog drain rate, {m['n']:,} queued reports, live at 1 Hz meanwhile", d["rate"], "msg/s",
               target=5000, op=">=", source="#3", peer=raw["rate"], peer_label="raw paho, QoS 1, same window of 64",
               digits=0),
        Figure("Link", "live report latency to a subscriber during the drain, p50", d["live_latency_p50_ms"], "ms",
               note=f"{d['live_received']}/{d['live_sent']} live reports received on telemetry"),
        Figure("Link", "live report latency to a subscriber during the drain, max", d["live_latency_max_ms"], "ms"),
        Figure("Link", "state dir writes, link up, 1 Hz (kernel write_bytes, per day)",
               w["up"]["write_bytes"] * up_day / 1e6, "MB/day", target=50, source="#3",
               note=f"{w['up']['write_bytes'] * up_day / 24 / 1e6:.2f} MB/hour; wchar "
                    f"{w['up']['wchar'] * up_day / 1e6:.1f} MB/day; {w['up']['commits']} commits "
                    f"in {m['sim_seconds']} s simulated"),
        Figure("Link", f"state dir writes, link down (all to backlog), 1 Hz, {m['offline_seconds']:,} s simulated "
               "(write_bytes, per day)",
               w["down"]["write_bytes"] * down_day / 1e6, "MB/day", target=50, source="#3",
               note=f"{w['down']['write_bytes'] * down_day / 24 / 1e6:.2f} MB/hour; wchar "
                    f"{w['down']['wchar'] * down_day / 1e6:.1f} MB/day; files grew "
                    f"{w['down']['file_growth'] / 1e6:.1f} MB for {w['down']['pending']:,} reports kept"),
        Figure("Link", f"state dir writes to drain a backlog of {m['sim_seconds']} reports, once (write_bytes)",
               w["drain"]["write_bytes"] / 1e6, "MB", digits=2),
        Figure("Link", f"steady RSS, link + uplink + outbox only, after {m['rss_seconds']:.0f} s at 1 Hz",
               rss["link"]["rss_kib"] / 1024, "MiB", peer=rss["raw_paho"]["rss_kib"] / 1024,
               peer_label="raw paho client publishing the same reports",
               note="component figure; the whole agent's RSS is in the end-to-end section"),
    ]
    notes = [
        "Drain: the outbox (SQLite, WAL) holds the backlog; the real Uplink and MqttLink send it to a private "
        "Mosquitto while a live report goes out every second; a subscriber on telemetry times the live reports.",
        "Writes: simulated time (injected clock) with the real outbox code, SQLite and its fsyncs; write_bytes is "
        "what the process dirtied for the block device (from /proc/self/io), extrapolated to a day. Simulated "
        "time misses what the kernel writes back on its own (the WAL index every ~30 s; "
        "`python -m bench.bench_link --realtime-minutes N` counts it), and in the link-up case each report is "
        "put, sent and acknowledged within one commit interval, so it mostly never reaches the disk: the whole "
        "agent process's own figures (Resources, below) are the ones a unit's SD card sees.",
    ]
    return {"title": "MQTT link and outbox (issue #3)", "figures": [f.as_dict() for f in figs], "notes": notes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller runs (a minute in all)")
    ap.add_argument(
        "--realtime-minutes", type=int, default=0, metavar="N",
        help="also run the link-down case for N minutes in real time (counts what the kernel writes back on its own)",
    )
    args = ap.parse_args(argv)
    print(f"# MQTT link and outbox benchmarks ({'quick' if args.quick else 'full'}), {os.cpu_count()} CPUs")
    m = measure(args.quick, args.realtime_minutes)
    drain, raw, rss = m["drain"], m["raw"], m["rss"]
    sim_seconds = m["sim_seconds"]
    print(
        f"backlog drain: {drain['reports']} reports in {drain['seconds']:.1f} s = {drain['rate']:.0f} msg/s "
        f"(goal >= 5000); raw paho, same window of 64: {raw['rate']:.0f} msg/s"
    )
    print(
        f"live at 1 Hz during the drain: {drain['live_received']}/{drain['live_sent']} received on telemetry, "
        f"latency p50 {drain['live_latency_p50_ms']:.1f} ms, max {drain['live_latency_max_ms']:.1f} ms"
    )
    for case, label, seconds in (("up", "link up", sim_seconds), ("down", "link down", m["offline_seconds"])):
        w = m["writes"][case]
        per_day = w["write_bytes"] * 86400 / seconds / 1e6
        wchar_day = w["wchar"] * 86400 / seconds / 1e6
        print(
            f"state dir writes, {label}, {seconds} s simulated at 1 Hz, commit_interval_s 10: "
            f"write_bytes {w['write_bytes'] / 1e3:.1f} kB (= {per_day:.1f} MB/day), "
            f"wchar {w['wchar'] / 1e3:.1f} kB (= {wchar_day:.1f} MB/day), files grew {w['file_growth'] / 1e3:.1f} kB "
            f"for {w['pending']} reports kept, {w['commits']} commits; budget 50 MB/day"
        )
    if "down_realtime" in m["writes"]:
        seconds = m["realtime_seconds"]
        w = m["writes"]["down_realtime"]
        print(
            f"state dir writes, link down, {seconds} s in real time at 1 Hz: "
            f"write_bytes {w['write_bytes'] * 86400 / seconds / 1e6:.1f} MB/day, "
            f"wchar {w['wchar'] * 86400 / seconds / 1e6:.1f} MB/day, {w['commits']} commits; budget 50 MB/day"
        )
    w = m["writes"]["drain"]
    print(
        f"state dir writes, once, to drain a backlog of {sim_seconds} reports (while live goes on at 1 Hz): "
        f"write_bytes {w['write_bytes'] / 1e3:.1f} kB, wchar {w['wchar'] / 1e3:.1f} kB"
    )
    print(
        f"steady RSS after {m['rss_seconds']:.0f} s at 1 Hz: link+uplink+outbox {rss['link']['rss_kib'] / 1024:.1f} MiB "
        f"(first sample {rss['link']['rss_first_kib'] / 1024:.1f}); raw paho client {rss['raw_paho']['rss_kib'] / 1024:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
