"""The fleet rig's plain-socket units and rooms (hil/fleet_wire.py, hil/mqtt_wire.py), against real Mosquitto.

The packets are framed by hand, so each is checked where it matters: a real
broker accepts them and a paho client (the reference) reads what they carry,
and what paho publishes parses here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from agent.core import telemetry_cbor
from hil import mqtt_wire as w
from hil.broker import free_port, mosquitto_path, write_password_file
from hil.fleet_wire import WireFleet, WireSubscriber, WireUnit, raise_nofile, serve
from hil.route import default_route
from hil.seq_ledger import SeqLedger
from hil.wait import poll_until

ROOT = Path(__file__).resolve().parents[1]


class Console:
    """A paho MQTT 5 client that keeps every message with its properties."""

    def __init__(self, address: tuple[str, int], topic: str, username: str | None = None, password: str | None = None):
        self.messages: list[paho.MQTTMessage] = []
        self.cond = threading.Condition()
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5,
                                  client_id=f"console-{id(self):x}")
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(*address)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client, userdata, msg) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def wait(self, predicate, timeout: float = 10.0):
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self.messages), timeout), [m.topic for m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("n", [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455])
def test_remaining_lengths_frame_and_split_whatever_the_chunks(n: int) -> None:
    body = bytes(min(n, 300))  # the reader needs the whole body only for small n
    packet = bytes((0x30,)) + w.varint(n) + body
    reader = w.Reader()
    if n > 300:
        assert reader.feed(packet) == []  # a length announced, the body not there yet
        assert len(w.varint(n)) == (1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4)
        return
    out = []
    for i in range(len(packet)):  # one byte at a time, then two packets in one chunk
        out += reader.feed(packet[i:i + 1])
    assert out == [(0x30, body)]
    assert reader.feed(packet + packet) == [(0x30, body), (0x30, body)]


def test_a_malformed_remaining_length_is_refused() -> None:
    with pytest.raises(w.MalformedPacket):
        w.Reader().feed(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(ValueError):
        w.varint(268_435_456)


def test_units_report_as_the_agent_does_and_a_room_audits_every_seq(broker) -> None:
    """CBOR reports with topic aliases, births, status, calls answered; the room sees every seq once."""
    route = default_route()
    console = Console(broker.address, "umps/#")
    room = WireSubscriber(*broker.address, "umps")
    stop = threading.Event()
    thread = serve(room, stop)
    sims = [WireUnit(f"W-{i}", *broker.address, prefix="umps", route=route, offset_s=30 * i,
                     encoding="cbor" if i % 2 else "json") for i in range(6)]
    fleet = WireFleet(sims)
    try:
        assert fleet.connect() == 6
        fleet.report(1.5, 4.0)  # 6 reports each
        fleet.settle(5.0, until=lambda: all(u.acked == u.published for u in sims))
        assert all(u.acked == u.published and u.refused == 0 for u in sims)
        assert all(u.alias_set for u in sims)  # Mosquitto allows aliases: every report after the first used one
        made = {u.id: u.seq - 1 for u in sims}
        assert all(m >= 5 for m in made.values())
        assert poll_until(lambda: room.stats.received >= sum(made.values()), 10.0, 0.05)
        # A call from dispatch is acknowledged and answered, as the agent does.
        console.client.publish("umps/W-1/call", b'{"id": "C-1", "action": "new"}', qos=1)
        fleet.settle(10.0, until=lambda: sims[1].calls_answered == 1 and sims[1].acked == sims[1].published)
        console.wait(lambda ms: any(m.topic == "umps/W-1/call/response" and b'"C-1"' in m.payload for m in ms))
    finally:
        fleet.close()
        stop.set()
        thread.join(5)
        room.close()
    # The room: every seq of every unit, once, with its birth; latency from the embedded time.
    for u in sims:
        ledger = SeqLedger()
        for birth in room.stats.births[u.id]:
            ledger.on_message("online", birth)
        for seq in room.stats.seqs[u.id]:
            ledger.on_report({"seq": seq})
        summary = ledger.summary()
        assert (summary.lo, summary.hi, summary.duplicates, summary.lost_in_transit) == (1, made[u.id], 0, [])
    assert room.bad == 0 and len(room.stats.latencies) == sum(made.values())
    assert 0 <= min(room.stats.latencies) and max(room.stats.latencies) < 5.0
    # paho, the reference, read the same PUBLISH packets: alias resolved, payloads decode to the report.
    console.wait(lambda ms: sum(m.topic.endswith("/telemetry") for m in ms) >= sum(made.values()))
    telemetry = [m for m in console.messages if m.topic.endswith("/telemetry")]
    for m in telemetry:
        unit = m.topic.split("/")[1]
        (report,) = telemetry_cbor.decode_telemetry(m.payload, m.topic)
        assert report["unit"] == unit and report["fix"]["mode"] == 3 and report["status"] == "available"
        assert telemetry_cbor.is_cbor(m.payload) == (unit in ("W-1", "W-3", "W-5"))
        fmt = getattr(m.properties, "PayloadFormatIndicator", 0)
        assert fmt == (0 if telemetry_cbor.is_cbor(m.payload) else 1)  # JSON says UTF-8, CBOR goes without
    births = [m for m in console.messages if m.topic.endswith("/online") and m.retain is False]
    assert {m.topic for m in births} == {f"umps/{u.id}/online" for u in sims}
    assert all(json.loads(m.payload)["seq_start"] == 1 for m in births)
    console.close()


def test_a_unit_lost_without_disconnect_leaves_its_will(broker) -> None:
    route = default_route()
    console = Console(broker.address, "umps/+/online")
    unit = WireUnit("W-will", *broker.address, prefix="umps", route=route, offset_s=0, keepalive=5)
    fleet = WireFleet([unit])
    try:
        assert fleet.connect() == 1
        console.wait(lambda ms: any(json.loads(m.payload).get("online") is True for m in ms))
        assert unit.sock is not None
        unit.sock.close()  # the link dies: no DISCONNECT
        console.wait(lambda ms: any(json.loads(m.payload) == {"online": False} for m in ms))
    finally:
        unit.sock = None
        fleet.close()
        console.close()


def test_paho_publishes_parse_here_and_a_refused_room_says_so(broker_factory, tmp_path: Path) -> None:
    passwd = write_password_file(tmp_path / "passwd", {"dispatch@test": "pw", "P-1": "pw"})
    acl = tmp_path / "acl"
    acl.write_text((ROOT / "firmware-config" / "mosquitto" / "acl").read_text()
                   + "\nuser dispatch@test\ntopic read umps/#\n")
    broker = broker_factory(allow_anonymous=False, password_file=passwd, acl_file=acl)
    with pytest.raises(ConnectionRefusedError):
        WireSubscriber(*broker.address, "umps", username="dispatch@test", password="wrong")
    room = WireSubscriber(*broker.address, "umps", username="dispatch@test", password="pw")
    unit = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5, client_id="umps-P-1")
    unit.username_pw_set("P-1", "pw")
    unit.connect(*broker.address)
    unit.loop_start()
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = telemetry_cbor.CONTENT_TYPE  # a property block the reader must step over
        report = {"unit": "P-1", "seq": 7, "ts": "2026-12-03T10:00:00.000Z", "time_source": "gnss",
                  "fix": {"mode": 3, "time": "2026-12-03T10:00:00.000Z", "lat": 34.26, "lon": -6.58, "alt": 20.0,
                          "speed": 0.0, "track": 0.0, "hdop": 0.9, "sats": 9, "age": 0.1},
                  "status": "busy", "siren": True, "emergency": False, "call": None}
        unit.publish("umps/P-1/telemetry", telemetry_cbor.encode_report(report), qos=1,
                     properties=props).wait_for_publish(10)
        unit.publish("umps/P-1/telemetry", json.dumps({**report, "seq": 8}).encode(), qos=1).wait_for_publish(10)
        poll_until(lambda: (room.pump(0.1), room.stats.received >= 2)[1], 10.0, 0.0)
    finally:
        unit.disconnect()
        unit.loop_stop()
        room.close()
    assert room.stats.seqs == {"P-1": [7, 8]} and room.bad == 0
    assert len(room.stats.latencies) == 2 and min(room.stats.latencies) > 0  # reports made in the past


def _with_open_files(soft: int, hard: int, code: str) -> subprocess.CompletedProcess[str]:
    """Python ``code`` in a process of its own whose limits of open files are (soft, hard)."""
    head = f"import resource, sys\nresource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
    return subprocess.run([sys.executable, "-c", head + code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_hard_limit_of_open_files_below_the_units_is_said_plainly() -> None:
    out = _with_open_files(64, 300, (
        "from hil.fleet_wire import WireFleet, TooManySockets, raise_nofile\n"
        "print(raise_nofile(200))\n"
        "try:\n"
        "    WireFleet([object()] * 1000)\n"
        "except TooManySockets as exc:\n"
        "    print(exc)\n"
    ))
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first == "(200, 300)"  # the soft limit raised toward what was asked
    assert "1000 units need 1064 open files" in second and "hard limit is 300" in second


def _limit_of_shipped_dropin() -> int:
    text = (ROOT / "fleet" / "systemd" / "umps-limits.conf").read_text()
    return int(next(ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("LimitNOFILE=")))


@pytest.mark.parametrize("soft", [pytest.param(1024, id="systemd-default"), pytest.param(None, id="shipped-dropin")])
def test_a_broker_takes_past_a_thousand_units_only_with_the_shipped_open_files_limit(tmp_path: Path, soft) -> None:
    """fleet/systemd/umps-limits.conf: Mosquitto does not raise its own soft limit of open files."""
    shipped = _limit_of_shipped_dropin()
    assert shipped >= 20_000  # a regional broker's units, its room, its bridge, with room to grow
    _soft, hard = raise_nofile(4096)  # the rig's own sockets; the broker gets its limit from ulimit below
    limit = soft or min(shipped, hard if hard != -1 else shipped)
    if limit < 1200 and soft is None:
        pytest.skip(f"the hard limit of open files here ({hard}) is too low for this test")
    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen(["bash", "-c", f"ulimit -Sn {limit}; exec {mosquitto_path()} -c {conf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert poll_until(lambda: _accepts(port), 10.0, 0.05)
        route = default_route()
        sims = [WireUnit(f"N{i}", "127.0.0.1", port, prefix="umps", route=route, offset_s=0) for i in range(1100)]
        fleet = WireFleet(sims)
        try:
            # Past the soft limit Mosquitto leaves connections unanswered: a short wait says enough.
            connected = fleet.connect(timeout=30.0 if soft is None else 5.0)
        finally:
            fleet.close()
    finally:
        proc.terminate()
        proc.wait(10)
    if soft is None:
        assert connected == 1100
    else:
        assert 500 < connected < 1024, connected  # refused past the soft limit, less the broker's own files


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_umps_hil_fleet_says_when_the_hard_limit_of_open_files_is_too_low() -> None:
    out = _with_open_files(64, 300, "from hil.cli import main\n"
                                    "sys.exit(main(['fleet', '--units', '1000', '--duration', '1']))\n")
    assert out.returncode == 1, out.stderr
    assert "umps-hil: 1000 units need 1064 open files" in out.stderr and "hard limit is 300" in out.stderr
