"""The runtime in-process on gpiozero MockFactory pins, with a real Mosquitto subscriber.

The panel as the rider uses it: presses (clean and bouncing), refused presses,
the emergency hold, cancel window, dispatch clear, and a restart while the
alarm is active; checked on the broker and on the output pins.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.runtime import Runtime
from tests.support.broker import Broker, Recorder, wait_until

UNIT = "KEN-M-03"
BUZZER, ALARM_LED, GREEN, BLUE = 18, 12, 27, 22


def write_config(tmp: Path, broker: Broker) -> Path:
    path = tmp / "agent.toml"
    path.write_text(f"""
[unit]
id = "{UNIT}"
kind = "motorcycle"
[gnss]
port = "loop://"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[storage]
state_dir = "{tmp / 'state'}"
runtime_dir = "{tmp / 'run'}"
[gpio]
factory = "mock"
[panel]
emergency_hold_s = 0.6
emergency_cancel_s = 0.8
[display]
kind = "none"
""")
    return path


class Panel:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.broker = Broker(tmp / "broker").start()
        self.rec = Recorder(self.broker, topics=(f"umps/{UNIT}/#",)).start()
        self.config = write_config(tmp, self.broker)
        self.factory: MockFactory | None = None
        self.rt: Runtime | None = None

    def start(self) -> None:
        self.factory = MockFactory()
        self.rt = Runtime(self.config, pin_factory=self.factory)
        self.rt.start()
        self.wait("online", lambda b: b.get("online") is True)

    def stop(self) -> None:
        if self.rt is not None:
            self.rt.stop()
            self.rt = None
        if self.factory is not None:
            self.factory.close()
            self.factory = None

    def press(self, pin: int, hold: float = 0.05) -> None:
        p = self.factory.pin(pin)
        p.drive_low()
        # The adapter times the hold on its clock; the button stays down this long.
        deadline = time.monotonic() + hold
        wait_until(lambda: time.monotonic() >= deadline, hold + 1, "hold")
        p.drive_high()

    def bodies(self, topic: str) -> list[dict]:
        return [json.loads(m.payload) for m in self.rec.on(f"umps/{UNIT}/{topic}") if m.payload]

    def wait(self, topic: str, predicate=lambda b: True, timeout: float = 5.0) -> dict:
        return self.rec.wait_json(f"umps/{UNIT}/{topic}", predicate, timeout)

    def pin_went(self, pin: int, level: bool, timeout: float = 3.0) -> bool:
        try:
            wait_until(lambda: any(s.state == level for s in self.factory.pin(pin).states), timeout)
            return True
        except AssertionError:
            return False

    def close(self) -> None:
        self.stop()
        self.rec.stop()
        self.broker.stop()


@pytest.fixture
def panel(tmp_path):
    p = Panel(tmp_path)
    yield p
    p.close()


def test_press_publishes_status_once_even_when_the_contact_bounces(panel):
    panel.start()
    panel.wait("status", lambda b: b["status"] == "available")
    pin = panel.factory.pin(6)  # en_route
    for _ in range(4):
        pin.drive_low()
        pin.drive_high()
    pin.drive_low()
    panel.wait("status", lambda b: b["status"] == "en_route")
    pin.drive_high()
    panel.wait("telemetry", lambda b: b["status"] == "en_route")
    assert [b["status"] for b in panel.bodies("status")].count("en_route") == 1
    assert panel.pin_went(BLUE, True), "the status LED does not show en route"


def test_a_refused_press_is_answered_on_the_buzzer_and_publishes_nothing(panel):
    panel.start()
    panel.wait("status", lambda b: b["status"] == "available")
    panel.press(5)  # available again: not a change
    assert panel.pin_went(BUZZER, True), "no buzzer answer to a refused press"
    # The refusal is counted by the core; no status message goes out for it.
    wait_until(lambda: panel.rt.unit.counters.presses_refused == 1, 3, "refusal counted")
    assert [b["status"] for b in panel.bodies("status")] == ["available"]


def test_emergency_hold_cancel_window_clear_and_restart_while_active(panel):
    panel.start()
    panel.wait("status", lambda b: b["status"] == "available")
    # Raised, then cancelled inside the window with ack.
    panel.press(20, hold=0.8)
    first = panel.wait("alarm", lambda b: b["state"] == "pending")
    panel.press(16)
    panel.wait("alarm", lambda b: b["state"] == "cancelled" and b["id"] == first["id"])
    # Raised again and left: active after the window, alarm LED on.
    panel.press(20, hold=0.8)
    second = panel.wait("alarm", lambda b: b["state"] == "active" and b["id"] != first["id"])
    assert panel.pin_went(ALARM_LED, True)
    # Power cut: the alarm comes back with the unit, still active.
    panel.stop()
    panel.start()
    panel.wait("status", lambda b: b["emergency"] is True)
    assert panel.rt.unit.emergency.state.value == "active"
    # Only dispatch clears it.
    panel.rec.publish(f"umps/{UNIT}/alarm/clear", json.dumps({"id": second["id"]}).encode())
    panel.wait("alarm", lambda b: b["state"] == "cleared" and b["id"] == second["id"])
    panel.wait("status", lambda b: b["emergency"] is False)


@pytest.mark.parametrize("stored", [b"\x00\x01garbage", b"[1, 2]", b'{"status": "en_route", "emergency": {"state": "bogus"}}'])
def test_a_damaged_state_file_means_defaults_not_a_dead_unit(panel, stored, caplog):
    state_dir = panel.tmp / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "unit-state.json").write_bytes(stored)
    panel.start()
    panel.wait("status", lambda b: b["status"] in ("available", "en_route") and b["emergency"] is False)
    panel.wait("telemetry")
    assert "stored unit state" in caplog.text


def test_systemd_sees_ready_status_and_watchdog_pings_that_stop_when_the_core_hangs(panel, monkeypatch):
    import socket
    import threading

    import agent.watchdog_rules as watchdog_rules
    from agent.core.events import MessageReceived

    sock_path = str(panel.tmp / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    datagrams: list[tuple[float, str]] = []
    done = threading.Event()

    def listen():
        while not done.is_set():
            try:
                datagrams.append((time.monotonic(), sock.recv(4096).decode()))
            except socket.timeout:
                pass

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    monkeypatch.setenv("NOTIFY_SOCKET", sock_path)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setattr(watchdog_rules, "HEARTBEAT_MAX_AGE_S", 1.5)
    gate = threading.Event()
    try:
        panel.start()
        handle = panel.rt._handle

        def maybe_hang(event):
            if isinstance(event, MessageReceived) and event.topic == "hang":
                gate.wait(30)
            return handle(event)

        panel.rt._handle = maybe_hang

        def seen(text: str, since: float = 0.0) -> bool:
            return any(text in d for t, d in datagrams if t >= since)

        wait_until(lambda: seen("READY=1") and seen("WATCHDOG=1"), 5, "ready and pings")
        assert any(d.startswith("STATUS=") or "\nSTATUS=" in d for _, d in datagrams)
        panel.rt.post(MessageReceived("hang", b"", time.monotonic()))
        wait_until(lambda: seen("unhealthy"), 5, "unhealthy status line")
        stopped_at = time.monotonic()
        # An absence cannot be awaited: let three ping periods pass, none may have come.
        wait_until(lambda: time.monotonic() - stopped_at > 0.6, 2, "three ping periods")
        assert not seen("WATCHDOG=1", stopped_at)
        gate.set()
        resumed = time.monotonic()
        wait_until(lambda: seen("WATCHDOG=1", resumed), 5, "pings resume")
    finally:
        gate.set()
        done.set()
        listener.join(2)
        sock.close()


def test_a_call_is_in_the_stored_state_before_its_received_receipt_can_go_out(panel):
    """A `received` tells dispatch the unit has the call: a power cut right after it must not lose it."""
    panel.start()
    uplink = panel.rt.parts.uplink
    state_file = panel.tmp / "state" / "unit-state.json"
    stored_at_receipt: list[bool] = []
    submit = uplink.submit

    def checking_submit(publish):
        body = json.loads(publish.payload) if publish.topic.endswith("call/response") else {}
        if body.get("response") == "received":
            stored = json.loads(state_file.read_text()) if state_file.exists() else {}
            stored_at_receipt.append(body["id"] in json.dumps(stored.get("calls")))
        return submit(publish)

    uplink.submit = checking_submit
    call = {"id": "C-DURABLE-1", "action": "new", "priority": 1, "nature": "Accident", "address": "Avenue Mohammed V",
            "location": {"lat": 34.2655, "lon": -6.575}, "created": "2026-01-01T00:00:00Z"}
    panel.rec.publish(f"umps/{UNIT}/call", json.dumps(call).encode(), qos=1)
    panel.wait("call/response", lambda b: b["id"] == "C-DURABLE-1" and b["response"] == "received")
    assert stored_at_receipt == [True]
