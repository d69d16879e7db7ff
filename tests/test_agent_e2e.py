"""The whole agent as a separate process: real Mosquitto, NMEA on a pty, buttons on emulated pins.

The agent runs unmodified (``python -m agent run --config FILE``); only its
config points at the rig: the GNSS emulator's pty, the pigpio-protocol GPIO
emulator, a private broker. Everything is observed from outside, as command
and the crew would: MQTT messages, LED pins, the process's exit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.agent_proc import deep_merge
from hil.engine import Rig as HilRig
from hil.engine import RigOptions
from tests.support.broker import free_port, mosquitto_path, wait_until

ROOT = Path(__file__).resolve().parents[1]
UNIT = "KEN-T-01"
PINS = {"available": 5, "en_route": 6, "on_scene": 13, "busy": 19, "out_of_service": 26, "ack": 16,
        "emergency": 20, "siren": 21}


class Rig(HilRig):
    """The scenario rig (``hil.engine``): broker, emulators, its recorder; the agent started by the test."""

    def __init__(self, tmp: Path, *, kind: str = "car", ui_port: int | None = None,
                 overrides: dict | None = None, link_proxy: bool = False) -> None:
        mosquitto_path()  # skip, not fail, without Mosquitto
        agent = deep_merge({
            "gpio": {"inputs": {name: {"pin": pin, "bounce_s": 0.01} for name, pin in PINS.items()}},
            "mqtt": {"reconnect_max_s": 1.0},
            "storage": {"commit_interval_s": 1.0},
            "ui": {"enabled": ui_port is not None},
        }, overrides or {})
        super().__init__(RigOptions(workdir=tmp, unit_id=UNIT, unit_kind=kind, ui_port=ui_port,
                                    start_agent=False, agent_overrides=agent, link_proxy=link_proxy))
        self.up()

    def start_and_wait_online(self) -> None:
        """Start the agent and wait for *its* birth message (not a retained one from before)."""
        self.start_agent()

    def agent_log(self) -> str:
        return (self.workdir / "agent.log").read_text(errors="replace")[-4000:]

    def messages(self, topic: str) -> list[dict]:
        assert self.tap is not None
        return [json.loads(m.payload) for m in self.tap.on(topic)]

    def publish(self, topic: str, body: dict | bytes) -> None:
        assert self.tap is not None
        payload = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        assert self.tap.publish(topic, payload), f"the broker did not take the message on {topic}"

    def wait(self, topic: str, predicate=lambda body: True, timeout: float = 10.0) -> dict:
        """The newest JSON body on ``topic`` for which ``predicate`` holds, waiting for one."""
        assert self.tap is not None

        def matching(messages) -> list[dict]:
            bodies = (json.loads(m.payload) for m in messages if m.topic == topic and m.payload)
            return [body for body in bodies if predicate(body)]

        found = self.tap.wait_for(lambda ms: matching(ms), timeout)
        if found is None:
            raise AssertionError(f"timed out after {timeout} s waiting for {topic}; "
                                 f"last messages: {self.tap.snapshot()[-3:]!r}\nagent log:\n{self.agent_log()}")
        return found[-1]


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.down()


def test_reports_position_and_status_and_answers_a_call(rig):
    rig.start_agent()
    online = rig.wait("online", lambda b: b.get("online") is True)
    assert online["config_version"] == 0 and online["config_hash"]
    rig.wait("config/current", lambda b: b["version"] == 0)
    rig.wait("status", lambda b: b["status"] == "available")
    # Telemetry with a position from the emulated receiver.
    first = rig.wait("telemetry", lambda b: b["fix"]["mode"] >= 2, timeout=20)
    assert abs(first["fix"]["lat"] - 34.26) < 0.2 and abs(first["fix"]["lon"] - (-6.58)) < 0.2
    rig.wait("telemetry", lambda b: b["seq"] >= first["seq"] + 3, timeout=10)
    seqs = [b["seq"] for b in rig.messages("telemetry")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    # A status button on the panel: published at once, and carried in telemetry.
    rig.gpio.hold(PINS["en_route"], 0.1)
    rig.wait("status", lambda b: b["status"] == "en_route")
    rig.wait("telemetry", lambda b: b["status"] == "en_route")

    # The siren input.
    rig.gpio.set_input(PINS["siren"], 0)  # the opto-isolator pulls the line low
    rig.wait("status", lambda b: b["siren"] is True)

    # A call: the receipt comes by itself; "ack" on the panel accepts it.
    call = {"id": "C-1", "action": "new", "priority": 1, "nature": "Accident", "address": "Av. Mohammed V",
            "location": {"lat": 34.2610, "lon": -6.5802}, "created": "2026-11-25T10:00:00Z"}
    rig.publish("call", json.dumps(call).encode())
    rig.wait("call/response", lambda b: b["id"] == "C-1" and b["response"] == "received")
    rig.gpio.hold(PINS["ack"], 0.1)
    rig.wait("call/response", lambda b: b["response"] == "accepted")
    # A broken call is answered, never shown, never fatal.
    rig.publish("call", b"{not json")
    assert "error" in rig.wait("call/rejected")

    assert rig.stop_agent() == 0
    offline = rig.wait("online", lambda b: b.get("online") is False)
    assert offline == {"online": False} or offline["online"] is False


def _rig(tmp_path, request, **config) -> Rig:
    r = Rig(tmp_path, **config)
    request.addfinalizer(r.down)
    return r


ALARM_LED = 12


def test_an_emergency_button_held_while_the_unit_starts_raises_the_alarm(tmp_path, request):
    # A rider holds the button through a reboot (a crash cut the power): the hold counts
    # from the moment the agent's panel is up.
    rig = _rig(tmp_path, request, overrides={"panel": {"emergency_hold_s": 1.0, "emergency_cancel_s": 1.0}})
    rig.gpio.press(PINS["emergency"])
    rig.start_agent()
    pending = rig.wait("alarm", lambda b: b["state"] == "pending", timeout=15)
    rig.gpio.release(PINS["emergency"])
    rig.wait("alarm", lambda b: b["state"] == "active" and b["id"] == pending["id"])


def test_emergency_is_held_then_cleared_by_dispatch_only(tmp_path, request):
    rig = _rig(tmp_path, request, overrides={"panel": {"emergency_hold_s": 1.0, "emergency_cancel_s": 1.0}})
    rig.start_agent()
    rig.wait("status", lambda b: b["status"] == "available")
    # A bump is not an alarm.
    rig.gpio.hold(PINS["emergency"], 0.3)
    # Held long enough: pending at once (the officer may still cancel), then active.
    rig.gpio.hold(PINS["emergency"], 1.3)
    pending = rig.wait("alarm", lambda b: b["state"] == "pending")
    assert pending["active"] is True and pending["fix"]["mode"] in (1, 2, 3)
    assert [b["state"] for b in rig.messages("alarm")][0] == "pending", "the bump raised an alarm"
    rig.wait("alarm", lambda b: b["state"] == "active")
    rig.wait("status", lambda b: b["emergency"] is True)
    assert rig.gpio.wait_for_level(ALARM_LED, 1, 5.0)
    # The crew cannot clear it; dispatch acknowledges, then clears.
    rig.gpio.hold(PINS["ack"], 0.1)
    rig.publish("alarm/ack", b"")
    rig.wait("alarm", lambda b: b["state"] == "acknowledged")
    rig.publish("alarm/clear", json.dumps({"id": pending["id"]}).encode())
    cleared = rig.wait("alarm", lambda b: b["state"] == "cleared")
    assert cleared["active"] is False
    rig.wait("status", lambda b: b["emergency"] is False)
    assert [b["state"] for b in rig.messages("alarm")] == ["pending", "active", "acknowledged", "cleared"]


def test_status_and_seq_survive_a_restart_and_nothing_is_lost_in_a_broker_outage(tmp_path, request):
    rig = _rig(tmp_path, request)  # the rig's broker keeps sessions and queued messages, as a fleet's does
    rig.start_agent()
    rig.wait("telemetry", lambda b: b["seq"] >= 2)
    rig.gpio.hold(PINS["en_route"], 0.1)
    rig.wait("status", lambda b: b["status"] == "en_route")
    # The broker goes away for a few seconds; reports go on being made.
    rig.broker.stop()
    time_down = time.monotonic()
    wait_until(lambda: time.monotonic() - time_down > 4, 10, "outage")
    rig.broker.start()
    rig.wait("telemetry/backlog", timeout=20)
    # A restart of the agent: status kept, seq never reused.
    assert rig.stop_agent() == 0
    before = max(b["seq"] for b in rig.messages("telemetry") + rig.messages("telemetry/backlog"))
    rig.start_and_wait_online()
    assert rig.wait("status")["status"] == "en_route"
    rig.wait("telemetry", lambda b: b["seq"] > before + 2, timeout=20)
    assert rig.stop_agent() == 0
    reports = rig.messages("telemetry") + rig.messages("telemetry/backlog")
    # QoS 1 is at-least-once: a report may arrive twice (a PUBACK lost with the broker), but
    # one seq is always one report, never reused for another.
    by_seq: dict[int, set[str]] = {}
    for b in reports:
        by_seq.setdefault(b["seq"], set()).add(b["ts"])
    assert all(len(stamps) == 1 for stamps in by_seq.values()), "a seq was used for two reports"
    seqs = sorted(by_seq)
    missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    assert missing == [], f"reports lost: {missing}"


def _push(rig: Rig, request: dict) -> dict:
    rig.publish("config/set", json.dumps(request).encode())
    return rig.wait("config/result", lambda b: b["id"] == request["id"])


def test_remote_config_push_is_validated_applied_and_rolled_back_when_the_broker_is_unreachable(tmp_path, request):
    rig = _rig(tmp_path, request, overrides={"security": {"rollback_timeout_s": 10}})
    rig.start_agent()
    rig.wait("config/current", lambda b: b["version"] == 0)
    # Invalid: field-level errors, nothing changes.
    bad = _push(rig, {"id": "r1", "version": 1, "config": {"telemetry": {"rate_hz": "fast", "colour": 1}}})
    assert bad["ok"] is False and {e["loc"] for e in bad["errors"]} >= {"config.telemetry.rate_hz"}
    refused = _push(rig, {"id": "r2", "version": 1, "config": {"unit": {"id": "OTHER"}}})
    assert refused["ok"] is False and refused["errors"][0]["loc"].startswith("config.unit.id")
    # Valid and hot: 2 Hz reports without a restart.
    ok = _push(rig, {"id": "r3", "version": 1, "config": {"telemetry": {"rate_hz": 2.0}}})
    assert ok["time_source"] in ("system", "gnss", "system_unsynced") and ok.pop("ts") and ok.pop("time_source")
    assert ok == {"id": "r3", "ok": True, "version": 1, "errors": [], "restart_required": False}
    current = rig.wait("config/current", lambda b: b["version"] == 1)
    assert current["config"]["telemetry"]["rate_hz"] == 2.0 and current["config"]["mqtt"]["password"] in (None, "***")
    # The rate, read from the reports' own timestamps (the agent's clock, not this busy test
    # machine's) once they come from the receiver: before the first fix, ts is the unsynchronised
    # system clock, and the step to GNSS time is no part of the rate; the first slots after the
    # change are not either. Ten periods, so both ends are the same kind of slot (one served by a
    # fix, the next by the timer).
    t0 = rig.wait("telemetry", lambda b: b["time_source"] == "gnss", timeout=20)["seq"] + 4
    rig.wait("telemetry", lambda b: b["seq"] >= t0 + 10, timeout=20)
    window = {b["seq"]: b for b in rig.messages("telemetry") if t0 <= b["seq"] <= t0 + 10}
    stamps = [dt.datetime.fromisoformat(window[seq]["ts"].replace("Z", "+00:00")) for seq in sorted(window)]
    seen = [(seq, window[seq]["ts"], window[seq]["time_source"]) for seq in sorted(window)]
    assert len(stamps) == 11 and (stamps[-1] - stamps[0]).total_seconds() == pytest.approx(5.0, abs=0.3), \
        f"not 2 Hz: {seen}"
    # A broker change that works: answered once the broker has accepted the unit with it.
    safe = _push(rig, {"id": "r3b", "version": 2, "config": {"mqtt": {"keepalive_s": 20}}})
    assert safe["ok"] is True and safe["version"] == 2
    # A restart keeps the pushed version.
    assert rig.stop_agent() == 0
    rig.start_and_wait_online()
    current = rig.wait("config/current", lambda b: b["version"] == 2 and b["config"]["mqtt"]["keepalive_s"] == 20)
    assert rig.messages("online")[-1]["config_version"] == 2
    # A broker the unit cannot reach: rolled back by itself, and the admin is told.
    dead = {"id": "r4", "version": 3, "config": {"mqtt": {"port": free_port()}}}
    rig.publish("config/set", json.dumps(dead).encode())
    result = rig.wait("config/result", lambda b: b["id"] == "r4", timeout=40)
    assert result["ok"] is False and "rolled back to version 2" in result["errors"][0]["msg"]
    back = rig.wait("config/current", lambda b: b["version"] == 2 and b["config"]["mqtt"]["port"] == rig.broker.port)
    assert back["hash"] == current["hash"]
    # The rolled-back version cannot be replayed.
    again = _push(rig, dict(dead, id="r5"))
    assert again["ok"] is False


def test_status_command_and_gnss_unplug(tmp_path, request):
    rig = _rig(tmp_path, request)
    rig.start_agent()
    rig.wait("telemetry", lambda b: b["fix"]["mode"] >= 2, timeout=20)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RUNTIME_DIRECTORY", None)

    def status() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agent", "status", "--json", "--config", str(rig.config_path)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)

    wait_until(lambda: status().returncode == 0, 10, "status file")
    report = json.loads(status().stdout)
    assert report["unit"] == UNIT and report["link"]["online"] is True and report["gnss"]["sentences_ok"] > 0
    # The receiver's cable comes out: reports go on, saying there is no fix, then it comes back.
    rig.gnss.unplug()
    lost = rig.wait("telemetry", lambda b: b["fix"]["mode"] == 1, timeout=10)
    assert lost["fix"]["age"] is None or lost["fix"]["age"] >= 0
    rig.gnss.replug()
    back = rig.wait("telemetry", lambda b: b["seq"] > lost["seq"] and b["fix"]["mode"] >= 2, timeout=20)
    assert back["fix"]["age"] < 1.5
    assert rig.stop_agent() == 0
    assert status().returncode == 1  # stopped: no status file


@pytest.mark.browser
def test_car_touchscreen_shows_the_call_and_a_touch_accepts_it(tmp_path, request, browser):
    ui_port = free_port()
    rig = _rig(tmp_path, request, ui_port=ui_port)
    rig.start_agent()
    rig.wait("status", lambda b: b["status"] == "available")
    context = browser.new_context(viewport={"width": 800, "height": 480})
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{ui_port}/")
        call = {"id": "C-7", "action": "new", "priority": 2, "nature": "حادث سير", "address": "Rue 12, Kénitra",
                "location": {"lat": 34.255, "lon": -6.59}, "created": "2026-11-25T10:00:00Z"}
        rig.publish("call", json.dumps(call, ensure_ascii=False).encode())
        page.locator("#takeover .nature").filter(has_text="حادث سير").wait_for(timeout=10_000)
        rig.wait("call/response", lambda b: b["id"] == "C-7" and b["response"] == "received")
        page.locator("#btn-accept").click()
        rig.wait("call/response", lambda b: b["id"] == "C-7" and b["response"] == "accepted")
        page.locator("#takeover").wait_for(state="hidden", timeout=10_000)
        # A status touch is the same event as the panel button.
        page.locator("#statuses button", has_text="route").first.click()
        rig.wait("status", lambda b: b["status"] == "en_route")
        rig.wait("call/response", lambda b: b["id"] == "C-7" and b["response"] == "en_route")
        # Dispatch updates the address: the card follows; a re-delivery changes nothing.
        update = {"id": "C-7", "action": "update", "address": "Bd Hassan II, Kénitra"}
        rig.publish("call", json.dumps(update).encode())
        rig.publish("call", json.dumps(call, ensure_ascii=False).encode())
        page.locator("#call .address, #call [class*=address]").filter(has_text="Hassan II").first.wait_for(
            timeout=10_000)
        # The call survives a restart of the agent; the page reconnects by itself.
        assert rig.stop_agent() == 0
        page.locator("#app.offline").wait_for(timeout=15_000)
        rig.start_and_wait_online()
        page.locator("#app:not(.offline)").wait_for(timeout=15_000)
        page.locator("#call").filter(has_text="Hassan II").wait_for(timeout=10_000)
        # Dispatch cancels: the card goes.
        rig.publish("call", json.dumps({"id": "C-7", "action": "cancel"}).encode())
        page.locator("#call").wait_for(state="hidden", timeout=10_000)
        responses = [b["response"] for b in rig.messages("call/response") if b["id"] == "C-7"]
        assert responses.count("received") == 1, responses
    finally:
        context.close()
