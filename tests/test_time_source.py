"""Time: expiry judged on the unit's best clock, and ``time_source`` on every message the unit sends.

The real agent process against a private Mosquitto, with the GNSS emulator's receiver
set to a UTC far from the system clock's (2038), as after a unit's clock was left
wrong: what the agent believes shows in what it accepts and in its messages' ``ts``.
The system clock of the machine running the tests must be unsynchronised (as a unit's is
at boot, before chrony locks on); a synchronised one rightly wins over the receiver.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.adapters.clock import SystemClock
from agent.admin_tools import command_request, config_request, public_text
from hil.gnss_emulator import GnssEmulator
from hil.gnss_sources import RouteSource
from tests.support import unit_rig as core
from tests.test_agent_e2e import UNIT, Rig

UTC = dt.timezone.utc
RECEIVER_UTC = dt.datetime(2038, 1, 10, 8, 0, 0, tzinfo=UTC)
SOURCES = ("system", "gnss", "system_unsynced")


def test_every_message_the_core_sends_carries_its_time_source():
    rig = core.Rig(synced=False)
    out = rig.press("en_route") + rig.message("call", core.call_payload())
    out += rig.message("call", b'{"id": "C-2", "action": "new", "nature": "x\\ud800y"}')
    rig.after(1.0)
    out += rig.fix()  # from now on the receiver's UTC is the best clock
    rig.after(0.5)
    out += rig.tap("ack") + rig.message("alarm/ack", b"") + rig.tick()
    rig.after(1.0)
    out += rig.tick()
    topics = {p.topic for p in core.pubs(out)}
    assert {"status", "call/response", "call/rejected", "telemetry"} <= topics, topics
    for p in core.pubs(out):
        body = core.body(p)
        assert body["time_source"] in SOURCES, (p.topic, body)
    sources = [core.body(p)["time_source"] for p in core.pubs(out)]
    assert sources[0] == "system_unsynced" and sources[-1] == "gnss"


@pytest.mark.skipif(SystemClock().synced(), reason="the system clock is synchronised: it is the best clock")
def test_expiry_is_judged_on_gnss_time_and_refused_without_trusted_time(tmp_path, request):
    key = Ed25519PrivateKey.generate()
    rig = Rig(tmp_path, overrides={"security": {"admin_keys": [public_text(key)]}})
    request.addfinalizer(rig.down)
    # The receiver says 2038; it starts unplugged: the unit has no trusted time at first.
    rig.gnss.stop()
    rig.gnss = GnssEmulator(RouteSource(start_utc=RECEIVER_UTC), rate_hz=1)
    port = rig.gnss.serve_pty(tmp_path / "gnss-2038")
    rig.config_path.write_text(rig.config_path.read_text().replace(rig.gnss_path, port))
    rig.gnss.unplug()
    rig.gnss.start()
    rig.start_agent()

    online = rig.wait("online", lambda b: b.get("online") is True)
    assert online["time_source"] == "system_unsynced"
    assert rig.wait("status")["time_source"] == "system_unsynced"
    assert rig.wait("config/current")["time_source"] == "system_unsynced"

    def send(body: dict) -> dict:
        rig.publish("cmd", json.dumps(body).encode())
        return rig.wait("cmd/result", lambda b: b.get("id") == body["id"])

    now = dt.datetime.now(UTC)
    # Without trusted time a config push waits for it; a command runs (nothing proves it expired:
    # dispatch asking where a unit that has just rebooted is must not wait for the sky).
    rig.publish("config/set", json.dumps(config_request(key, UNIT, 1, {"telemetry": {"rate_hz": 2}},
                                                        request_id="r-untrusted", now=now)).encode())
    waits = rig.wait("config/result", lambda b: b.get("id") == "r-untrusted")
    assert waits["ok"] is False and waits["errors"][0]["loc"] == "expires"
    assert "cannot be judged yet" in waits["errors"][0]["msg"]
    assert waits["time_source"] == "system_unsynced"
    runs = send(command_request(key, UNIT, "report_position", request_id="c-untrusted", now=now))
    assert runs["ok"] is True and runs["time_source"] == "system_unsynced", runs

    # A fix: the receiver's UTC (2038) is now the unit's clock.
    rig.gnss.replug()
    report = rig.wait("telemetry", lambda b: b["time_source"] == "gnss", timeout=20)
    assert report["ts"].startswith("2038-01-10")
    # Signed "now" by a workstation whose clock says 2026: expired on the unit's best clock.
    expired = send(command_request(key, UNIT, "report_position", request_id="c-2026", now=now))
    assert expired["ok"] is False and "expired" in expired["errors"][0]["msg"], expired
    assert expired["time_source"] == "gnss" and expired["ts"].startswith("2038-01-10")
    # Signed for the unit's time: accepted, carried out.
    ok = send(command_request(key, UNIT, "report_position", request_id="c-2038", now=RECEIVER_UTC))
    assert ok["ok"] is True, ok
    assert rig.wait("status")["time_source"] in SOURCES
    assert rig.stop_agent() == 0
