"""The lifecycle table (agent/lifecycle.py): its order, its stops and its rebuilds, without a thread.

The rows' own start and stop are replaced by recorders: what is checked here is the
table and the three functions that run it. The real adapters behind the rows are
tested through the running agent (test_runtime_panel.py, test_remote_config.py...).
"""

from __future__ import annotations

import dataclasses
import threading

import pytest

from agent import lifecycle
from agent.core.key_rules import ConfigChange
from agent.lifecycle import ADAPTERS, Adapter


class FakeParts:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.screens_lock = threading.Lock()
        self.log: list[str] = []


def recorded(rows: tuple[Adapter, ...], fail_stop: str = "") -> tuple[Adapter, ...]:
    def start(name):
        return lambda p: p.log.append(f"start {name}")

    def stop(name):
        def fn(p):
            p.log.append(f"stop {name}")
            if name == fail_stop:
                raise RuntimeError("stuck")
        return fn

    def renew(name):
        return lambda p: p.log.append(f"renew {name}")

    return tuple(dataclasses.replace(row, start=start(row.name), stop=stop(row.name),
                                     renew=renew(row.name) if row.renew else None) for row in rows)


def names(log: list[str], verb: str) -> list[str]:
    return [entry.split(" ", 1)[1] for entry in log if entry.startswith(verb + " ")]


def test_the_start_order_and_its_reasons():
    order = [row.name for row in ADAPTERS]
    # The ignition's level is on the inbox before the first LinkUp: the first status says it.
    assert order.index("power") < order.index("link")
    # The core runs before the screens: an alarm held while the touchscreen's server starts goes out.
    assert order.index("core") < min(order.index(s) for s in ("touchscreen", "display", "speech"))
    # The inputs start before the core: what they see while the agent starts waits on the inbox.
    assert max(order.index(i) for i in ("gnss", "panel", "imu")) < order.index("core")
    assert order[-1] == "watchdog"  # its checks read every thread started above
    p = FakeParts()
    lifecycle.start(p, recorded(ADAPTERS))
    assert names(p.log, "start") == order == p.started


def test_stops_the_watchdog_and_inputs_then_the_core_then_the_rest_newest_first():
    p = FakeParts()
    rows = recorded(ADAPTERS)
    lifecycle.start(p, rows)
    p.log.clear()
    lifecycle.stop(p, rows)
    assert names(p.log, "stop") == [
        "watchdog", "imu", "panel", "gnss", "power",  # nothing posts once the core stops
        "core",
        "speech", "display", "touchscreen", "storage health", "link", "remote worker",  # served the core to its end
    ]
    assert p.started == []


def test_stop_stops_only_what_started_and_goes_on_past_a_failure():
    p = FakeParts()
    rows = recorded(ADAPTERS, fail_stop="gnss")
    lifecycle.start(p, rows[:4])  # remote worker, power, link, gnss: the start failed there
    p.log.clear()
    lifecycle.stop(p, rows)
    assert names(p.log, "stop") == ["gnss", "power", "link", "remote worker"]


def change(old: dict, new: dict) -> ConfigChange:
    from agent.config_validate import parse_config

    base = {"unit": {"id": "KEN-T-01", "kind": "car"}}
    return ConfigChange.between(parse_config({**base, **old}), parse_config({**base, **new}))


@pytest.mark.parametrize(("old", "new", "rebuilt"), [
    ({}, {"gnss": {"baudrate": 4800}}, ["gnss"]),
    ({}, {"mqtt": {"host": "broker.example"}}, ["link"]),
    ({}, {"display": {"kind": "ssd1306"}}, ["display"]),
    # The display is built with the panel's labels; speech is its own row.
    ({}, {"panel": {"labels": {"fr": {"available": "Libre"}}}}, ["display"]),
    ({}, {"display": {"speech": True}}, ["speech"]),
    # A restart key of the gpio section rebuilds nothing (the pin factory owns the chip for the process).
    ({}, {"gpio": {"factory": "mock"}}, []),
    ({}, {"telemetry": {"rate_hz": 2.0}}, []),
])
def test_what_a_config_change_rebuilds(old, new, rebuilt):
    c = change(old, new)
    p = FakeParts()
    rows = recorded(ADAPTERS)
    lifecycle.start(p, rows)
    p.log.clear()
    lifecycle.rebuild(p, c.reinit, c.paths, rows)
    assert names(p.log, "stop") == rebuilt
    assert names(p.log, "start") == rebuilt
    # One that was built with the parts is made anew from the new config before it starts again.
    assert names(p.log, "renew") == [name for name in rebuilt if name in ("link", "gnss")]


def test_a_row_not_started_yet_is_not_rebuilt():
    # The core may apply a push while start() is still bringing the screens up: that screen
    # then starts with the new config.
    p = FakeParts()
    rows = recorded(ADAPTERS)
    lifecycle.start(p, rows[:7])  # up to the core
    p.log.clear()
    lifecycle.rebuild(p, {"display"}, (), rows)
    assert p.log == []
