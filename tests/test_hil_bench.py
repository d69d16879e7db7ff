"""Bench mode pieces: the rig's real-pin driver and the NMEA-to-serial forwarder.

``BenchPins`` speaks the pigpio protocol, so the pigpio emulator stands in for
the second Pi's daemon: what the rig drives shows on the emulated pins, what
the "unit" drives on its LED lines arrives in the rig's history. The
forwarder writes into a real pty, read from its master side.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable

import pytest

from hil.bench import BenchPins, SerialForwarder
from hil.gnss_emulator import GnssEmulator
from hil.gpio_emulator import PigpioEmulator

BUTTON, LED = 6, 25


@pytest.fixture()
def emu():
    e = PigpioEmulator(boot_pulls={BUTTON: "up"}).start()
    yield e
    e.stop()


def test_press_drives_low_and_release_lets_the_line_go(emu: PigpioEmulator):
    pins = BenchPins("127.0.0.1", emu.port, read_pins=[LED])
    try:
        assert emu.level(BUTTON) == 1
        pins.press(BUTTON)
        assert emu.wait_for_level(BUTTON, 0, 2.0) and emu.mode(BUTTON) == "output"
        pins.release(BUTTON)
        # High impedance and no pull of the rig's own: a rig pull-down would fight the unit's
        # pull-up on the real wire. (Here the emulator's one pin is both ends, so it floats.)
        assert emu.wait_for(lambda e: e.mode(BUTTON) == "input" and e.pull(BUTTON) == "floating", 2.0)
        pins.hold(BUTTON, 0.2, block=False)
        assert emu.wait_for_level(BUTTON, 0, 2.0)
        assert emu.wait_for(lambda e: e.mode(BUTTON) == "input", 2.0)
    finally:
        pins.stop()


def test_led_edges_of_the_unit_arrive_in_the_history(emu: PigpioEmulator):
    pins = BenchPins("127.0.0.1", emu.port, read_pins=[LED])
    try:
        assert emu.pull(LED) == "down" and [c.level for c in pins.history(LED)] == [0]
        emu.set_input(LED, 1)  # the unit drives its LED line
        assert pins.wait_for_level(LED, 1, 2.0)
        emu.set_input(LED, 0)
        assert pins.wait_for_level(LED, 0, 2.0)
        levels = [c.level for c in pins.history(LED)]
        assert levels == [0, 1, 0]
        times = [c.mono for c in pins.history(LED)]
        assert times == sorted(times)
    finally:
        pins.stop()


def test_no_daemon_is_a_clear_error():
    from hil.broker import free_port

    with pytest.raises(ConnectionError, match="no pigpio daemon"):
        BenchPins("127.0.0.1", free_port(), read_pins=[])


def read_until(fd: int, done: Callable[[bytes], bool], timeout: float) -> bytes:
    """Read ``fd`` (keeping the pty drained) until ``done(everything read)``, or ``timeout``."""
    data = b""
    deadline = time.monotonic() + timeout
    while not done(data):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], min(left, 0.05))
        if ready:
            data += os.read(fd, 4096)
    return data


def test_forwarder_copies_nmea_to_the_serial_device_and_survives_an_unplug():
    master, slave = os.openpty()
    gnss = GnssEmulator(rate_hz=5)
    port = gnss.serve_tcp()
    gnss.start()
    fwd = SerialForwarder(port, os.ttyname(slave), 9600).start()
    try:
        assert b"$GNRMC" in read_until(master, lambda data: b"$GNRMC" in data, 3.0)
        gnss.unplug()
        assert gnss.wait_for(lambda e: not e.plugged, 2.0)
        sent_before_replug = gnss.stats["bytes"]  # nothing is sent while unplugged
        gnss.replug()
        # Only bytes sent after the replug can take the count copied past all that was sent
        # before it: the forwarder reconnected by itself and copies again.
        after = read_until(master, lambda data: fwd.bytes > sent_before_replug and b"$GNGGA" in data, 5.0)
        assert fwd.bytes > sent_before_replug and b"$GNGGA" in after
    finally:
        fwd.stop()
        gnss.stop()
        os.close(master)
        os.close(slave)


def test_a_scenario_against_a_unit_running_its_own_agent(tmp_path, broker):
    """Bench mode end to end: the rig starts no agent; it reads the unit's config and talks on its topics."""
    from hil import agent_proc
    from hil.engine import run_scenario
    from hil.scenario import parse_scenario

    unit_dir = tmp_path / "unit"
    unit_dir.mkdir()
    gnss = GnssEmulator()
    gpio = PigpioEmulator(boot_pulls={p: "up" for p in (5, 6, 13, 16, 19, 20, 21, 26)}).start()
    path = gnss.serve_pty(unit_dir / "gnss0")
    gnss.start()
    data = agent_proc.rig_config(unit_id="KEN-M-07", unit_kind="motorcycle", gnss_port=path, pigpio_port=gpio.port,
                                 mqtt_host=broker.host, mqtt_port=broker.port, workdir=unit_dir, ui_port=1,
                                 prefix="bench")
    config = agent_proc.write_toml(unit_dir / "agent.toml", data)
    unit = agent_proc.AgentProcess(config, unit_dir / "agent.log").start()
    try:
        scenario = parse_scenario("""
[scenario]
name = "bench-call"
duration_s = 3
[[step]]
at = 1
id = "call"
action = "call"
call_id = "C-BENCH-1"
[[step]]
at = 1.5
id = "press"
action = "tap"
button = "ack"
[[expect]]
kind = "message"
after = "call"
topic = "call/response"
match = { id = "C-BENCH-1", response = "received" }
within_ms = 500
""")
        result = run_scenario(scenario, workdir=tmp_path / "rig", broker=broker.address, unit_config=config)
        assert result.error is None, result.error
        assert result.outcomes[0].passed, result.outcomes[0].seen
        assert not (tmp_path / "rig" / "agent.toml").exists()  # the rig generated and started nothing
        press = result.log.action("press")
        assert press is not None and not press.ok and "no GPIO on this bench" in press.detail
        assert unit.exit_code() is None  # the unit's agent was left alone
    finally:
        unit.stop()
        gnss.stop()
        gpio.stop()
