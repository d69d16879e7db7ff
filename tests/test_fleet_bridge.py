"""Regional brokers bridged to a central one, from the shipped files, with real Mosquitto processes.

Three regional brokers (``firmware-config/mosquitto`` + ``fleet/mosquitto/umps-bridge.conf``)
bridged over mutual TLS to a central broker (``fleet/mosquitto/central.conf``),
simulated units in each region, each room on its own level. One region's
bridge is cut: its dispatch room keeps seeing its units live, and command
gets every report once the bridge is back (audited by ``seq``).
"""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from hil.broker import BrokerUnavailable
from hil.fleet import Driver, SimUnit
from hil.fleet_regions import Cut, run_regions, unit_ids
from hil.regions import Topology
from hil.route import default_route

REGIONS, PER_REGION = 3, 2


@pytest.fixture
def topology(tmp_path: Path):
    ids = [u for region in unit_ids(REGIONS, PER_REGION) for u in region]
    try:
        topo = Topology(tmp_path / "fleet", regions=REGIONS, units=ids).start()
    except BrokerUnavailable as exc:
        pytest.skip(str(exc))
    yield topo
    topo.stop()


@pytest.mark.parametrize("cut_s", [pytest.param(15.0, id="15s"), pytest.param(60.0, id="60s", marks=pytest.mark.slow)])
def test_a_cut_bridge_keeps_the_region_working_and_command_gets_every_report_after(topology: Topology,
                                                                                    cut_s: float) -> None:
    report = run_regions(topology, per_region=PER_REGION, duration_s=cut_s + 8, rate_hz=2.0, encoding="cbor",
                         cut=Cut(region=0, at_s=3.0, for_s=cut_s), drain_s=60.0)
    regional, central = report.level("regional"), report.level("central")
    assert report.connected == REGIONS * PER_REGION
    assert regional.expected >= REGIONS * PER_REGION * 2 * (cut_s + 6), report.text()
    # The region cut from the centre: its room still saw every report, live.
    assert regional.missing == 0, report.text()
    assert regional.latency_p99 is not None and regional.latency_p99 < 2.0, report.text()
    # Command: nothing lost, every seq of every unit, some of it held back while the bridge was down.
    assert central.missing == 0, report.text()
    assert central.latency_max is not None and central.latency_max > cut_s / 2, report.text()
    assert topology.region_list[0].cable.cut_count == 1


class Console:
    """A dispatch or admin console (MQTT 5, so refusals come back as PUBACK reason codes)."""

    def __init__(self, address: tuple[str, int], username: str | None, password: str | None = None,
                 tls: tuple[Path, Path, Path] | None = None):
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5,
                                  client_id=f"console-{username}-{id(self):x}")
        if username is not None and tls is None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            ca, cert, key = tls
            self.client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key),
                                tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(*address)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(10)

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        codes: list[ReasonCode] = []
        done = threading.Event()
        self.client.on_publish = lambda c, u, mid, rc, props: (codes.append(rc), done.set())
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)
        assert done.wait(10)
        return codes[0]

    def wait_for(self, topic: str, timeout: float = 15.0) -> bytes:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(t == topic for t, _ in self.messages), timeout)
        assert ok, f"nothing on {topic} within {timeout} s; got {[t for t, _ in self.messages]}"
        return next(p for t, p in self.messages if t == topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_calls_cross_levels_a_unit_fails_over_and_a_bridge_cannot_push_config(topology: Topology) -> None:
    r1, r2, r3 = topology.region_list
    pw = topology.password
    route = default_route()
    # R3's unit at home, and R1's unit failed over to its neighbour R2 (its home broker is out of reach).
    home = SimUnit("R3-U0000", *r3.address, prefix="umps", route=route, offset_s=0, username="R3-U0000", password=pw)
    moved = SimUnit("R1-U0000", *r2.address, prefix="umps", route=route, offset_s=60, username="R1-U0000",
                    password=pw, encoding="cbor")
    driver = Driver([home, moved])
    command = Console(topology.central.address, Topology.CENTRAL_DISPATCH, pw)
    room3 = Console(r3.address, r3.dispatch, pw)
    room1 = Console(r1.address, r1.dispatch, pw)
    pumping = threading.Event()

    def pump() -> None:
        while not pumping.is_set():
            driver.pump(0.05)

    thread = threading.Thread(target=pump, daemon=True)
    try:
        assert driver.connect() == 2
        thread.start()
        command.subscribe("umps/#")
        room3.subscribe("umps/+/call/response")
        # Command's call goes down the bridge to R3; the unit's answer comes back up to command.
        assert not command.publish("umps/R3-U0000/call", b'{"id": "C-77", "action": "new"}').is_failure
        assert b'"C-77"' in command.wait_for("umps/R3-U0000/call/response")
        assert b'"C-77"' in room3.wait_for("umps/R3-U0000/call/response")
        # R1's room calls its own unit, which is now on R2: through the centre it still arrives.
        assert not room1.publish("umps/R1-U0000/call", b'{"id": "C-78", "action": "new"}').is_failure
        assert b'"C-78"' in command.wait_for("umps/R1-U0000/call/response")
        # The failed-over unit reports through R2's bridge like any other.
        moved.report(0.0, dt.datetime.now(dt.timezone.utc))
        assert command.wait_for("umps/R1-U0000/telemetry")
        # Retained messages stay retained on the centre: a console that starts now gets the unit's status.
        late = Console(topology.central.address, Topology.CENTRAL_DISPATCH, pw)
        try:
            late.subscribe("umps/R3-U0000/status")
            assert b'"status"' in late.wait_for("umps/R3-U0000/status")
        finally:
            late.close()
        # A bridge's certificate may forward reports, never configuration.
        assert topology.pki is not None
        cert, key = topology.pki.client("bridge@region1")
        bridge_port = topology.central.bridge_port
        rogue = Console(("127.0.0.1", bridge_port), None, tls=(topology.pki.ca_cert, cert, key))
        try:
            refused = rogue.publish("umps/R3-U0000/config/set", b'{"id": "x", "version": 99, "config": {}}')
            assert refused == ReasonCode(PacketTypes.PUBACK, "Not authorized")
            assert not rogue.publish("umps/R3-U0000/telemetry", b'{"seq": 1}').is_failure
        finally:
            rogue.close()
    finally:
        pumping.set()
        if thread.is_alive():
            thread.join(5)
        driver.close()
        for c in (command, room3, room1):
            c.close()


def test_umps_hil_fleet_regions_prints_both_levels_and_writes_them(tmp_path: Path) -> None:
    import json

    from hil.cli import main

    out = tmp_path / "fleet.json"
    try:
        code = main(["fleet", "--regions", "2", "--units", "4", "--duration", "3", "--rate", "2", "--encoding", "cbor",
                     "--cut", "2:0.5:1", "--json", str(out)])
    except BrokerUnavailable as exc:
        pytest.skip(str(exc))
    assert code == 0
    report = json.loads(out.read_text())
    assert report["regions"] == 2 and report["connected"] == 4 and report["encoding"] == "cbor"
    levels = {lv["level"]: lv for lv in report["levels"]}
    assert set(levels) == {"regional", "central"}
    assert all(lv["missing"] == 0 and lv["expected"] >= 16 for lv in levels.values())
    assert main(["fleet", "--regions", "2", "--cut", "3:1:1"]) == 2  # no region 3
