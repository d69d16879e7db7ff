"""The power lines adapter (agent/adapters/power.py) on gpiozero MockFactory pins."""

from __future__ import annotations

import queue
import threading

import pytest
from gpiozero.pins.mock import MockFactory

from agent.adapters.power import PowerInputs
from agent.config import PowerConfig

IGNITION, POWER_FAIL = 4, 7


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.close()


class Seen:
    def __init__(self) -> None:
        self.ignition: queue.Queue[bool] = queue.Queue()
        self.failed = threading.Event()
        self.fail_threads: list[str] = []

    def on_ignition(self, on: bool) -> None:
        self.ignition.put(on)

    def on_power_fail(self) -> None:
        self.fail_threads.append(threading.current_thread().name)
        self.failed.set()


def inputs(factory, seen: Seen, **cfg) -> PowerInputs:
    config = PowerConfig(**{"ignition_pin": IGNITION, "power_fail_pin": POWER_FAIL, **cfg})
    return PowerInputs(config, factory, on_ignition=seen.on_ignition, on_power_fail=seen.on_power_fail)


def test_the_ignition_level_at_start_then_each_steady_change(factory):
    seen = Seen()
    power = inputs(factory, seen, ignition_debounce_s=0.05)
    power.start()  # the Pi's pull-up alone: the opto-isolator is off, ignition off
    assert seen.ignition.get(timeout=2) is False
    factory.pin(IGNITION).drive_low()  # opto-isolator on: ignition on
    assert seen.ignition.get(timeout=2) is True
    factory.pin(IGNITION).drive_high()  # ignition off
    assert seen.ignition.get(timeout=2) is False
    factory.pin(IGNITION).drive_low()
    assert seen.ignition.get(timeout=2) is True
    power.close()


def test_a_cranking_dip_shorter_than_the_debounce_is_not_reported(factory):
    seen = Seen()
    power = inputs(factory, seen, ignition_debounce_s=0.3)
    factory.pin(IGNITION).drive_low()
    power.start()
    assert seen.ignition.get(timeout=2) is True
    with pytest.raises(queue.Empty):
        seen.ignition.get(timeout=0.6)  # the edge's own settled read says the same: not reported again
    factory.pin(IGNITION).drive_high()  # the starter motor pulls the 12 V down...
    factory.pin(IGNITION).drive_low()  # ...and it is back at once
    with pytest.raises(queue.Empty):
        seen.ignition.get(timeout=0.6)  # two debounce periods: nothing reported
    power.close()


def test_the_power_fail_warning_is_acted_on_once_on_a_thread_of_its_own(factory):
    seen = Seen()
    factory.pin(POWER_FAIL).drive_high()  # the supply is fine (active-low line at rest)
    power = inputs(factory, seen, power_fail_debounce_s=0.0)
    power.start()
    assert not seen.failed.is_set()
    factory.pin(POWER_FAIL).drive_low()
    assert seen.failed.wait(2)
    factory.pin(POWER_FAIL).drive_high()
    factory.pin(POWER_FAIL).drive_low()
    assert power.power_failing
    power.close()
    assert seen.fail_threads == ["power-fail"]


def test_a_warning_glitch_shorter_than_its_debounce_is_ignored_and_a_held_one_is_not(factory):
    seen = Seen()
    factory.pin(POWER_FAIL).drive_high()
    power = inputs(factory, seen, power_fail_debounce_s=0.05)
    power.start()
    factory.pin(POWER_FAIL).drive_low()
    factory.pin(POWER_FAIL).drive_high()  # a glitch: back before the debounce ends
    assert not seen.failed.wait(0.3)
    factory.pin(POWER_FAIL).drive_low()  # held
    assert seen.failed.wait(2)
    power.close()


def test_a_warning_up_before_start_is_acted_on_once(factory):
    seen = Seen()
    power = inputs(factory, seen)
    factory.pin(POWER_FAIL).drive_low()  # the supply failed while the unit was starting
    power.start()
    assert seen.failed.wait(2)
    factory.pin(POWER_FAIL).drive_high()
    factory.pin(POWER_FAIL).drive_low()
    power.close()
    assert seen.fail_threads == ["power-fail"]
    power.close()


def test_active_high_lines_get_the_pull_down_and_unwired_lines_nothing(factory):
    seen = Seen()
    power = inputs(factory, seen, ignition_active_high=True, power_fail_pin=None, ignition_debounce_s=0.0)
    assert factory.pin(IGNITION).pull == "down"
    assert power.power_fail is None and power.wired
    power.start()
    assert seen.ignition.get(timeout=2) is False  # pulled down: ignition off
    factory.pin(IGNITION).drive_high()
    assert seen.ignition.get(timeout=2) is True
    power.close()
    assert not inputs(factory, seen, ignition_pin=None, power_fail_pin=None).wired


# ------------------------------------------------------------- power off


def test_power_off_runs_the_configured_command_once(tmp_path):
    from agent.adapters.power import power_off

    marker = tmp_path / "off"
    power_off(f"touch {marker}")
    assert marker.exists()


def test_power_off_without_a_command_does_nothing(caplog):
    from agent.adapters.power import power_off

    power_off("  ")
    assert "powering off" not in caplog.text


def test_a_failing_power_off_command_is_logged_not_raised(tmp_path, caplog):
    from agent.adapters.power import power_off

    power_off("false")
    assert "exited 1" in caplog.text
    power_off(str(tmp_path / "no-such-command"))
    assert "failed" in caplog.text
    power_off("'unbalanced")
    assert caplog.text.count("failed") == 2
