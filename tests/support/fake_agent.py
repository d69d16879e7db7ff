"""A small agent for link tests: Outbox + Uplink + MqttLink and synthetic telemetry.

Importable (``build_agent``) for in-process tests, and runnable as a process
(``python -m tests.support.fake_agent ...``) for tests that kill it with
SIGKILL. As a process it prints one line per event on stdout, flushed:

* ``ready next_seq=N``            the outbox is open; the first report gets seq N
* ``durable K``                   every report with seq <= K is committed to disk
* ``made K``                      report K was handed to the uplink
* ``stats {...}``                 final counters (on a clean exit)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.adapters.mqtt import MqttLink, MqttSettings, birth_payload
from agent.adapters.outbox import Outbox
from agent.adapters.uplink import Uplink
from agent.core.publish import Lane, Publish


def telemetry(unit: str, seq: int) -> Publish:
    body = {
        "unit": unit,
        "seq": seq,
        "ts": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "fix": {"mode": 3, "lat": 34.2610 + seq * 1e-6, "lon": -6.5802, "age": 0.05},
        "status": "available",
        "siren": False,
        "call": None,
    }
    return Publish("telemetry", json.dumps(body).encode(), Lane.LIVE, seq=seq)


def status(unit_status: str) -> Publish:
    body = {"status": unit_status, "siren": False, "call": None, "emergency": False, "ts": "2024-01-01T00:00:00Z"}
    return Publish("status", json.dumps(body).encode(), Lane.STATUS, retain=True)


@dataclass
class FakeAgent:
    outbox: Outbox
    link: MqttLink
    uplink: Uplink
    unit: str

    def start(self) -> FakeAgent:
        self.uplink.start()
        self.link.start()
        return self

    def stop(self) -> None:
        self.uplink.stop()
        self.link.stop()
        self.outbox.close()


def build_agent(
    state_dir: Path,
    brokers: list[tuple[str, int]],
    *,
    unit: str = "moto-17",
    commit_interval_s: float = 10.0,
    on_message: Callable[[str, bytes, bool], None] | None = None,
    subscriptions: tuple[str, ...] = (),
    on_up: Callable[[str], None] | None = None,
    on_down: Callable[[str], None] | None = None,
    backlog_rate_limit: float | None = None,
    max_backlog_reports: int = 172_800,
    **settings: object,
) -> FakeAgent:
    defaults: dict[str, object] = {"reconnect_min": 0.2, "reconnect_max": 1.0, "ack_timeout": 3.0, "keepalive": 10}
    defaults.update(settings)
    mqtt_settings = MqttSettings(brokers=tuple(brokers), **defaults)  # type: ignore[arg-type]
    outbox = Outbox(state_dir, commit_interval_s=commit_interval_s, max_backlog_reports=max_backlog_reports)
    holder: dict[str, Uplink] = {}

    def up(broker: str) -> None:
        holder["uplink"].link_up(broker)
        if on_up:
            on_up(broker)

    def down(reason: str) -> None:
        holder["uplink"].link_down(reason)
        if on_down:
            on_down(reason)

    link = MqttLink(
        mqtt_settings,
        unit_id=unit,
        on_up=up,
        on_down=down,
        on_message=on_message or (lambda t, p, r: None),
        birth=lambda: birth_payload(agent_version="test", config_version=0, config_hash="0" * 16, ts="2024-01-01T00:00:00.000Z",
                                    seq_start=0, seq_gap=None),
        subscriptions=list(subscriptions),
    )
    uplink = Uplink(outbox, link, backlog_rate_limit=backlog_rate_limit)
    holder["uplink"] = uplink
    return FakeAgent(outbox, link, uplink, unit)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--broker", action="append", required=True, help="host:port (repeat for failover)")
    ap.add_argument("--unit", default="moto-17")
    ap.add_argument("--rate", type=float, default=10.0, help="reports per second")
    ap.add_argument("--count", type=int, default=0, help="reports to make (0: none, just drain)")
    ap.add_argument("--commit-interval", type=float, default=10.0)
    ap.add_argument("--durable-every", type=int, default=10, help="force a commit every N reports")
    ap.add_argument("--run-for", type=float, default=0.0, help="seconds to stay up after the reports")
    args = ap.parse_args(argv)
    brokers = [(h, int(p)) for h, p in (b.rsplit(":", 1) for b in args.broker)]
    agent = build_agent(args.state_dir, brokers, unit=args.unit, commit_interval_s=args.commit_interval)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    seq = agent.outbox.next_seq()
    print(f"ready next_seq={seq}", flush=True)
    agent.start()
    period = 1.0 / args.rate
    next_at = time.monotonic()
    for _ in range(args.count):
        if stopping.is_set():
            break
        agent.uplink.submit(telemetry(args.unit, seq))
        print(f"made {seq}", flush=True)
        if (seq - agent.outbox.next_seq() + 1) % args.durable_every == 0 and agent.outbox.commit():
            print(f"durable {seq}", flush=True)
        seq += 1
        next_at += period
        stopping.wait(max(0.0, next_at - time.monotonic()))
    stopping.wait(args.run_for)
    agent.stop()
    stats = agent.uplink.stats()
    print("stats " + json.dumps({"sent_live": stats.sent_live, "sent_backlog": stats.sent_backlog,
                                 "pending": stats.pending, "dropped": stats.outbox.dropped}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
