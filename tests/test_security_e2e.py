"""Security end to end: the real agent process, a real Mosquitto with the shipped ACLs, restarts.

The unit logs in as itself (its unit id), dispatch as ``dispatch@central`` and the admin as
``admin@central``, with the ACL file from ``firmware-config/mosquitto/acl``, so every message
here also passes (or would be stopped by) the fleet broker's rules. The unit has admin keys
and dispatch keys. Between an accepted signed request and its replay, the agent is stopped and
started again: the replay memory must come from disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import admin_tools
from hil.agent_proc import deep_merge
from hil.engine import Rig as HilRig
from hil.engine import RigOptions
from hil.recorder import Recorder
from tests.support.broker import Broker, write_password_file
from tests.test_agent_e2e import PINS, ROOT, UNIT, Rig

ACL = ROOT / "firmware-config" / "mosquitto" / "acl"
DISPATCH, ADMIN = "dispatch@central", "admin@central"
PASSWORD = "s3cret-for-tests"
ADMIN_KEY = Ed25519PrivateKey.generate()
DISPATCH_KEY = Ed25519PrivateKey.generate()


class FleetRig(Rig):
    """The end-to-end rig on a broker with passwords and the shipped ACL file.

    The unit logs in as itself, the rig's recorder and dispatcher as ``dispatch@central``,
    and ``self.admin_client`` as ``admin@central``.
    """

    def __init__(self, tmp: Path) -> None:
        passwd = write_password_file(tmp / "passwd", {UNIT: PASSWORD, DISPATCH: PASSWORD, ADMIN: PASSWORD})
        self.fleet_broker = Broker(tmp / "fleet-broker", allow_anonymous=False, password_file=passwd,
                                   acl_file=ACL).start()
        agent = {
            "gpio": {"inputs": {name: {"pin": pin, "bounce_s": 0.01} for name, pin in PINS.items()}},
            "mqtt": {"reconnect_max_s": 1.0, "username": UNIT, "password": PASSWORD},
            "storage": {"commit_interval_s": 1.0},
            "ui": {"enabled": False},
            "security": {"admin_keys": [admin_tools.public_text(ADMIN_KEY)],
                         "dispatch_keys": [admin_tools.public_text(DISPATCH_KEY)]},
            "panel": {"emergency_hold_s": 1.0, "emergency_cancel_s": 1.0},
        }
        HilRig.__init__(self, RigOptions(workdir=tmp / "rig", unit_id=UNIT, start_agent=False,
                                         agent_overrides=deep_merge({}, agent), broker=self.fleet_broker.address,
                                         tap_login=(DISPATCH, PASSWORD)))
        self.up()
        host, port = self.fleet_broker.address
        self.admin_client = Recorder(host, port, [f"umps/{UNIT}/config/result"], username=ADMIN,
                                     password=PASSWORD).start()

    def admin_publish(self, topic: str, payload: bytes) -> None:
        assert self.admin_client.publish(f"umps/{UNIT}/{topic}", payload)

    def close(self) -> None:
        self.admin_client.stop()
        self.down()
        self.fleet_broker.stop()


def fleet_rig(tmp: Path, request) -> FleetRig:
    rig = FleetRig(tmp)
    request.addfinalizer(rig.close)
    return rig


def dispatch(rig: Rig, topic: str, message: dict | None = None, *, key=DISPATCH_KEY) -> bytes:
    payload = json.dumps(admin_tools.dispatch_request(key, UNIT, topic, message), ensure_ascii=False).encode()
    rig.publish(topic, payload)
    return payload


def raise_alarm(rig: Rig) -> dict:
    before = len(rig.messages("alarm"))
    rig.gpio.hold(PINS["emergency"], 1.3)
    pending = rig.wait("alarm", lambda b: b["state"] == "pending" and len(rig.messages("alarm")) > before)
    rig.wait("alarm", lambda b: b["state"] == "active" and b["id"] == pending["id"])
    return pending


CALL = {"id": "C-SEC-1", "action": "new", "priority": 1, "nature": "Agression", "address": "Rue 12, Kénitra",
        "created": "2026-11-25T19:58:00Z"}


def test_dispatch_is_authenticated_and_replays_stay_refused_across_a_restart(tmp_path, request):
    rig = fleet_rig(tmp_path, request)
    rig.start_agent()
    # Expiry is judged only on trusted time: wait for the receiver's (no NTP in the test sandbox).
    rig.wait("telemetry", lambda b: b.get("time_source") == "gnss", timeout=30)

    # Calls: unsigned or signed by another key are refused with the reason; a signed one is shown.
    rig.publish("call", json.dumps({**CALL, "id": "C-FAKE"}).encode())
    assert rig.wait("call/rejected", lambda b: b["id"] == "C-FAKE")["error"].startswith("expires: required")
    dispatch(rig, "call", {**CALL, "id": "C-FORGED"}, key=ADMIN_KEY)
    assert "not signed by any dispatch key" in rig.wait("call/rejected", lambda b: b["id"] == "C-FORGED")["error"]
    dispatch(rig, "call", CALL)
    assert rig.wait("call/response", lambda b: b["id"] == CALL["id"])["response"] == "received"
    assert not [r for r in rig.messages("call/response") if r["id"] in ("C-FAKE", "C-FORGED")]

    # Officer in danger: an unsigned clear and a forged one leave the alarm active.
    first = raise_alarm(rig)
    rig.publish("alarm/clear", b"")
    assert rig.wait("alarm/rejected")["error"].startswith("sig: required")
    dispatch(rig, "alarm/clear", {"id": first["id"]}, key=ADMIN_KEY)
    forged = rig.wait("alarm/rejected", lambda b: b["id"] == first["id"])
    assert "not signed by any dispatch key" in forged["error"]
    # The unit answers in order: by the time it refused the forged clear, nothing cleared the alarm.
    assert [b["state"] for b in rig.messages("alarm") if b["id"] == first["id"]] == ["pending", "active"]
    # A signed clear must name its alarm: "the current alarm" could be replayed against a later one...
    dispatch(rig, "alarm/clear", {})
    assert rig.wait("alarm/rejected", lambda b: "id: required" in b["error"])["id"] is None
    # ...and one naming it clears it.
    clear_first = dispatch(rig, "alarm/clear", {"id": first["id"]})
    rig.wait("alarm", lambda b: b["state"] == "cleared" and b["id"] == first["id"])

    # ...and admin requests, signed, are carried out once.
    command = json.dumps(admin_tools.command_request(ADMIN_KEY, UNIT, "report_position")).encode()
    rig.admin_publish("cmd", command)
    cmd_id = json.loads(command)["id"]
    assert rig.wait("cmd/result", lambda b: b["id"] == cmd_id)["ok"] is True
    v1 = json.dumps(admin_tools.config_request(ADMIN_KEY, UNIT, 1, {"telemetry": {"backlog_max_rate": 40.0}})).encode()
    v2 = json.dumps(admin_tools.config_request(ADMIN_KEY, UNIT, 2, {"telemetry": {"backlog_max_rate": 50.0}})).encode()
    for body, version in ((v1, 1), (v2, 2)):
        rig.admin_publish("config/set", body)
        assert rig.wait("config/result", lambda b, v=version: b["version"] == v)["ok"] is True

    # Restart: the replay memory is on disk.
    assert rig.stop_agent() == 0
    mark = len(rig.messages("telemetry"))
    rig.start_agent()
    rig.wait("telemetry", lambda b: b.get("time_source") == "gnss" and len(rig.messages("telemetry")) > mark, timeout=30)
    second = raise_alarm(rig)
    assert second["id"] != first["id"]  # a random id, new for each alarm
    # The captured clear of the first alarm must not clear the new one: it names another alarm.
    rig.publish("alarm/clear", clear_first)
    rig.admin_publish("cmd", command)
    replayed = rig.wait("cmd/result", lambda b: b["id"] == cmd_id and b["ok"] is False)
    assert replayed["errors"] == [{"loc": "id", "msg": "this command was already handled"}]
    rig.admin_publish("config/set", v1)
    old = rig.wait("config/result", lambda b: b["id"] == json.loads(v1)["id"] and b["ok"] is False)
    assert old["errors"][0]["loc"] == "id" and old["version"] == 2
    # The clear copy came before the command (one worker, then the core, in order): the new alarm is untouched.
    assert [b["state"] for b in rig.messages("alarm") if b["id"] == second["id"]] == ["pending", "active"]
    # Dispatch clears the new alarm with a fresh signature.
    dispatch(rig, "alarm/clear", {"id": second["id"]})
    rig.wait("alarm", lambda b: b["state"] == "cleared" and b["id"] == second["id"])
    # The hash the admins and dispatch read never covers the MQTT password.
    current = rig.wait("config/current", lambda b: b["version"] == 2)
    assert current["config"]["mqtt"]["password"] == "***" and current["secrets_version"] == 0
    assert rig.stop_agent() == 0


@pytest.mark.parametrize("role", [DISPATCH, ADMIN])
def test_the_shipped_acl_lets_a_unit_answer_on_alarm_rejected_only_for_itself(tmp_path, role):
    passwd = write_password_file(tmp_path / "passwd", {UNIT: PASSWORD, "KEN-T-02": PASSWORD, role: PASSWORD})
    broker = Broker(tmp_path / "broker", allow_anonymous=False, password_file=passwd, acl_file=ACL).start()
    host, port = broker.address
    clients = []
    try:
        def login(user: str, topic: str) -> Recorder:
            clients.append(Recorder(host, port, [topic], username=user, password=PASSWORD).start())
            return clients[-1]

        watcher = login(role, "umps/+/alarm/rejected")
        unit = login(UNIT, f"umps/{UNIT}/call")
        other = login("KEN-T-02", "umps/KEN-T-02/call")
        other.publish(f"umps/{UNIT}/alarm/rejected", b'{"id": 1, "error": "spoofed", "ts": "x"}')
        unit.publish(f"umps/{UNIT}/alarm/rejected", b'{"id": 1, "error": "real", "ts": "x"}')
        assert watcher.wait_for(lambda ms: [m for m in ms if m.payload and b"real" in m.payload], 10)
        assert [json.loads(m.payload)["error"] for m in watcher.on(f"umps/{UNIT}/alarm/rejected")] == ["real"]
    finally:
        for client in clients:
            client.stop()
        broker.stop()


def test_a_pushed_password_moves_secrets_version_not_the_hash(tmp_path, request):
    # The rig's anonymous broker takes any password, so the new one connects and is confirmed.
    rig = Rig(tmp_path)
    request.addfinalizer(rig.down)
    rig.start_agent()
    before = rig.wait("config/current", lambda b: b["version"] == 0)
    assert before["secrets_version"] == 0
    rig.publish("config/set", {"id": "pw-1", "version": 1, "config": {"mqtt": {"password": "n3w-secret"}}})
    assert rig.wait("config/result", lambda b: b["id"] == "pw-1", timeout=30)["ok"] is True
    after = rig.wait("config/current", lambda b: b["version"] == 1)
    assert after["secrets_version"] == 1 and after["hash"] == before["hash"]
    assert "n3w-secret" not in json.dumps(after)
    # Still 1 after a restart: the counter is kept, and nothing changed meanwhile.
    assert rig.stop_agent() == 0
    rig.start_agent()
    assert rig.wait("config/current", lambda b: b["version"] == 1 and "secrets_version" in b)["secrets_version"] == 1
