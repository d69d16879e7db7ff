"""MQTT 5 publish properties of the link: topic aliases, payload format and content type, on the wire."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.adapters.mqtt import AckResult, MqttLink, MqttSettings, birth_payload, publish_properties
from agent.core.telemetry_cbor import encode_batch, encode_report
from hil.broker import Broker, BrokerUnavailable
from hil.regions import Cable
from hil.wait import poll_until

UNIT = "KEN-M-07"
REPORT = {"unit": UNIT, "seq": 1, "ts": "2026-12-03T10:00:00.000Z", "time_source": "system",
          "fix": {"mode": 3, "time": "2026-12-03T10:00:00.000Z", "lat": 34.26, "lon": -6.58, "alt": 12.5,
                  "speed": 8.0, "track": 90.0, "hdop": 0.9, "sats": 9, "age": 0.01, "receiver": "ok"},
          "status": "available", "siren": False, "emergency": False, "call": None, "ignition": None}


def test_an_alias_per_topic_once_set_and_none_when_the_broker_allows_none() -> None:
    session = SimpleNamespace(aliases={}, alias_max=2)
    topic, props, alias = publish_properties(session, "umps/U/telemetry", b"{}")
    assert (topic, props.TopicAlias, alias, props.PayloadFormatIndicator) == ("umps/U/telemetry", 1, 1, 1)
    session.aliases["umps/U/telemetry"] = alias  # what the link records once the publish is queued
    topic, props, alias = publish_properties(session, "umps/U/telemetry", encode_report(REPORT))
    assert (topic, props.TopicAlias, alias) == ("", 1, None)
    assert not hasattr(props, "PayloadFormatIndicator") and not hasattr(props, "ContentType")  # CBOR report
    topic, props, alias = publish_properties(session, "umps/U/telemetry/backlog", encode_batch([encode_report(REPORT)] * 2))
    assert (topic, alias, props.ContentType) == ("umps/U/telemetry/backlog", 2, "application/cbor")
    session.aliases["umps/U/telemetry/backlog"] = alias
    topic, props, alias = publish_properties(session, "umps/U/status", b"{}")
    assert (topic, alias) == ("umps/U/status", None) and not hasattr(props, "TopicAlias")  # the broker's maximum


def _wire_bytes(tmp_path: Path, extra_config: str, payloads: list[bytes]) -> list[int]:
    """Bytes the unit sent for each publish on ``telemetry`` (each acknowledged before the next)."""
    try:
        broker = Broker(tmp_path / "broker", extra_config=extra_config).start()
    except BrokerUnavailable as exc:
        pytest.skip(str(exc))
    cable = Cable(broker.address).connect()
    up = threading.Event()
    link = MqttLink(MqttSettings(brokers=(("127.0.0.1", cable.port),)), unit_id=UNIT, on_up=lambda b: up.set(),
                    on_down=lambda r: None, on_message=lambda *a: None,
                    birth=lambda: birth_payload(agent_version="t", config_version=0, config_hash="0" * 16,
                                                ts="2024-03-01T10:20:29.870Z", seq_start=0, seq_gap=None))
    sizes = []
    try:
        link.start()
        assert up.wait(10)
        _settle(cable)  # the birth message and its PUBACK
        for payload in payloads:
            acked = threading.Event()
            before = cable.bytes["up"]
            assert link.publish("telemetry", payload, 1, False, lambda r: acked.set() if r is AckResult.ACKED else None)
            assert acked.wait(10)
            poll_until(lambda: cable.bytes["up"] != before, 5, 0.005)  # the cable counts what it forwarded
            sizes.append(cable.bytes["up"] - before)
    finally:
        link.stop()
        cable.cut()
        broker.stop()
    return sizes


def _settle(cable: Cable, quiet_s: float = 0.3, timeout: float = 5.0) -> None:
    """Wait until nothing has crossed the cable for ``quiet_s`` (polling with a deadline)."""
    deadline = time.monotonic() + timeout
    last, since = dict(cable.bytes), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        if cable.bytes != last:
            last, since = dict(cable.bytes), time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def test_the_topic_goes_once_per_connection_then_its_alias(tmp_path: Path) -> None:
    payload = encode_report(REPORT)
    first, second, third = _wire_bytes(tmp_path, "", [payload] * 3)
    assert second == third
    assert first - second == len(f"umps/{UNIT}/telemetry"), (first, second)
    # PUBLISH header 2 + topic length 2 + packet id 2 + properties 1 + alias 3: 10 bytes around the report.
    assert second == len(payload) + 10


def test_without_broker_aliases_every_publish_names_its_topic(tmp_path: Path) -> None:
    sizes = _wire_bytes(tmp_path, "max_topic_alias 0", [encode_report(REPORT)] * 3)
    assert len(set(sizes)) == 1 and sizes[0] > len(f"umps/{UNIT}/telemetry")
