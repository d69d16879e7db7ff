"""What the panel shows for each unit state, and the one-shot feedback patterns."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.config import PanelConfig, PatternConfig
from agent.core.emergency import EmergencyState as S
from agent.core.indicators import (
    DEFAULT_PATTERNS,
    OFF,
    OUTPUTS,
    STATUS_COLOURS,
    WHITE,
    Flash,
    IndicatorView,
    Pattern,
    Steady,
    feedback,
    indicator_plan,
)
from agent.config import STATUS_CODES


def view(**changes) -> IndicatorView:
    base = {"status": "available", "link_up": True, "gnss_fix": True}
    return IndicatorView(**{**base, **changes})


def test_every_output_gets_a_command():
    plan = indicator_plan(view())
    assert set(plan) == set(OUTPUTS)
    assert plan == {
        "status": Steady((0.0, 1.0, 0.0)),
        "link": Steady(True),
        "gnss": Steady(True),
        "call": Steady(False),
        "alarm": Steady(False),
        "buzzer": Steady(False),
    }


def test_status_colours_are_distinct_readable_primaries():
    assert set(STATUS_COLOURS) == set(STATUS_CODES)
    colours = list(STATUS_COLOURS.values())
    assert len(set(colours)) == len(colours)
    assert OFF not in colours and WHITE not in colours  # off looks dead; white means "refused"
    assert all(channel in (0.0, 1.0) for colour in colours for channel in colour)
    assert STATUS_COLOURS["available"] == (0.0, 1.0, 0.0)
    assert STATUS_COLOURS["en_route"] == (0.0, 0.0, 1.0)
    for status, colour in STATUS_COLOURS.items():
        assert indicator_plan(view(status=status))["status"] == Steady(colour)


def test_link_and_gnss_blink_when_down():
    plan = indicator_plan(view(link_up=False, gnss_fix=False))
    assert plan["link"] == Pattern("link_offline", (1.0, 1.0), 0)
    assert plan["gnss"] == Pattern("gnss_no_fix", (0.2, 0.8), 0)


@pytest.mark.parametrize("priority", [1, 2, 3])
def test_a_new_call_alerts_by_priority_until_acknowledged(priority):
    name = f"call_p{priority}"
    spec = DEFAULT_PATTERNS[name]
    plan = indicator_plan(view(call_priority=priority))
    assert plan["call"] == Pattern(name, spec.steps, spec.repeat, then=True)
    assert plan["buzzer"] == Pattern(name, spec.steps, spec.repeat, then=False)
    acked = indicator_plan(view(call_priority=priority, call_acknowledged=True))
    assert acked["call"] == Steady(True)
    assert acked["buzzer"] == Steady(False)


def test_priorities_sound_different():
    plans = [indicator_plan(view(call_priority=p))["buzzer"] for p in (1, 2, 3)]
    assert len({(p.steps, p.repeat) for p in plans}) == 3


def test_emergency_states_on_the_alarm_led_and_buzzer():
    assert indicator_plan(view(emergency=S.HOLDING))["alarm"] == Steady(True)
    pending = indicator_plan(view(emergency=S.PENDING))
    assert pending["alarm"].name == "emergency_pending" and pending["alarm"].then is True
    assert pending["buzzer"].name == "emergency_pending"
    active = indicator_plan(view(emergency=S.ACTIVE))
    assert active["alarm"].name == "emergency_active"
    assert active["buzzer"] == Steady(False)
    acked = indicator_plan(view(emergency=S.ACKNOWLEDGED))
    assert acked["alarm"].name == "emergency_acknowledged"
    assert acked["alarm"] != active["alarm"]  # the officer sees the change


def test_the_buzzer_stays_silent_with_an_alarm_out_even_for_a_call():
    for state in (S.ACTIVE, S.ACKNOWLEDGED):
        plan = indicator_plan(view(emergency=state, call_priority=1))
        assert plan["buzzer"] == Steady(False)
        assert plan["call"].name == "call_p1"  # the LED still shows the call
    pending = indicator_plan(view(emergency=S.PENDING, call_priority=1))
    assert pending["buzzer"].name == "emergency_pending"
    holding = indicator_plan(view(emergency=S.HOLDING, call_priority=2))
    assert holding["buzzer"].name == "call_p2"


def test_emergency_accepts_the_plain_string():
    assert view(emergency="active").emergency is S.ACTIVE


def test_configured_patterns_override_and_missing_ones_fall_back():
    patterns = {"call_p1": PatternConfig(steps=[0.05, 0.05], repeat=4)}
    plan = indicator_plan(view(call_priority=1, link_up=False), patterns)
    assert plan["buzzer"] == Pattern("call_p1", (0.05, 0.05), 4)
    assert plan["link"] == Pattern("link_offline", (1.0, 1.0), 0)  # not configured: default


def test_the_config_defaults_agree_with_the_core_defaults():
    for name, spec in PanelConfig().patterns.items():
        assert (tuple(spec.steps), spec.repeat) == (DEFAULT_PATTERNS[name].steps, DEFAULT_PATTERNS[name].repeat)


def test_feedback_one_shots():
    accepted = feedback("accepted")
    assert accepted == {"buzzer": Flash(Pattern("accepted", (0.08,), 1))}
    refused = feedback("refused", {"refused": PatternConfig(steps=[0.3, 0.1], repeat=2)})
    assert refused["buzzer"] == Flash(Pattern("refused", (0.3, 0.1), 2))
    assert refused["status"].pattern.on == WHITE and refused["status"].pattern.off == OFF
    with pytest.raises(ValueError, match="unknown feedback"):
        feedback("maybe")


@pytest.mark.parametrize("changes", [
    {"status": "lunch"},
    {"call_priority": 0},
    {"call_priority": 4},
])
def test_a_bad_view_is_refused(changes):
    with pytest.raises(ValueError):
        view(**changes)
    with pytest.raises(ValueError):
        view(emergency="panic")


def test_the_core_modules_load_no_hardware_or_network_library():
    code = (
        "import sys; import agent.core.status, agent.core.emergency, agent.core.indicators; "
        "bad = [m for m in ('gpiozero', 'serial', 'paho', 'pydantic') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
