"""Security end to end: the real agent process, a real Mosquitto with the shipped ACLs, restarts.

The unit logs in as itself (its unit id), dispatch as ``dispatch@central`` and the admin as
``admin@central``, with the ACL file from ``firmware-config/mosquitto/acl``, so every message
here also passes (or would be stopped by) the fleet broker's rules. The unit has admin keys
and dispatch keys. Between an accepted signed request and its replay, the agent is stopped and
started again: the replay memory must come from disk.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import admin_tools
from tests.support.broker import Broker, Recorder, write_password_file
from tests.test_agent_e2e import PINS, ROOT, UNIT, Rig

ACL = ROOT / "firmware-config" / "mosquitto" / "acl"
DISPATCH, ADMIN = "dispatch@central", "admin@central"
PASSWORD = "s3cret-for-tests"
ADMIN_KEY = Ed25519PrivateKey.generate()
DISPATCH_KEY = Ed25519PrivateKey.generate()


def fleet_rig(tmp: Path, request) -> Rig:
    """A Rig whose broker, recorder and publishers are the fleet's roles (see the module doc)."""
    passwd = write_password_file(tmp / "passwd", {UNIT: PASSWORD, DISPATCH: PASSWORD, ADMIN: PASSWORD})
    rig = Rig.__new__(Rig)
    rig.tmp = tmp
    rig.broker = Broker(tmp / "broker", allow_anonymous=False, password_file=passwd, acl_file=ACL).start()
    # Dispatch reads the whole fleet and sends calls and alarm messages; the admin sends config.
    rig.recorder = Recorder(rig.broker, topics=(f"umps/{UNIT}/#",), username=DISPATCH, password=PASSWORD).start()
    rig.admin = Recorder(rig.broker, topics=(f"umps/{UNIT}/config/result",), username=ADMIN, password=PASSWORD).start()
    from hil.gnss_emulator import GnssEmulator
    from hil.gpio_emulator import PigpioEmulator
    from tests.test_agent_e2e import agent_config

    rig.gnss = GnssEmulator(rate_hz=1)
    rig.gnss_path = rig.gnss.serve_pty(tmp / "gnss0")
    rig.gnss.start()
    rig.gpio = PigpioEmulator("127.0.0.1", 0)
    rig.gpio.start()
    extra = (f'[security]\nadmin_keys = ["{admin_tools.public_text(ADMIN_KEY)}"]\n'
             f'dispatch_keys = ["{admin_tools.public_text(DISPATCH_KEY)}"]\n'
             "[panel]\nemergency_hold_s = 1.0\nemergency_cancel_s = 1.0\n")
    rig.config = agent_config(tmp, rig.broker, rig.gnss_path, rig.gpio.port, extra=extra)
    text = rig.config.read_text().replace("[mqtt]\n", f'[mqtt]\nusername = "{UNIT}"\npassword = "{PASSWORD}"\n', 1)
    rig.config.write_text(text)
    rig.proc = None

    def close() -> None:
        rig.admin.stop()
        rig.close()

    request.addfinalizer(close)
    return rig


def dispatch(rig: Rig, topic: str, message: dict | None = None, *, key=DISPATCH_KEY) -> bytes:
    payload = json.dumps(admin_tools.dispatch_request(key, UNIT, topic, message), ensure_ascii=False).encode()
    rig.recorder.publish(f"umps/{UNIT}/{topic}", payload)
    return payload


def raise_alarm(rig: Rig) -> dict:
    before = len(rig.messages("alarm"))
    # A bump first, as in test_agent_e2e: the first edge after the panel connects may be missed.
    rig.gpio.hold(PINS["emergency"], 0.3)
    rig.gpio.hold(PINS["emergency"], 1.3)
    pending = rig.wait("alarm", lambda b: b["state"] == "pending" and len(rig.messages("alarm")) > before)
    rig.wait("alarm", lambda b: b["state"] == "active" and b["id"] == pending["id"])
    return pending


CALL = {"id": "C-SEC-1", "action": "new", "priority": 1, "nature": "Agression", "address": "Rue 12, Kénitra",
        "created": "2026-11-25T19:58:00Z"}


def test_dispatch_is_authenticated_and_replays_stay_refused_across_a_restart(tmp_path, request):
    rig = fleet_rig(tmp_path, request)
    rig.start_and_wait_online()

    # Calls: unsigned or signed by another key are refused with the reason; a signed one is shown.
    rig.recorder.publish(f"umps/{UNIT}/call", json.dumps({**CALL, "id": "C-FAKE"}).encode())
    assert rig.wait("call/rejected", lambda b: b["id"] == "C-FAKE")["error"].startswith("expires: required")
    dispatch(rig, "call", {**CALL, "id": "C-FORGED"}, key=ADMIN_KEY)
    assert "not signed by any dispatch key" in rig.wait("call/rejected", lambda b: b["id"] == "C-FORGED")["error"]
    dispatch(rig, "call", CALL)
    assert rig.wait("call/response", lambda b: b["id"] == CALL["id"])["response"] == "received"
    assert not [r for r in rig.messages("call/response") if r["id"] in ("C-FAKE", "C-FORGED")]

    # Officer in danger: an unsigned clear and a forged one leave the alarm active.
    first = raise_alarm(rig)
    rig.recorder.publish(f"umps/{UNIT}/alarm/clear", b"")
    assert rig.wait("alarm/rejected")["error"].startswith("sig: required")
    dispatch(rig, "alarm/clear", {"id": first["id"]}, key=ADMIN_KEY)
    forged = rig.wait("alarm/rejected", lambda b: b["id"] == first["id"])
    assert "not signed by any dispatch key" in forged["error"]
    # The unit answers in order: by the time it refused the forged clear, nothing cleared the alarm.
    assert [b["state"] for b in rig.messages("alarm") if b["id"] == first["id"]] == ["pending", "active"]
    # A signed clear of "the current alarm" (no id) works...
    clear_current = dispatch(rig, "alarm/clear", {})
    rig.wait("alarm", lambda b: b["state"] == "cleared" and b["id"] == first["id"])

    # ...and admin requests, signed, are carried out once.
    command = json.dumps(admin_tools.command_request(ADMIN_KEY, UNIT, "report_position")).encode()
    rig.admin.publish(f"umps/{UNIT}/cmd", command)
    cmd_id = json.loads(command)["id"]
    assert rig.wait("cmd/result", lambda b: b["id"] == cmd_id)["ok"] is True
    v1 = json.dumps(admin_tools.config_request(ADMIN_KEY, UNIT, 1, {"telemetry": {"backlog_max_rate": 40.0}})).encode()
    v2 = json.dumps(admin_tools.config_request(ADMIN_KEY, UNIT, 2, {"telemetry": {"backlog_max_rate": 50.0}})).encode()
    for body, version in ((v1, 1), (v2, 2)):
        rig.admin.publish(f"umps/{UNIT}/config/set", body)
        assert rig.wait("config/result", lambda b, v=version: b["version"] == v)["ok"] is True

    # Restart: the replay memory is on disk.
    assert rig.stop_agent(signal.SIGTERM) == 0
    rig.start_and_wait_online()
    second = raise_alarm(rig)
    assert second["id"] == first["id"] + 1
    # The captured "clear the current alarm" must not clear the new one: dropped as a replay.
    rig.recorder.publish(f"umps/{UNIT}/alarm/clear", clear_current)
    rig.admin.publish(f"umps/{UNIT}/cmd", command)
    replayed = rig.wait("cmd/result", lambda b: b["id"] == cmd_id and b["ok"] is False)
    assert replayed["errors"] == [{"loc": "id", "msg": "this command was already handled"}]
    rig.admin.publish(f"umps/{UNIT}/config/set", v1)
    old = rig.wait("config/result", lambda b: b["id"] == json.loads(v1)["id"] and b["ok"] is False)
    assert old["errors"][0]["loc"] == "id" and old["version"] == 2
    # The clear copy came before the command (one worker, in order): the new alarm is untouched.
    assert [b["state"] for b in rig.messages("alarm") if b["id"] == second["id"]] == ["pending", "active"]
    assert "dropped a copy of a alarm/clear already handled" in (tmp_path / "agent.log").read_text(errors="replace")
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
    try:
        watcher = Recorder(broker, topics=("umps/+/alarm/rejected",), username=role, password=PASSWORD).start()
        unit = Recorder(broker, topics=(f"umps/{UNIT}/call",), username=UNIT, password=PASSWORD).start()
        other = Recorder(broker, topics=("umps/KEN-T-02/call",), username="KEN-T-02", password=PASSWORD).start()
        other.publish(f"umps/{UNIT}/alarm/rejected", b'{"id": 1, "error": "spoofed", "ts": "x"}')
        unit.publish(f"umps/{UNIT}/alarm/rejected", b'{"id": 1, "error": "real", "ts": "x"}')
        got = watcher.wait_json(f"umps/{UNIT}/alarm/rejected", lambda b: True, 10)
        assert got["error"] == "real"
        assert [json.loads(m.payload)["error"] for m in watcher.on(f"umps/{UNIT}/alarm/rejected")] == ["real"]
        for client in (watcher, unit, other):
            client.stop()
    finally:
        broker.stop()


def test_a_pushed_password_moves_secrets_version_not_the_hash(tmp_path, request):
    # An anonymous broker takes any password, so the new one connects and is confirmed.
    rig = Rig(tmp_path)
    request.addfinalizer(rig.close)
    rig.start_and_wait_online()
    before = rig.wait("config/current", lambda b: b["version"] == 0)
    assert before["secrets_version"] == 0
    rig.recorder.publish(f"umps/{UNIT}/config/set",
                         json.dumps({"id": "pw-1", "version": 1, "config": {"mqtt": {"password": "n3w-secret"}}}).encode())
    assert rig.wait("config/result", lambda b: b["id"] == "pw-1", timeout=30)["ok"] is True
    after = rig.wait("config/current", lambda b: b["version"] == 1)
    assert after["secrets_version"] == 1 and after["hash"] == before["hash"]
    assert "n3w-secret" not in json.dumps(after)
    # Still 1 after a restart: the counter is kept, and nothing changed meanwhile.
    assert rig.stop_agent() == 0
    rig.start_and_wait_online()
    assert rig.wait("config/current", lambda b: b["version"] == 1)["secrets_version"] == 1
