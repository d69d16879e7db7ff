"""The whole agent as a separate process: real Mosquitto, NMEA on a pty, buttons on emulated pins.

The agent runs unmodified (``python -m agent run --config FILE``); only its
config points at the rig: the GNSS emulator's pty, the pigpio-protocol GPIO
emulator, a private broker. Everything is observed from outside, as command
and the crew would: MQTT messages, LED pins, the process's exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.gnss_emulator import GnssEmulator
from hil.gpio_emulator import PigpioEmulator
from tests.support.broker import Broker, Recorder, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
UNIT = "KEN-T-01"
PINS = {"available": 5, "en_route": 6, "on_scene": 13, "busy": 19, "out_of_service": 26, "ack": 16,
        "emergency": 20, "siren": 21}


def agent_config(tmp: Path, broker: Broker, gnss_port: str, pigpio_port: int, *, kind: str = "car",
                 ui_port: int | None = None, extra: str = "") -> Path:
    inputs = "\n".join(f"inputs.{name} = {{ pin = {pin}, bounce_s = 0.01 }}" for name, pin in PINS.items())
    text = f"""
[unit]
id = "{UNIT}"
kind = "{kind}"
[gnss]
port = "{gnss_port}"
silence_timeout_s = 2.0
reopen_max_wait_s = 1.0
[mqtt]
host = "127.0.0.1"
port = {broker.port}
keepalive_s = 10
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[mqtt.tls]
enabled = false
[storage]
state_dir = "{tmp / 'state'}"
runtime_dir = "{tmp / 'run'}"
commit_interval_s = 1.0
[gpio]
factory = "pigpio"
pigpio_port = {pigpio_port}
{inputs}
[ui]
enabled = {"true" if ui_port else "false"}
http_port = {ui_port or 8080}
[display]
kind = "none"
{extra}
"""
    path = tmp / "agent.toml"
    path.write_text(text)
    return path


class Rig:
    """Broker, emulators, a recorder, and the agent process."""

    def __init__(self, tmp: Path, **config):
        self.tmp = tmp
        self.broker = Broker(tmp / "broker").start()
        self.recorder = Recorder(self.broker, topics=(f"umps/{UNIT}/#",)).start()
        self.gnss = GnssEmulator(rate_hz=1)
        self.gnss_path = self.gnss.serve_pty(tmp / "gnss0")
        self.gnss.start()
        self.gpio = PigpioEmulator("127.0.0.1", 0)
        self.gpio.start()
        self.config = agent_config(tmp, self.broker, self.gnss_path, self.gpio.port, **config)
        self.proc: subprocess.Popen | None = None

    def start_agent(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("NOTIFY_SOCKET", None)
        self.log = open(self.tmp / "agent.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(self.config)],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def stop_agent(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(15)
        finally:
            self.log.close()

    def agent_log(self) -> str:
        return (self.tmp / "agent.log").read_text(errors="replace")[-4000:]

    def messages(self, topic: str) -> list[dict]:
        return [json.loads(m.payload) for m in self.recorder.on(f"umps/{UNIT}/{topic}")]

    def wait(self, topic: str, predicate=lambda body: True, timeout: float = 10.0) -> dict:
        full = f"umps/{UNIT}/{topic}"

        def found(msgs):
            return any(m.topic == full and m.payload and predicate(json.loads(m.payload)) for m in msgs)

        try:
            self.recorder.wait_for(found, timeout, what=topic)
        except AssertionError:
            raise AssertionError(f"no matching {topic}; agent log:\n{self.agent_log()}") from None
        return [b for b in self.messages(topic) if predicate(b)][-1]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.recorder.stop()
        self.gnss.stop()
        self.gpio.stop()
        self.broker.stop()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


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
    rig.recorder.publish(f"umps/{UNIT}/call", json.dumps(call).encode())
    rig.wait("call/response", lambda b: b["id"] == "C-1" and b["response"] == "received")
    rig.gpio.hold(PINS["ack"], 0.1)
    rig.wait("call/response", lambda b: b["response"] == "accepted")
    # A broken call is answered, never shown, never fatal.
    rig.recorder.publish(f"umps/{UNIT}/call", b"{not json")
    assert "error" in rig.wait("call/rejected")

    assert rig.stop_agent() == 0
    offline = rig.wait("online", lambda b: b.get("online") is False)
    assert offline == {"online": False} or offline["online"] is False
