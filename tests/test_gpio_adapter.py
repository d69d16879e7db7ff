"""The panel's GPIO adapter on gpiozero MockFactory pins, driven like the physical panel.

Every factory is passed explicitly; nothing here touches gpiozero's global default.
Waits are on the adapter's own conditions or on pin history, with timeouts.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from pathlib import Path

import pytest
from gpiozero import LED
from gpiozero.exc import GPIOPinInUse
from gpiozero.pins.mock import MockFactory

from agent.adapters.gpio import PanelIO, PinFactoryError, make_pin_factory, panel_buttons
from agent.config import GpioConfig, InputPin, OutputPin
from agent.core.emergency import AlarmRaised, Emergency, HoldAborted
from tests.support.unit_rig import alarm_ids
from agent.core.events import ButtonPressed, ButtonReleased, SirenChanged
from agent.core.indicators import Flash, IndicatorView, Pattern, Steady, feedback, indicator_plan
from hil.wait import poll_until

BUTTON_PINS = {"available": 5, "en_route": 6, "on_scene": 13, "busy": 19, "out_of_service": 26,
               "ack": 16, "emergency": 20}
SIREN = 21
RED, GREEN, BLUE = 17, 27, 22
LINK, GNSS, CALL, ALARM, BUZZER = 23, 24, 25, 12, 18
BUTTONS = ["available", "en_route", "on_scene", "busy", "out_of_service", "ack", "emergency"]


def gpio_config(bounce_s: float = 0.0, **changes) -> GpioConfig:
    inputs = {name: InputPin(pin=pin, bounce_s=bounce_s) for name, pin in {**BUTTON_PINS, "siren": SIREN}.items()}
    return GpioConfig(factory="mock", **{"inputs": inputs, **changes})


class Inbox:
    """What the runtime's bounded inbox looks like to the adapter: ``put_nowait``."""

    def __init__(self):
        self.q: queue.Queue = queue.Queue(maxsize=100)

    def post(self, event):
        self.q.put_nowait(event)

    def get(self, timeout: float = 2.0):
        return self.q.get(timeout=timeout)

    def drain(self) -> list:
        items = []
        while True:
            try:
                items.append(self.q.get_nowait())
            except queue.Empty:
                return items


def levels(pin) -> list[bool]:
    return [s.state for s in pin.states]


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.close()


@pytest.fixture
def inbox():
    return Inbox()


def make_panel(factory, inbox, cfg=None, buttons=BUTTONS, **kw) -> PanelIO:
    return PanelIO(cfg or gpio_config(), factory, buttons=buttons, post=inbox.post, **kw)


# ----------------------------------------------------------------- factories


def test_mock_factory_from_config():
    f = make_pin_factory(GpioConfig(factory="mock"))
    try:
        assert isinstance(f, MockFactory)
    finally:
        f.close()


def test_an_unreachable_pigpio_daemon_is_a_clear_bounded_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens on it once closed
    cfg = GpioConfig(factory="pigpio", pigpio_host="127.0.0.1", pigpio_port=port)
    with pytest.raises(PinFactoryError, match=f"no pigpio daemon at 127.0.0.1:{port}"):
        make_pin_factory(cfg, connect_timeout_s=2.0)


def test_a_missing_gpio_library_is_named():
    try:
        import RPi.GPIO  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("RPi.GPIO is installed here")
    with pytest.raises(PinFactoryError, match="'RPi.GPIO'"):
        make_pin_factory(GpioConfig(factory="rpigpio"))


@pytest.mark.skipif(Path("/proc/device-tree/model").exists(), reason="this machine may have real GPIO")
@pytest.mark.parametrize("kind", ["lgpio", "native"])
def test_no_gpio_hardware_is_a_clear_error(kind):
    # Either the library is there and finds no GPIO chip, or it is missing (the pi extra).
    with pytest.raises(PinFactoryError, match=f"gpio factory {kind!r} (could not start|needs the Python package)"):
        make_pin_factory(GpioConfig(factory=kind))


def test_panel_buttons():
    cfg = gpio_config()
    assert panel_buttons(cfg, ["available", "en_route"]) == ["available", "en_route", "ack", "emergency"]
    cfg = gpio_config(inputs={**cfg.inputs, "decline": InputPin(pin=4)})
    assert panel_buttons(cfg, ["available"]) == ["available", "ack", "emergency", "decline"]


# -------------------------------------------------------------------- inputs


def test_press_and_release_become_events(factory, inbox):
    with make_panel(factory, inbox) as panel:
        assert inbox.drain() == [SirenChanged(on=False, mono=pytest.approx(time.monotonic(), abs=5))]
        pin = factory.pin(BUTTON_PINS["en_route"])
        pin.drive_low()  # pull-up button: pressing connects it to ground
        pressed = inbox.get()
        assert isinstance(pressed, ButtonPressed)
        assert (pressed.name, pressed.source) == ("en_route", "panel")
        pin.drive_high()
        released = inbox.get()
        assert isinstance(released, ButtonReleased) and released.name == "en_route"
        assert released.mono >= pressed.mono
        assert panel.buttons == tuple(BUTTONS)


def test_each_button_reports_its_own_name(factory, inbox):
    with make_panel(factory, inbox):
        inbox.drain()
        for name in BUTTONS:
            factory.pin(BUTTON_PINS[name]).drive_low()
            factory.pin(BUTTON_PINS[name]).drive_high()
        got = [(type(e).__name__, e.name) for e in inbox.drain()]
        assert got == [(kind, name) for name in BUTTONS for kind in ("ButtonPressed", "ButtonReleased")]


def test_a_bouncing_contact_gives_one_press_and_one_release(factory, inbox):
    with make_panel(factory, inbox, gpio_config(bounce_s=0.3)) as panel:
        inbox.drain()
        pin = factory.pin(BUTTON_PINS["ack"])
        for _ in range(4):  # a contact chattering as it closes, ending closed
            pin.drive_low()
            pin.drive_high()
        pin.drive_low()
        assert [type(e) for e in inbox.drain()] == [ButtonPressed]  # reported on the first edge
        assert panel.wait_settled(3.0)
        assert inbox.drain() == []  # the lockout ended with the pin as reported: nothing more
        for _ in range(3):  # chattering as it opens, ending open
            pin.drive_high()
            pin.drive_low()
        pin.drive_high()
        assert [type(e) for e in inbox.drain()] == [ButtonReleased]
        assert panel.wait_settled(3.0)
        assert inbox.drain() == []


def test_a_tap_shorter_than_the_bounce_time_still_releases(factory, inbox):
    with make_panel(factory, inbox, gpio_config(bounce_s=0.2)) as panel:
        inbox.drain()
        pin = factory.pin(BUTTON_PINS["available"])
        pin.drive_low()
        pin.drive_high()  # inside the lockout: absorbed for now
        pressed = inbox.get()
        assert isinstance(pressed, ButtonPressed)
        released = inbox.get(timeout=3.0)  # the lockout's end reads the pin again
        assert isinstance(released, ButtonReleased) and released.name == "available"
        assert released.mono - pressed.mono >= 0.2
        assert panel.wait_settled(3.0)
        assert inbox.drain() == []


def test_pull_down_and_floating_inputs_use_their_active_level(factory, inbox):
    inputs = {
        "ack": InputPin(pin=16, pull_up=False),  # to 3.3 V when pressed
        "emergency": InputPin(pin=20, pull_up=None, active_high=False),  # external pull-up
        "available": InputPin(pin=5),
    }
    factory.pin(20).drive_high()  # the external pull-up: idle
    with make_panel(factory, inbox, GpioConfig(factory="mock", inputs=inputs),
                    buttons=["available", "ack", "emergency"]):
        factory.pin(16).drive_high()
        assert inbox.get() == ButtonPressed("ack", pytest.approx(time.monotonic(), abs=5), "panel")
        factory.pin(20).drive_low()
        assert inbox.get().name == "emergency"
        assert inbox.drain() == []


def test_the_siren_input(factory, inbox):
    with make_panel(factory, inbox, gpio_config(bounce_s=0.2)) as panel:
        first = inbox.get()
        assert first == SirenChanged(on=False, mono=first.mono)
        assert panel.siren_on is False
        pin = factory.pin(SIREN)
        pin.drive_low()  # the opto-isolator pulls the input low while the siren runs
        pin.drive_high()
        pin.drive_low()
        assert inbox.get().on is True
        assert panel.wait_settled(3.0)
        assert inbox.drain() == [] and panel.siren_on is True
        pin.drive_high()
        assert inbox.get() == SirenChanged(on=False, mono=pytest.approx(time.monotonic(), abs=5))


def test_the_siren_already_on_at_start_is_reported(factory, inbox):
    # The opto-isolator's own pull-up (no internal pull): a mock pin keeps the level it is
    # driven to, where an internal pull-up would drive it high again.
    cfg = gpio_config()
    siren = InputPin(pin=SIREN, pull_up=None, active_high=False)
    cfg = GpioConfig(factory="mock", inputs={**cfg.inputs, "siren": siren})
    factory.pin(SIREN).drive_low()
    with make_panel(factory, inbox, cfg) as panel:
        assert inbox.get().on is True
        assert panel.siren_on is True


def test_an_emergency_button_held_at_start_counts_its_hold_from_then(factory, inbox):
    # A rider holding the button through a reboot (after a crash) still raises the alarm;
    # a status key resting pressed at start changes nothing until its next press.
    cfg = gpio_config()
    external = {name: InputPin(pin=BUTTON_PINS[name], pull_up=None, active_high=False)
                for name in ("emergency", "on_scene")}
    cfg = GpioConfig(factory="mock", inputs={**cfg.inputs, **external})
    factory.pin(BUTTON_PINS["emergency"]).drive_low()
    factory.pin(BUTTON_PINS["on_scene"]).drive_low()
    clock = StepClock(50.0)
    with make_panel(factory, inbox, cfg, clock=clock):
        emergency = Emergency(hold_s=2.0, cancel_s=5.0, new_id=alarm_ids())
        presses = [e for e in inbox.drain() if isinstance(e, ButtonPressed)]
        assert presses == [ButtonPressed("emergency", 50.0, "panel")]
        emergency.press(presses[0].mono)
        clock.set(52.5)
        factory.pin(BUTTON_PINS["emergency"]).drive_high()
        release = inbox.get()
        assert release == ButtonReleased("emergency", 52.5, "panel")
        assert [type(e) for e in emergency.release(release.mono)] == [AlarmRaised]


class StepClock:
    def __init__(self, now: float):
        self.now = now
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def set(self, now: float) -> None:
        with self.lock:
            self.now = now


@pytest.mark.parametrize(("held_s", "expected"), [(2.5, AlarmRaised), (0.4, HoldAborted)])
def test_holding_emergency_through_the_core(factory, inbox, held_s, expected):
    clock = StepClock(100.0)
    with make_panel(factory, inbox, clock=clock):
        inbox.drain()
        emergency = Emergency(hold_s=2.0, cancel_s=5.0, new_id=alarm_ids())
        pin = factory.pin(BUTTON_PINS["emergency"])
        pin.drive_low()
        press = inbox.get()
        assert press == ButtonPressed("emergency", 100.0, "panel")
        emergency.press(press.mono)
        clock.set(100.0 + held_s)
        pin.drive_high()
        release = inbox.get()
        assert release == ButtonReleased("emergency", 100.0 + held_s, "panel")
        assert [type(e) for e in emergency.release(release.mono)] == [expected]


def test_a_failing_post_is_counted_and_never_reaches_gpiozero(factory):
    calls = []

    def post(event):
        calls.append(event)
        raise queue.Full

    with PanelIO(gpio_config(), factory, buttons=BUTTONS, post=post) as panel:
        factory.pin(BUTTON_PINS["busy"]).drive_low()  # must not raise here
        factory.pin(BUTTON_PINS["busy"]).drive_high()
        assert [type(e) for e in calls] == [SirenChanged, ButtonPressed, ButtonReleased]
        assert panel.dropped_events == 3


def test_bad_button_lists_are_clear_errors(factory, inbox):
    cfg = gpio_config()
    with pytest.raises(ValueError, match="have no pin"):
        PanelIO(cfg, factory, buttons=[*BUTTONS, "decline"], post=inbox.post)
    with pytest.raises(ValueError, match="not a panel button"):
        PanelIO(cfg, factory, buttons=["siren"], post=inbox.post)


def test_a_failed_build_releases_the_pins_it_took(factory, inbox):
    cfg = gpio_config()
    bad = GpioConfig(factory="mock", inputs={**cfg.inputs, "emergency": InputPin(pin=40)})  # no GPIO40 here
    with pytest.raises(Exception):
        PanelIO(bad, factory, buttons=BUTTONS, post=inbox.post)
    with make_panel(factory, inbox) as panel:  # every pin is free again
        assert panel.buttons == tuple(BUTTONS)


# ------------------------------------------------------------------- outputs


def rgb(factory) -> tuple[bool, bool, bool]:
    return tuple(factory.pin(p).state for p in (RED, GREEN, BLUE))


def view(**changes) -> IndicatorView:
    return IndicatorView(**{"status": "available", "link_up": True, "gnss_fix": True, **changes})


@pytest.mark.parametrize(("status", "pins"), [
    ("available", (False, True, False)),
    ("en_route", (False, False, True)),
    ("on_scene", (True, True, False)),
    ("busy", (True, False, False)),
    ("out_of_service", (True, False, True)),
])
def test_the_status_colour_on_the_rgb_led(factory, inbox, status, pins):
    with make_panel(factory, inbox) as panel:
        panel.apply(indicator_plan(view(status=status)))
        assert rgb(factory) == pins
        assert factory.pin(LINK).state and factory.pin(GNSS).state
        assert not factory.pin(CALL).state and not factory.pin(ALARM).state and not factory.pin(BUZZER).state


def test_active_low_outputs_are_inverted(factory, inbox):
    outputs = {name: OutputPin(pin=pin, active_high=False)
               for name, pin in {"status_red": RED, "status_green": GREEN, "status_blue": BLUE, "link": LINK}.items()}
    with make_panel(factory, inbox, gpio_config(outputs=outputs)) as panel:
        panel.apply(indicator_plan(view(status="en_route")))
        assert rgb(factory) == (True, True, False)  # blue on: its pin low
        assert factory.pin(LINK).state is False
        assert panel.outputs == ("status", "link")


def test_single_channel_leds_when_the_rgb_led_is_incomplete(factory, inbox):
    outputs = {"status_red": OutputPin(pin=RED), "status_green": OutputPin(pin=GREEN), "call": OutputPin(pin=CALL)}
    with make_panel(factory, inbox, gpio_config(outputs=outputs)) as panel:
        assert panel.outputs == ("status", "call")
        panel.apply(indicator_plan(view(status="on_scene")))  # yellow: red and green
        assert (factory.pin(RED).state, factory.pin(GREEN).state) == (True, True)
        panel.apply(indicator_plan(view(status="en_route")))  # blue: no blue LED here
        assert (factory.pin(RED).state, factory.pin(GREEN).state) == (False, False)


def test_a_pattern_plays_its_steps_then_rests(factory, inbox):
    with make_panel(factory, inbox) as panel:
        pin = factory.pin(BUZZER)
        pin.clear_states()
        panel.apply({"buzzer": Pattern("test", (0.08, 0.08), 3)})
        assert poll_until(lambda: levels(pin) == [False, True, False, True, False, True, False], 3.0)
        durations = [s.timestamp for s in pin.states[2:]]  # how long each previous level lasted
        assert all(0.06 <= d < 0.5 for d in durations), durations


def test_an_odd_pattern_keeps_its_repeats_apart_and_can_rest_on(factory, inbox):
    with make_panel(factory, inbox) as panel:
        pin = factory.pin(CALL)
        pin.clear_states()
        panel.apply({"call": Pattern("p3", (0.05,), 2, then=True)})
        assert poll_until(lambda: levels(pin) == [False, True, False, True], 3.0)
        assert poll_until(lambda: panel._tracks["call"].due is None, 3.0)  # finished, resting on
        assert pin.state is True


def test_the_same_plan_again_does_not_restart_a_pattern(factory, inbox):
    with make_panel(factory, inbox) as panel:
        pin = factory.pin(ALARM)
        pin.clear_states()
        plan = {"alarm": Pattern("twice", (0.15, 0.15), 2)}
        panel.apply(plan)
        assert poll_until(lambda: levels(pin)[:3] == [False, True, False], 3.0)
        panel.apply(plan)  # e.g. the runtime re-applies its plan on every tick
        panel.apply(dict(plan))
        assert poll_until(lambda: panel._tracks["alarm"].due is None, 3.0)
        assert levels(pin) == [False, True, False, True, False]


def test_a_flash_plays_over_the_base_and_gives_it_back(factory, inbox):
    with make_panel(factory, inbox) as panel:
        panel.apply(indicator_plan(view(status="available")))
        red, buzzer = factory.pin(RED), factory.pin(BUZZER)
        red.clear_states()
        buzzer.clear_states()
        panel.apply(feedback("refused", {"refused": Pattern("refused", (0.1,), 1)}))
        assert poll_until(lambda: levels(red) == [False, True, False] and levels(buzzer) == [False, True, False], 3.0)
        assert rgb(factory) == (False, True, False)  # back to green


def test_a_flash_over_a_running_pattern_restarts_the_pattern_after(factory, inbox):
    with make_panel(factory, inbox) as panel:
        buzzer = factory.pin(BUZZER)
        panel.apply({"buzzer": Pattern("call", (0.1, 0.1), 0)})
        panel.apply({"buzzer": Flash(Pattern("accepted", (0.3,), 1))})
        buzzer.clear_states()
        # The flash holds the buzzer on for 0.3 s, then the endless call pattern resumes.
        assert poll_until(lambda: len(levels(buzzer)) >= 4, 3.0)
        assert levels(buzzer)[:4] == [True, False, True, False]
        assert buzzer.states[1].timestamp >= 0.2


def test_a_new_base_replaces_a_running_pattern(factory, inbox):
    with make_panel(factory, inbox) as panel:
        link = factory.pin(LINK)
        panel.apply(indicator_plan(view(link_up=False)))
        assert poll_until(lambda: panel._tracks["link"].due is not None, 3.0)
        panel.apply(indicator_plan(view(link_up=True)))
        assert link.state is True and panel._tracks["link"].due is None


def test_a_full_plan_with_a_call_and_an_alarm(factory, inbox):
    with make_panel(factory, inbox) as panel:
        call, alarm, buzzer = factory.pin(CALL), factory.pin(ALARM), factory.pin(BUZZER)
        for pin in (call, alarm, buzzer):
            pin.clear_states()
        panel.apply(indicator_plan(view(call_priority=1, emergency="pending")))
        # call LED and alarm LED blink; the buzzer plays the pending pattern, not the call's.
        assert poll_until(lambda: all(len(levels(p)) >= 4 for p in (call, alarm, buzzer)), 3.0)
        panel.apply(indicator_plan(view(call_priority=1, call_acknowledged=True, emergency="active")))
        assert call.state is True and buzzer.state is False


def test_apply_checks_its_input(factory, inbox):
    with make_panel(factory, inbox) as panel:
        with pytest.raises(ValueError, match="unknown output"):
            panel.apply({"siren": Steady(True)})
        with pytest.raises(TypeError, match="not an output command"):
            panel.apply({"link": True})


# --------------------------------------------------------------------- close


def test_close_releases_every_pin_and_stops_the_thread(factory, inbox):
    panel = make_panel(factory, inbox)
    panel.apply(indicator_plan(view(link_up=False, call_priority=2)))
    with pytest.raises(GPIOPinInUse):
        LED(LINK, pin_factory=factory)  # taken while the panel is open
    thread = panel._thread
    panel.close()
    assert not thread.is_alive()
    assert not any(factory.pin(p).state for p in (RED, GREEN, BLUE, LINK, GNSS, CALL, ALARM, BUZZER))
    for pin in (LINK, BUZZER, BUTTON_PINS["emergency"], SIREN):
        LED(pin, pin_factory=factory).close()  # free again
    panel.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        panel.apply(indicator_plan(view()))
    inbox.drain()
    factory.pin(BUTTON_PINS["ack"]).drive_low()
    assert inbox.drain() == []
