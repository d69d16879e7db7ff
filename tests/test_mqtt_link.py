"""The MQTT link against a real Mosquitto: presence, failover, fallback, TLS, auth, inbound, black holes."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.adapters.mqtt import AckResult, MqttLink, MqttSettings, birth_payload
from tests.support.broker import Broker, Recorder, TlsListener, free_port, wait_until, write_password_file
from hil.pki import TlsFiles
from tests.support.netproxy import NetProxy

UNIT = "moto-17"
BASE = f"umps/{UNIT}/"


class Events:
    """What the link told the outside, with waits instead of sleeps."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.ups: list[str] = []
        self.downs: list[str] = []
        self.inbound: list[tuple[str, bytes, bool]] = []

    def up(self, broker: str) -> None:
        with self.cond:
            self.ups.append(broker)
            self.cond.notify_all()

    def down(self, reason: str) -> None:
        with self.cond:
            self.downs.append(reason)
            self.cond.notify_all()

    def message(self, topic: str, payload: bytes, retained: bool) -> None:
        with self.cond:
            self.inbound.append((topic, payload, retained))
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                pytest.fail(f"timed out waiting for {what}: ups={self.ups} downs={self.downs}")


@pytest.fixture
def make_link() -> Iterator[Callable[..., tuple[MqttLink, Events]]]:
    links: list[MqttLink] = []

    def make(
        brokers: list[tuple[str, int]],
        *,
        subscriptions: tuple[str, ...] = (),
        on_message: Callable[[str, bytes, bool], None] | None = None,
        events: Events | None = None,
        waiting: Callable[[], bool] = lambda: False,
        **settings: object,
    ) -> tuple[MqttLink, Events]:
        ev = events or Events()
        defaults: dict[str, object] = {"reconnect_min": 0.1, "reconnect_max": 0.5, "connect_timeout": 3.0}
        defaults.update(settings)
        link = MqttLink(
            MqttSettings(brokers=tuple(brokers), **defaults),  # type: ignore[arg-type]
            unit_id=UNIT,
            on_up=ev.up,
            on_down=ev.down,
            on_message=on_message or ev.message,
            birth=lambda: birth_payload(agent_version="1.2.3", config_version=4, config_hash="00000000000000ab",
                                        ts="2024-03-01T10:20:29.870Z", seq_start=12, seq_gap=None),
            subscriptions=list(subscriptions),
            waiting=waiting,
        )
        links.append(link)
        link.start()
        return link, ev

    yield make
    for link in links:
        link.stop()


def publish_and_wait(link: MqttLink, topic: str, payload: bytes, timeout: float = 5.0) -> AckResult:
    done = threading.Event()
    result: list[AckResult] = []

    def on_ack(r: AckResult) -> None:
        result.append(r)
        done.set()

    assert link.publish(topic, payload, qos=1, on_ack=on_ack)
    assert done.wait(timeout), "no ack"
    return result[0]


def online(rec: Recorder) -> list[dict]:
    return [json.loads(m.payload) for m in rec.on(BASE + "online")]


def test_birth_ack_and_clean_offline(broker: Broker, recorder: Recorder, make_link) -> None:
    link, ev = make_link([broker.address])
    ev.wait(lambda: ev.ups, what="link up")
    assert link.connected and link.stats().protocol == "5"
    # Replies go out at once, not after the broker's delayed ACK.
    sock = link._session.client.socket()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    recorder.wait_for(lambda ms: online(recorder), 5, "birth")
    assert online(recorder)[0] == {
        "online": True,
        "agent_version": "1.2.3",
        "config_version": 4,
        "config_hash": "00000000000000ab",
        "ts": "2024-03-01T10:20:29.870Z",
        "seq_start": 12,
        "seq_gap": None,
    }
    assert publish_and_wait(link, "telemetry", b'{"seq": 1}') is AckResult.ACKED
    link.stop()
    recorder.wait_for(lambda ms: online(recorder)[-1] == {"online": False}, 5, "offline at stop")
    assert ev.downs and not link.connected


def test_last_will_on_a_cut_link_then_reconnect_with_birth(
    broker: Broker, recorder: Recorder, make_link, netproxy_factory
) -> None:
    proxy = netproxy_factory(broker.address)
    link, ev = make_link([proxy.address])
    ev.wait(lambda: ev.ups, what="link up")
    proxy.drop_all()  # no DISCONNECT reaches the broker: it publishes the will
    recorder.wait_for(lambda ms: {"online": False} in online(recorder), 10, "last will")
    ev.wait(lambda: len(ev.ups) >= 2, what="reconnect")
    recorder.wait_for(lambda ms: online(recorder)[-1].get("online") is True, 10, "birth again")
    # Retained for a map that subscribes later.
    with _late(broker) as late:
        late.wait_for(lambda ms: ms and ms[-1].retain and json.loads(ms[-1].payload)["online"], 5, "retained")


class _late:
    def __init__(self, broker: Broker) -> None:
        self.rec = Recorder(broker, topics=[BASE + "online"])

    def __enter__(self) -> Recorder:
        return self.rec.start()

    def __exit__(self, *exc: object) -> None:
        self.rec.stop()


def test_failover_to_the_next_broker(broker: Broker, make_link) -> None:
    dead = ("127.0.0.1", free_port())
    link, ev = make_link([dead, broker.address])
    ev.wait(lambda: ev.ups, what="link up on the second broker")
    assert ev.ups[0] == f"{broker.host}:{broker.port}"


def test_falls_back_to_mqtt_311_when_v5_is_refused(broker: Broker, make_link, netproxy_factory) -> None:
    proxy = netproxy_factory(broker.address, refuse_mqtt5=True)
    link, ev = make_link([proxy.address])
    ev.wait(lambda: ev.ups, what="link up over 3.1.1")
    assert proxy.refused_v5 >= 1
    assert link.stats().protocol == "3.1.1"
    assert publish_and_wait(link, "telemetry", b"{}") is AckResult.ACKED


def test_username_password(broker_factory, make_link, tmp_path: Path) -> None:
    pwfile = write_password_file(tmp_path / "passwd", {UNIT: "s3cret"})
    broker = broker_factory(allow_anonymous=False, password_file=pwfile)
    bad, bad_ev = make_link([broker.address], username=UNIT, password="wrong")
    good, good_ev = make_link([broker.address], username=UNIT, password="s3cret", client_id="umps-good")
    good_ev.wait(lambda: good_ev.ups, what="good credentials connect")
    wait_until(lambda: "refused" in (bad.stats().last_down_reason or "") or bad.stats().connects == 0, 3)
    assert bad.stats().connects == 0 and not bad_ev.ups


def test_tls_with_ca_and_client_certificate(broker_factory, make_link, tls_files: TlsFiles) -> None:
    broker = broker_factory(tls=TlsListener(tls_files, require_certificate=True))
    cert, key = tls_files.client(UNIT)
    link, ev = make_link(
        [broker.address], tls_ca=str(tls_files.ca_cert), tls_cert=str(cert), tls_key=str(key)
    )
    ev.wait(lambda: ev.ups, what="TLS link up")
    assert publish_and_wait(link, "telemetry", b'{"seq": 1}') is AckResult.ACKED
    # Without a client certificate the broker refuses the handshake.
    no_cert, no_cert_ev = make_link([broker.address], tls_ca=str(tls_files.ca_cert), client_id="umps-nocert")
    wait_until(lambda: no_cert.stats().state in ("connecting", "down"), 3)
    assert not no_cert_ev.ups


def test_inbound_messages_bad_payloads_and_callback_errors_do_not_stop_the_link(
    broker: Broker, recorder: Recorder, make_link
) -> None:
    ev = Events()

    def on_message(topic: str, payload: bytes, retained: bool) -> None:
        ev.message(topic, payload, retained)
        if payload == b"boom":
            raise RuntimeError("a bug in a handler")

    link, _ = make_link([broker.address], subscriptions=("call", "config/set"), on_message=on_message, events=ev)
    ev.wait(lambda: ev.ups, what="link up")
    for payload in (b"\xff\xfe not utf-8", b"boom", b"{not json", b"x" * 300_000, b'{"id": "c1"}'):
        recorder.publish(BASE + "call", payload)
    recorder.publish(BASE + "config/set", b'{"id": "r1"}')
    ev.wait(lambda: len(ev.inbound) == 6, what="all inbound messages")
    assert ev.inbound[0] == ("call", b"\xff\xfe not utf-8", False)
    assert ev.inbound[-1] == ("config/set", b'{"id": "r1"}', False)
    stats = link.stats()
    assert stats.callback_errors == 1 and stats.received == 6
    assert link.connected and publish_and_wait(link, "status", b"{}") is AckResult.ACKED


def test_calls_sent_while_offline_arrive_on_reconnect(broker: Broker, recorder: Recorder, make_link) -> None:
    link, ev = make_link([broker.address], subscriptions=("call",))
    ev.wait(lambda: ev.ups, what="link up")
    link.stop()
    recorder.publish(BASE + "call", b'{"id": "while-offline"}')
    again, ev2 = make_link([broker.address], subscriptions=("call",))
    ev2.wait(lambda: ev2.inbound, what="queued call")
    assert ev2.inbound[0][1] == b'{"id": "while-offline"}'


def test_calls_sent_while_offline_arrive_on_mqtt_311_too(broker: Broker, recorder: Recorder, make_link) -> None:
    link, ev = make_link([broker.address], subscriptions=("call",), protocol="3.1.1")
    ev.wait(lambda: ev.ups, what="link up")
    link.stop()
    recorder.publish(BASE + "call", b'{"id": "v311"}')
    again, ev2 = make_link([broker.address], subscriptions=("call",), protocol="3.1.1")
    ev2.wait(lambda: ev2.inbound, what="queued call")
    assert ev2.inbound[0][1] == b'{"id": "v311"}'


def test_black_holed_link_is_detected_and_recovered(broker: Broker, make_link, netproxy_factory) -> None:
    proxy: NetProxy = netproxy_factory(broker.address)
    link, ev = make_link([proxy.address], ack_timeout=1.0)
    ev.wait(lambda: ev.ups, what="link up")
    results: list[AckResult] = []
    got = threading.Event()

    def on_ack(r: AckResult) -> None:
        results.append(r)
        got.set()

    proxy.blackhole()
    assert link.publish("telemetry", b'{"seq": 1}', on_ack=on_ack)
    assert got.wait(5.0), "the stalled publish was never given up"
    assert results == [AckResult.LOST]
    ev.wait(lambda: ev.downs, what="link down")
    assert "black-holed" in ev.downs[0]
    proxy.restore()
    ev.wait(lambda: len(ev.ups) >= 2, timeout=15, what="reconnect after restore")
    assert link.stats().blackholes >= 1
    assert publish_and_wait(link, "telemetry", b'{"seq": 2}') is AckResult.ACKED


def test_black_hole_without_traffic_is_caught_by_keepalive(broker: Broker, make_link, netproxy_factory) -> None:
    proxy: NetProxy = netproxy_factory(broker.address)
    link, ev = make_link([proxy.address], keepalive=5)
    ev.wait(lambda: ev.ups, what="link up")
    proxy.blackhole()
    t0 = time.monotonic()
    proxy.restore()  # the stalled connection stays stalled; new ones work
    # Given 3 s (3/4 of 5), paho sends PINGREQ after 3 s idle and gives up 3 s later without PINGRESP.
    ev.wait(lambda: ev.downs, timeout=15, what="keepalive timeout")
    assert time.monotonic() - t0 <= 1.5 * 5 + 1.0  # + paho's loop period
    ev.wait(lambda: len(ev.ups) >= 2, timeout=10, what="reconnect")


def test_exceptions_in_link_callbacks_are_contained(broker: Broker, make_link) -> None:
    def explode(*_args: object) -> bytes:
        raise ValueError("bad callback")

    link = MqttLink(
        MqttSettings(brokers=(broker.address,), reconnect_min=0.1, reconnect_max=0.5),
        unit_id=UNIT,
        on_up=explode,
        on_down=explode,
        on_message=explode,
        birth=explode,
    )
    link.start()
    try:
        wait_until(lambda: link.connected, 5, "link up")
        assert publish_and_wait(link, "status", b"{}") is AckResult.ACKED
        assert link.stats().callback_errors == 2  # birth and on_up
    finally:
        link.stop()


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        MqttSettings(protocol="4")
    with pytest.raises(ValueError):
        MqttSettings(brokers=())
    with pytest.raises(ValueError):
        MqttSettings(tls_cert="c.pem")
    with pytest.raises(ValueError):
        MqttSettings(max_inflight=50, max_queued=10)


# ------------------------------------------------- coming back into coverage


def test_a_cut_link_comes_back_quickly_while_reports_wait(broker: Broker, make_link, netproxy_factory) -> None:
    """Closed during the handshake: an attempt fails at once; back-off capped while reports wait."""
    proxy: NetProxy = netproxy_factory(broker.address)
    link, ev = make_link([proxy.address], reconnect_min=0.5, reconnect_max=60.0, connect_timeout=10.0,
                         waiting=lambda: True)  # the unit has reports waiting
    ev.wait(lambda: ev.ups, what="link up")
    proxy.refuse()
    ev.wait(lambda: ev.downs, what="link down")
    before = proxy.connections
    # Long enough for an uncapped back-off (0.5, 1, 2, 4, 8 s...) to stretch well past the cap.
    threading.Event().wait(8.0)
    attempts = proxy.connections - before
    assert attempts >= 5, f"{attempts} attempts in 8 s: the back-off was not capped"
    proxy.restore()
    t0 = time.monotonic()
    ev.wait(lambda: len(ev.ups) >= 2, timeout=5, what="reconnect")
    assert time.monotonic() - t0 < 2.5  # at most the 1 s cap, its jitter and a handshake


def test_a_black_holed_link_is_probed_with_short_handshakes(broker: Broker, make_link, netproxy_factory) -> None:
    proxy: NetProxy = netproxy_factory(broker.address)
    link, ev = make_link([proxy.address], reconnect_min=0.2, reconnect_max=60.0, connect_timeout=8.0,
                         connect_probe=1.0, ack_timeout=1.0, waiting=lambda: True)
    ev.wait(lambda: ev.ups, what="link up")
    proxy.blackhole()
    assert link.publish("telemetry", b'{"seq": 1}')
    ev.wait(lambda: ev.downs, timeout=5, what="black hole detected")
    before = proxy.connections
    threading.Event().wait(6.0)
    # Full 8 s handshakes would allow one attempt; 1 s probes (and a full one every fifth) several.
    assert proxy.connections - before >= 3
    proxy.restore()
    ev.wait(lambda: len(ev.ups) >= 2, timeout=10, what="reconnect after restore")
    assert publish_and_wait(link, "telemetry", b'{"seq": 2}') is AckResult.ACKED


def test_a_stall_is_seen_within_the_keepalive_when_reports_go_out(broker: Broker, make_link, netproxy_factory) -> None:
    proxy: NetProxy = netproxy_factory(broker.address)
    link, ev = make_link([proxy.address], keepalive=5, ack_timeout=60.0)
    ev.wait(lambda: ev.ups, what="link up")
    proxy.blackhole()
    t0 = time.monotonic()
    while not ev.downs and time.monotonic() - t0 < 10:
        link.publish("telemetry", b'{"seq": 1}')  # 1 Hz reports, each waiting for its PUBACK
        with ev.cond:
            ev.cond.wait_for(lambda: ev.downs, 1.0)
    took = time.monotonic() - t0
    assert ev.downs and "black-holed" in ev.downs[0]
    assert took <= 1.5 * 5, took
