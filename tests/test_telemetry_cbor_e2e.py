"""CBOR telemetry end to end: the agent process, a real Mosquitto, a cut link, an MQTT 5 consumer.

The consumer reads what the broker delivers as a dispatch server would: live
reports on ``telemetry`` (bytes, no UTF-8 payload format), backlog batches on
``telemetry/backlog`` (content type ``application/cbor``), decodes them with
the function the package ships and with ``umps-agent decode`` on a capture,
and finds every report, each ``seq`` once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.core.telemetry_cbor import decode_telemetry, is_batch, is_cbor
from hil.engine import Rig, RigOptions
from tests.support.broker import mosquitto_path, wait_until

ROOT = Path(__file__).resolve().parents[1]
UNIT = "KEN-M-07"


@dataclass
class Message:
    topic: str
    payload: bytes
    format_indicator: int | None
    content_type: str | None


class V5Consumer:
    """An MQTT 5 subscriber that keeps each message's payload format and content type."""

    def __init__(self, address: tuple[str, int], topic: str):
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="dispatch-v5",
                                   protocol=MQTTProtocolVersion.MQTTv5)
        self._client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(*address)
        self._client.loop_start()
        assert self._subscribed.wait(10), "consumer did not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        props = msg.properties
        with self._lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), getattr(props, "PayloadFormatIndicator", None),
                                         getattr(props, "ContentType", None)))

    def on(self, suffix: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic == f"umps/{UNIT}/{suffix}"]

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def cbor_rig(tmp_path: Path, request):
    mosquitto_path()  # skip, not fail, without Mosquitto
    # The agent reaches the broker through the rig's link proxy, which can cut its link alone.
    rig = Rig(RigOptions(workdir=tmp_path, unit_id=UNIT, unit_kind="motorcycle", start_agent=False, link_proxy=True,
                         agent_overrides={"telemetry": {"encoding": "cbor"}, "mqtt": {"reconnect_max_s": 1.0},
                                          "storage": {"commit_interval_s": 1.0}}))
    request.addfinalizer(rig.down)
    rig.up()
    consumer = V5Consumer(rig.broker_addr, f"umps/{UNIT}/telemetry/#")
    request.addfinalizer(consumer.stop)
    return rig, rig.proxy, consumer


def _offline_with_backlog(status_file: Path, reports: int) -> bool:
    try:
        status = json.loads(status_file.read_text())
    except (OSError, ValueError):  # not written yet, or replaced while read
        return False
    return status["link"]["online"] is False and status["outbox"].get("backlog", 0) >= reports


def _decoded(messages: list[Message]) -> list[dict]:
    return [r for m in messages for r in decode_telemetry(m.payload, m.topic)]


def test_cbor_reports_live_and_batched_backlog_decode_with_nothing_lost(cbor_rig, tmp_path: Path) -> None:
    rig, proxy, consumer = cbor_rig
    rig.start_agent()  # waits for the agent's birth
    wait_until(lambda: len(consumer.on("telemetry")) >= 3, 20, "three live CBOR reports")
    live = consumer.on("telemetry")
    assert all(is_cbor(m.payload) and not is_batch(m.payload) for m in live)
    assert all(m.format_indicator in (None, 0) and m.content_type is None for m in live)
    first = _decoded(live)[0]
    assert first["unit"] == UNIT and first["status"] == "available" and first["fix"]["mode"] in (1, 2, 3)
    assert all(len(m.payload) <= 64 for m in live), [len(m.payload) for m in live]

    # A dead zone: the link stalls, the unit keeps reporting into its outbox.
    proxy.blackhole()
    proxy.drop_all()
    cut_at = len(live)
    # The outage lasts until the unit says (its status file) that it is offline with at least
    # six reports waiting: enough for a batch of five or more when the link comes back.
    wait_until(lambda: _offline_with_backlog(rig.workdir / "run" / "status.json", 6), 30, "six reports held offline")
    proxy.restore()
    wait_until(lambda: any(is_batch(m.payload) for m in consumer.on("telemetry/backlog")), 40,
               "a backlog batch after the link came back")
    wait_until(lambda: len(consumer.on("telemetry")) >= cut_at + 3, 20, "live reports again")
    assert rig.stop_agent() == 0

    batches = [m for m in consumer.on("telemetry/backlog") if is_batch(m.payload)]
    assert all(m.content_type == "application/cbor" and m.format_indicator in (None, 0) for m in batches)
    assert max(len(decode_telemetry(m.payload)) for m in batches) >= 5
    reports = _decoded(consumer.on("telemetry") + consumer.on("telemetry/backlog"))
    seqs = sorted({r["seq"] for r in reports})
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a report is missing"
    assert all(r["unit"] == UNIT for r in reports)

    # The same, from a capture, with the command the package ships.
    capture = tmp_path / "capture.txt"
    capture.write_text("".join(f"{m.topic} {m.payload.hex()}\n" for m in consumer.messages))
    out = subprocess.run([sys.executable, "-m", "agent", "decode", str(capture)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == len(reports)
    assert f"{len(consumer.messages)} payloads, {len(reports)} reports, 0 lines skipped" in out.stderr
