"""Benchmarks of the MQTT link and the outbox (not tests): prints figures for docs/performance.md.

Run: ``python -m bench.bench_link`` (full) or ``python -m bench.bench_link --quick``.

1. Backlog drain: N reports queued in the outbox (86,400 = 24 h at 1 Hz),
   then the link comes up; time until every one is acknowledged, while a
   live report is submitted at 1 Hz and its latency to a subscriber on
   ``telemetry`` is measured. Raw paho in the same run: N QoS 1 publishes
   with the same in-flight window, for comparison.
2. Bytes written to the state dir per hour at 1 Hz, for three cases: link up
   (each report acknowledged at once), link down (every report goes to
   backlog), and drain (a backlog of one hour acknowledged). Time is
   simulated (an injected clock), the outbox code and SQLite are real;
   figures are ``wchar`` (bytes handed to write()) and ``write_bytes``
   (bytes the kernel sent to the block device) from /proc/self/io, plus the
   growth of the database and WAL files. Extrapolated to a day against the
   50 MB/day budget.
3. Steady RSS of a process running only the link (Outbox + Uplink + MqttLink
   at 1 Hz), next to a process running only a raw paho client.

A Mosquitto from PATH is started on a free port for the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
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

UNIT = "bench-1"
PAYLOAD_PAD = 160  # a realistic report is about 250-300 bytes of JSON


def report(seq: int, lane: Lane = Lane.BACKLOG) -> Publish:
    body = {
        "unit": UNIT,
        "seq": seq,
        "ts": "2024-03-01T10:20:30.500Z",
        "fix": {"mode": 3, "time": "2024-03-01T10:20:30.000Z", "lat": 34.26101, "lon": -6.58021, "alt": 12.5,
                "speed": 13.2, "track": 271.3, "hdop": 0.9, "sats": 11, "age": 0.04},
        "status": "en_route",
        "siren": True,
        "call": "C-2024-0042",
        "time_source": "gnss",
    }
    return Publish("telemetry", json.dumps(body).encode(), lane, seq=seq)


# ------------------------------------------------------------- the broker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "max_queued_messages 1000000"]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


# ----------------------------------------------------------- 1. the drain


def bench_drain(broker: Mosquitto, n: int, workdir: Path) -> dict[str, float]:
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
    while not link.connected:
        time.sleep(0.01)
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
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not set(live_at) <= set(arrived):
        time.sleep(0.01)
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


def bench_raw_paho(broker: Mosquitto, n: int, window: int) -> dict[str, float]:
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


def bench_writes(case: str, seconds: int, workdir: Path, commit_interval: float) -> dict[str, float]:
    """Simulate ``seconds`` of 1 Hz reports; returns bytes written."""
    state = workdir / f"writes-{case}"
    clock = SimClock()
    if case == "drain":
        seed = Outbox(state, clock=clock)
        for seq in range(1, seconds + 1):
            seed.put(report(seq))
        seed.close()
    box = Outbox(state, clock=clock, commit_interval_s=commit_interval)
    os.sync()
    io0, size0 = proc_io(), dir_bytes(state)
    seq = box.next_seq()
    for _ in range(seconds):
        clock.now += 1.0
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
    box.close()
    return {
        "wchar": io1["wchar"] - io0["wchar"],
        "write_bytes": io1["write_bytes"] - io0["write_bytes"],
        "file_growth": size1 - size0,
        "commits": box.stats().commits,
    }


# -------------------------------------------------------------- 3. RSS

_RSS_LINK = """
import sys, time, json
from pathlib import Path
from agent.adapters.mqtt import MqttLink, MqttSettings
from agent.adapters.outbox import Outbox
from agent.adapters.uplink import Uplink
from bench.bench_link import report, UNIT
from agent.core.publish import Lane
port, state, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
outbox = Outbox(state)
h = {}
link = MqttLink(MqttSettings(brokers=(("127.0.0.1", port),)), unit_id=UNIT, on_up=lambda b: h["u"].link_up(b),
                on_down=lambda r: h["u"].link_down(r), on_message=lambda *a: None, birth=lambda: b"{}")
h["u"] = up = Uplink(outbox, link)
up.start(); link.start()
seq = outbox.next_seq(); t = time.monotonic(); samples = []
while time.monotonic() - t < secs:
    up.submit(report(seq, Lane.LIVE)); seq += 1
    time.sleep(1.0)
    samples.append(int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]))
up.stop(); link.stop(); outbox.close()
print(json.dumps({"rss_kib": samples[-1], "rss_first_kib": samples[0]}))
"""

_RSS_RAW = """
import sys, time, json
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from bench.bench_link import report
from agent.core.publish import Lane
port, secs = int(sys.argv[1]), float(sys.argv[2])
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="raw-rss")
c.connect("127.0.0.1", port); c.loop_start()
t = time.monotonic(); seq = 1; samples = []
while time.monotonic() - t < secs:
    c.publish("umps/raw/telemetry", report(seq, Lane.LIVE).payload, qos=1); seq += 1
    time.sleep(1.0)
    samples.append(int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]))
c.disconnect(); c.loop_stop()
print(json.dumps({"rss_kib": samples[-1], "rss_first_kib": samples[0]}))
"""


def bench_rss(broker: Mosquitto, workdir: Path, seconds: float) -> dict[str, dict[str, int]]:
    root = Path(__file__).parents[1]
    link = subprocess.run(
        [sys.executable, "-c", _RSS_LINK, str(broker.port), str(workdir / "rss-state"), str(seconds)],
        cwd=root, capture_output=True, text=True, timeout=seconds + 60,
    )
    raw = subprocess.run(
        [sys.executable, "-c", _RSS_RAW, str(broker.port), str(seconds)],
        cwd=root, capture_output=True, text=True, timeout=seconds + 60,
    )
    if link.returncode or raw.returncode:
        raise RuntimeError(link.stderr + raw.stderr)
    return {"link": json.loads(link.stdout.strip().splitlines()[-1]), "raw_paho": json.loads(raw.stdout.strip().splitlines()[-1])}


# ------------------------------------------------------------------ main


def measure(quick: bool) -> dict:
    n = 10_000 if quick else 86_400
    sim_seconds = 600 if quick else 3600
    rss_seconds = 10.0 if quick else 60.0
    workdir = Path(tempfile.mkdtemp(prefix="bench-link-"))
    broker = Mosquitto(workdir)
    try:
        out: dict = {"n": n, "sim_seconds": sim_seconds, "rss_seconds": rss_seconds}
        out["drain"] = bench_drain(broker, n, workdir)
        out["raw"] = bench_raw_paho(broker, n, window=64)
        out["writes"] = {case: bench_writes(case, sim_seconds, workdir, commit_interval=10.0)
                         for case in ("up", "down", "drain")}
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
    day = 86400 / m["sim_seconds"]
    figs = [
        Figure("Link", f"backlog drain rate, {m['n']:,} queued reports, live at 1 Hz meanwhile", d["rate"], "msg/s",
               target=5000, op=">=", source="#3", peer=raw["rate"], peer_label="raw paho, QoS 1, same window of 64",
               digits=0),
        Figure("Link", "live report latency to a subscriber during the drain, p50", d["live_latency_p50_ms"], "ms",
               note=f"{d['live_received']}/{d['live_sent']} live reports received on telemetry"),
        Figure("Link", "live report latency to a subscriber during the drain, max", d["live_latency_max_ms"], "ms"),
        Figure("Link", "state dir writes, link up, 1 Hz (kernel write_bytes, per day)",
               w["up"]["write_bytes"] * day / 1e6, "MB/day", target=50, source="#3",
               note=f"{w['up']['write_bytes'] * day / 24 / 1e6:.2f} MB/hour; wchar "
                    f"{w['up']['wchar'] * day / 1e6:.1f} MB/day; {w['up']['commits']} commits "
                    f"in {m['sim_seconds']} s simulated"),
        Figure("Link", "state dir writes, link down (all to backlog), 1 Hz (write_bytes, per day)",
               w["down"]["write_bytes"] * day / 1e6, "MB/day", target=50, source="#3",
               note=f"{w['down']['write_bytes'] * day / 24 / 1e6:.2f} MB/hour; wchar "
                    f"{w['down']['wchar'] * day / 1e6:.1f} MB/day"),
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
        "Writes: simulated time (injected clock) with the real outbox code and SQLite; write_bytes is what the "
        "kernel sent to the block device (from /proc/self/io), extrapolated to a day. In the link-up case each "
        "report is put, sent and acknowledged within one commit interval, so it mostly never reaches the disk; "
        "the whole agent process's own figure (Resources, below) is the one a unit's SD card sees.",
    ]
    return {"title": "MQTT link and outbox (issue #3)", "figures": [f.as_dict() for f in figs], "notes": notes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller runs (a minute in all)")
    args = ap.parse_args(argv)
    print(f"# MQTT link and outbox benchmarks ({'quick' if args.quick else 'full'}), {os.cpu_count()} CPUs")
    m = measure(args.quick)
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
    for case, label in (("up", "link up"), ("down", "link down")):
        w = m["writes"][case]
        per_day = w["write_bytes"] * 86400 / sim_seconds / 1e6
        wchar_day = w["wchar"] * 86400 / sim_seconds / 1e6
        print(
            f"state dir writes, {label}, {sim_seconds} s simulated at 1 Hz, commit every 10 s: "
            f"write_bytes {w['write_bytes'] / 1e3:.1f} kB (= {per_day:.1f} MB/day), "
            f"wchar {w['wchar'] / 1e3:.1f} kB (= {wchar_day:.1f} MB/day), files grew {w['file_growth'] / 1e3:.1f} kB, "
            f"{w['commits']} commits; budget 50 MB/day"
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
