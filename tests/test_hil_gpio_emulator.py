"""The pigpio-protocol GPIO emulator, driven by gpiozero and pigpio themselves.

Every test talks to the emulator over a real loopback socket with the real
client libraries an agent would use: gpiozero's ``PiGPIOFactory`` (on top of
the ``pigpio`` module) or ``pigpio.pi`` directly, or raw protocol bytes.
Nothing sleeps to wait for a result: edges are awaited on events, levels with
``wait_for_level``.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pigpio
import pytest
from gpiozero import LED, PWMLED, Button, Buzzer, DigitalInputDevice
from gpiozero.pins.pigpio import PiGPIOFactory

from hil import gpio_emulator as ge
from hil.gpio_emulator import PigpioEmulator

BUTTON = 17
BOUNCY = 23
LED_PIN = 27
BUZZER_PIN = 22
PWM_PIN = 18
# The unit's config.txt pulls these up at boot, as the agent's buttons need.
BOOT_PULLS = {BUTTON: "up", BOUNCY: "up"}


@pytest.fixture()
def emu():
    emulator = PigpioEmulator(boot_pulls=BOOT_PULLS).start()
    yield emulator
    emulator.stop()


@pytest.fixture()
def factory(emu: PigpioEmulator):
    f = PiGPIOFactory(host="127.0.0.1", port=emu.port)
    yield f
    f.close()  # before the emulator stops: see the module docstring


class Recorder:
    """Counts callback calls and lets a test wait for the n-th one."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self._cond = threading.Condition()

    def record(self, *args) -> None:
        with self._cond:
            self.calls.append(time.monotonic())
            self._cond.notify_all()

    def wait(self, count: int = 1, *, timeout: float = 2.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.calls) >= count, timeout)


# ------------------------------------------------------------- with gpiozero


def test_factory_sees_a_raspberry_pi_4(factory: PiGPIOFactory) -> None:
    assert factory.board_info.model == "4B"
    assert factory.board_info.soc == "BCM2711"


def test_press_and_release_fire_gpiozero_events(emu: PigpioEmulator, factory: PiGPIOFactory) -> None:
    button = Button(BUTTON, pin_factory=factory)
    pressed, released = Recorder(), Recorder()
    button.when_pressed, button.when_released = pressed.record, released.record
    assert emu.mode(BUTTON) == "input" and emu.pull(BUTTON) == "up"
    assert not button.is_pressed and emu.level(BUTTON) == 1
    emu.press(BUTTON)
    assert pressed.wait(timeout=1)
    assert button.is_pressed
    emu.release(BUTTON)
    assert released.wait(timeout=1)
    assert not button.is_pressed and len(pressed.calls) == 1
    button.close()


def test_hold_fires_when_held(emu: PigpioEmulator, factory: PiGPIOFactory) -> None:
    button = Button(BUTTON, pin_factory=factory, hold_time=0.2)
    held, released = Recorder(), Recorder()
    button.when_held, button.when_released = held.record, released.record
    emu.hold(BUTTON, 0.5, block=False)
    assert held.wait(timeout=1)
    assert released.wait(timeout=2)
    assert released.calls[0] - held.calls[0] > 0.1
    button.close()


def test_bounce_with_bounce_time_is_one_press(emu: PigpioEmulator, factory: PiGPIOFactory) -> None:
    button = Button(BOUNCY, pin_factory=factory, bounce_time=0.03)
    assert emu.glitch_filter_us(BOUNCY) == 30_000  # gpiozero's bounce_time is pigpio's glitch filter
    pressed, released = Recorder(), Recorder()
    button.when_pressed, button.when_released = pressed.record, released.record
    emu.bounce(BOUNCY, n=7, interval=0.002)
    assert pressed.wait(timeout=1)
    emu.release(BOUNCY)
    # The release is reported after any press the filter let through.
    assert released.wait(timeout=1)
    assert len(pressed.calls) == 1 and len(released.calls) == 1
    button.close()


def test_bounce_without_bounce_time_is_several_presses(emu: PigpioEmulator, factory: PiGPIOFactory) -> None:
    button = Button(BOUNCY, pin_factory=factory)
    pressed, released = Recorder(), Recorder()
    button.when_pressed, button.when_released = pressed.record, released.record
    emu.bounce(BOUNCY, n=7, interval=0.002)  # closes 4 times, opens 3 times
    emu.release(BOUNCY)
    assert released.wait(4)  # every opening is an edge without a filter
    assert len(pressed.calls) == 4
    button.close()


def test_led_and_buzzer_outputs_are_read_with_history(emu: PigpioEmulator, factory: PiGPIOFactory) -> None:
    led = LED(LED_PIN, pin_factory=factory)
    buzzer = Buzzer(BUZZER_PIN, pin_factory=factory)
    assert emu.mode(LED_PIN) == "output" and emu.level(LED_PIN) == 0
    led.on()
    assert emu.level(LED_PIN) == 1  # the write's reply comes after the change
    buzzer.on()
    assert emu.wait_for_level(BUZZER_PIN, 1, timeout=1)
    led.off()
    buzzer.off()
    levels = [(c.level, c.by) for c in emu.history(LED_PIN)]
    assert levels[-2:] == [(1, "agent"), (0, "agent")]
    times = [c.mono for c in emu.history(LED_PIN)]
    assert times == sorted(times)
    assert [c.level for c in emu.history(BUZZER_PIN)][-2:] == [1, 0]
    led.close()
    buzzer.close()


def test_led_blink_is_timed(emu: PigpioEmulator, factory: PiGPIOFactory) -> None:
    led = LED(LED_PIN, pin_factory=factory)
    led.blink(on_time=0.05, off_time=0.05, n=3, background=True)
    assert emu.wait_for(lambda e: sum(1 for c in e.history(LED_PIN) if c.level == 1) >= 3, timeout=2)
    assert emu.wait_for_level(LED_PIN, 0, timeout=1)
    ons = [c for c in emu.history(LED_PIN) if c.level == 1]
    gaps = [b.mono - a.mono for a, b in zip(ons, ons[1:])]
    assert all(0.07 < g < 0.3 for g in gaps)
    ticks = [c.tick for c in ons]
    assert all(0.07e6 < ((b - a) & 0xFFFFFFFF) < 0.3e6 for a, b in zip(ticks, ticks[1:]))
    led.close()


def test_pwm_led_duty_and_frequency(emu: PigpioEmulator, factory: PiGPIOFactory) -> None:
    led = PWMLED(PWM_PIN, pin_factory=factory, frequency=100)
    assert emu.duty(PWM_PIN) == 0.0 and emu.frequency(PWM_PIN) == 100
    led.value = 0.25
    assert emu.duty(PWM_PIN) == pytest.approx(0.25) and emu.level(PWM_PIN) == 1
    assert led.value == pytest.approx(0.25)  # read back through GDC / PRG
    led.off()
    assert emu.duty(PWM_PIN) == 0.0 and emu.level(PWM_PIN) == 0
    led.close()
    assert emu.duty(PWM_PIN) is None and emu.mode(PWM_PIN) == "input"


def test_release_opens_the_contact_so_the_pull_decides(emu: PigpioEmulator, factory: PiGPIOFactory) -> None:
    # A button wired to 3.3 V on a pin pulled down: released reads 0.
    active_high = Button(5, pin_factory=factory, pull_up=False)
    emu.press(5, active_low=False)
    assert active_high.is_pressed
    emu.release(5)
    assert not active_high.is_pressed and emu.level(5) == 0
    active_high.close()
    # A floating input (no pull) reads low when nothing drives it.
    floating = DigitalInputDevice(6, pin_factory=factory, pull_up=None, active_state=True)
    assert emu.pull(6) == "floating" and not floating.value
    emu.set_input(6, 1)
    assert floating.value
    floating.close()


def test_first_press_on_a_pin_that_booted_pulled_down_is_lost_like_real_pigpio() -> None:
    # GPIO 17 boots pulled down; the pigpio client learned "low" when it
    # connected, so the first high-to-low edge changes nothing it can see
    # (joan2937/pigpio#385). With the boot pull set as the agent needs, it is.
    for boot_pulls, presses_seen in ((None, 1), ({BUTTON: "up"}, 2)):
        emu = PigpioEmulator(boot_pulls=boot_pulls).start()
        factory = PiGPIOFactory(host="127.0.0.1", port=emu.port)
        button = Button(BUTTON, pin_factory=factory)
        pressed = Recorder()
        button.when_pressed = pressed.record
        emu.press(BUTTON)
        emu.release(BUTTON)
        emu.press(BUTTON)
        assert pressed.wait(presses_seen, timeout=1)
        emu.release(BUTTON)
        assert emu.wait_for_level(BUTTON, 1, timeout=1) and not button.is_pressed
        assert len(pressed.calls) == presses_seen
        button.close()
        factory.close()
        emu.stop()


def test_the_next_agent_sees_its_first_press_once_the_pulls_are_set_again() -> None:
    # An agent that stops leaves its inputs floating (gpiozero's close); the rig sets the
    # power-on pulls again before the next agent connects, as the first one found them.
    emu = PigpioEmulator(boot_pulls={BUTTON: "up"}).start()
    try:
        first = PiGPIOFactory(host="127.0.0.1", port=emu.port)
        Button(BUTTON, pin_factory=first).close()
        first.close()
        assert emu.pull(BUTTON) == "floating"
        emu.set_pulls({BUTTON: "up"})
        assert emu.pull(BUTTON) == "up" and emu.level(BUTTON) == 1
        factory = PiGPIOFactory(host="127.0.0.1", port=emu.port)
        button = Button(BUTTON, pin_factory=factory)
        pressed = Recorder()
        button.when_pressed = pressed.record
        emu.press(BUTTON)
        assert pressed.wait(1, timeout=1)
        emu.release(BUTTON)
        button.close()
        factory.close()
    finally:
        emu.stop()
    with pytest.raises(ValueError, match="must be one of"):
        emu.set_pulls({BUTTON: "sideways"})


def test_factory_closes_cleanly(emu: PigpioEmulator) -> None:
    factory = PiGPIOFactory(host="127.0.0.1", port=emu.port)
    button = Button(BUTTON, pin_factory=factory)
    button.when_pressed = lambda: None
    assert emu.wait_for(lambda e: e.clients == 2, timeout=1)  # control + notifications
    button.close()
    factory.close()
    assert emu.wait_for(lambda e: e.clients == 0, timeout=2)
    assert emu.stats["unknown"] == 0
    used = set(emu.commands)
    assert {ge.CMD_HWVER, ge.CMD_NOIB, ge.CMD_NB, ge.CMD_NC, ge.CMD_MODES, ge.CMD_PUD, ge.CMD_FG} <= used


# ------------------------------------------------------------ with pigpio


@pytest.fixture()
def pi(emu: PigpioEmulator):
    client = pigpio.pi("127.0.0.1", emu.port, show_errors=False)
    assert client.connected
    yield client
    client.stop()


def test_glitch_filter_hides_short_pulses_and_reports_when_steady(emu: PigpioEmulator, pi: pigpio.pi) -> None:
    edges: list[tuple[int, int]] = []
    got = threading.Event()

    def callback(gpio: int, level: int, tick: int) -> None:
        edges.append((level, tick))
        got.set()

    pi.set_pull_up_down(24, pigpio.PUD_DOWN)
    pi.set_glitch_filter(24, 50_000)
    cb = pi.callback(24, pigpio.EITHER_EDGE, callback)
    start = pi.get_current_tick()
    emu.set_input(24, 1)
    emu.set_input(24, 0)  # a pulse far shorter than 50 ms: never reported
    emu.set_input(24, 1)
    changed = emu.history(24)[-1].tick
    assert got.wait(1)
    assert edges[0][0] == 1
    # Reported with the tick at which the level had been steady for 50 ms.
    assert ((edges[0][1] - changed) & 0xFFFFFFFF) == 50_000
    assert ((edges[0][1] - start) & 0xFFFFFFFF) >= 50_000
    assert pi.read(24) == 1  # reads are not filtered
    cb.cancel()
    assert len(edges) == 1


def test_rising_edge_callbacks_and_bank_reads(emu: PigpioEmulator, pi: pigpio.pi) -> None:
    rises = Recorder()
    pi.set_pull_up_down(25, pigpio.PUD_DOWN)
    cb = pi.callback(25, pigpio.RISING_EDGE, rises.record)
    emu.set_input(25, 1)
    assert rises.wait(timeout=1)
    assert pi.read_bank_1() >> 25 & 1 == 1
    emu.set_input(25, 0)
    emu.set_input(25, 1)
    assert rises.wait(2)
    cb.cancel()
    pi.set_mode(40, pigpio.OUTPUT)
    pi.set_bank_2(1 << (40 - 32))
    assert emu.level(40) == 1 and pi.read_bank_2() >> 8 & 1 == 1
    pi.clear_bank_2(1 << (40 - 32))
    assert emu.level(40) == 0


def test_events_reach_event_callbacks(emu: PigpioEmulator, pi: pigpio.pi) -> None:
    seen = Recorder()
    cb = pi.event_callback(3, seen.record)
    pi.event_trigger(3)
    assert seen.wait(timeout=1)
    emu.trigger_event(3)
    assert seen.wait(2)
    cb.cancel()


def test_pwm_frequencies_snap_to_pigpio_table(emu: PigpioEmulator, pi: pigpio.pi) -> None:
    assert pi.set_PWM_frequency(12, 0) == 10
    assert pi.set_PWM_frequency(12, 100_000) == 8000
    assert pi.set_PWM_frequency(12, 990) == 1000
    assert pi.get_PWM_range(12) == 255 and pi.get_PWM_real_range(12) == 200
    with pytest.raises(pigpio.error):
        pi.get_PWM_dutycycle(12)  # PWM not started yet
    pi.set_PWM_dutycycle(12, 51)
    assert emu.duty(12) == pytest.approx(0.2) and pi.get_PWM_dutycycle(12) == 51
    with pytest.raises(pigpio.error):
        pi.set_PWM_dutycycle(12, 256)
    pi.write(12, 1)  # a write stops PWM
    assert emu.duty(12) is None and emu.level(12) == 1


def test_bad_arguments_get_pigpio_errors(pi: pigpio.pi) -> None:
    with pytest.raises(pigpio.error, match="GPIO not 0-53"):
        pi.set_mode(60, pigpio.INPUT)
    with pytest.raises(pigpio.error, match="mode not 0-7"):
        pi.set_mode(4, 9)
    with pytest.raises(pigpio.error, match="GPIO not 0-31"):
        pi.set_glitch_filter(40, 100)
    with pytest.raises(pigpio.error, match="level not 0-1"):
        pi.write(4, 2)
    assert pi.get_hardware_revision() == ge.PI4B_REVISION
    assert pi.get_pigpio_version() == ge.PIGPIO_VERSION
    t1 = pi.get_current_tick()
    t2 = pi.get_current_tick()
    assert ((t2 - t1) & 0xFFFFFFFF) < 1_000_000


# ------------------------------------------------------------ raw protocol


def _command(sock: socket.socket, cmd: int, p1: int = 0, p2: int = 0, ext: bytes = b"") -> int:
    sock.sendall(struct.pack("<IIII", cmd, p1, p2, len(ext)) + ext)
    reply = b""
    while len(reply) < 16:
        chunk = sock.recv(16 - len(reply))
        assert chunk, "the emulator closed the connection"
        reply += chunk
    r_cmd, r_p1, r_p2, res = struct.unpack("<IIII", reply)
    assert (r_cmd, r_p1, r_p2) == (cmd, p1, p2)
    return res - (1 << 32) if res & 0x80000000 else res


def test_raw_protocol_extensions_and_unknown_commands(emu: PigpioEmulator) -> None:
    with socket.create_connection(("127.0.0.1", emu.port), timeout=2) as sock:
        assert _command(sock, ge.CMD_MODES, 4, ge.OUTPUT) == 0
        assert _command(sock, ge.CMD_MODEG, 4) == ge.OUTPUT
        # An extension is consumed whole: the next command still lines up.
        assert _command(sock, 110, 0, 0, ext=b"ls\x00-l\x00\x00\x00") == ge.PI_UNKNOWN_COMMAND
        assert _command(sock, ge.CMD_WRITE, 4, 1) == 0
        assert _command(sock, ge.CMD_READ, 4) == 1
        assert _command(sock, ge.CMD_NB, 31, 1) == ge.PI_BAD_HANDLE
    assert emu.stats["unknown"] == 1 and emu.level(4) == 1


def test_raw_notifications_report_levels(emu: PigpioEmulator) -> None:
    with socket.create_connection(("127.0.0.1", emu.port), timeout=2) as ctl, \
            socket.create_connection(("127.0.0.1", emu.port), timeout=2) as ntf:
        handle = _command(ntf, ge.CMD_NOIB)
        assert handle >= 0
        assert _command(ctl, ge.CMD_PUD, 20, ge.PUD_DOWN) == 0
        assert _command(ctl, ge.CMD_NB, handle, 1 << 20) == 0
        emu.set_input(20, 1)
        emu.set_input(21, 1)  # not watched: no report of its own
        emu.set_input(20, 0)
        reports = b""
        while len(reports) < 24:
            reports += ntf.recv(24 - len(reports))
        (s1, f1, t1, l1), (s2, f2, t2, l2) = struct.iter_unpack("<HHII", reports)
        assert (s1, s2) == (0, 1) and f1 == f2 == 0
        assert l1 >> 20 & 1 == 1 and l2 >> 20 & 1 == 0
        assert l2 >> 21 & 1 == 1  # the level word carries the whole bank
        assert ((t2 - t1) & 0xFFFFFFFF) < 1_000_000
        assert _command(ntf, ge.CMD_NC, handle) == 0
        assert _command(ctl, ge.CMD_NB, handle, 1) == ge.PI_BAD_HANDLE


def test_rig_side_refuses_bad_pins_and_levels(emu: PigpioEmulator) -> None:
    with pytest.raises(ValueError):
        emu.press(54)
    with pytest.raises(ValueError):
        emu.set_input(4, 2)
    with pytest.raises(ValueError):
        PigpioEmulator(boot_pulls={4: "sideways"})
