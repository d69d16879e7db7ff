"""The core's safety promises under the conditions of ``docs/safety.md``.

Each test drives the pure core with the rig's fake clock (``tests/support/unit_rig.py``) in one
of the conditions a unit meets (no fix, no trusted time, a system clock that jumps, a bad config
push) and checks that the alarm, the calls and the reports still do what the hazard analysis
says. The same promises through the real agent process are in ``tests/test_agent_e2e.py`` and
``tests/test_security_e2e.py``.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from agent.config_validate import parse_config
from agent.core.events import ButtonPressed, ButtonReleased, FixReceived, Tick
from agent.core.remote_config import ConfigState, handle_config_set
from agent.core.unit import Now
from tests.support.unit_rig import T0, Rig, body, call_payload, config, gnss_fix, now, one, pubs, wall

HOLD, WINDOW = 2.0, 5.0  # the defaults of [panel] emergency_hold_s and emergency_cancel_s


class JumpingClock(Rig):
    """The rig with a system clock that jumps: ``jump`` is added to the wall clock from now on."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.jump = dt.timedelta(0)

    def now(self) -> Now:
        return Now(self.t, wall(self.t) + self.jump, self.synced)


def test_an_alarm_needs_no_fix_no_trusted_time_and_no_link():
    # Right after a boot in a garage: no fix ever, the clock never synchronised, no broker yet.
    rig = Rig(synced=False)
    rig.press("emergency")
    out = rig.run_until(T0 + HOLD)
    alarm = one(out, "alarm")
    assert alarm["state"] == "pending" and alarm["active"] is True
    assert alarm["fix"]["mode"] == 1 and alarm["fix"]["lat"] is None
    assert alarm["time_source"] == "system_unsynced"
    assert one(out, "status")["emergency"] is True
    out = rig.run_until(T0 + HOLD + WINDOW)
    assert one(out, "alarm")["state"] == "active"
    # The link comes up later: the alarm goes out again at once, as the retained state.
    assert one(rig.link_up(), "alarm")["state"] == "active"


def test_an_alarm_without_a_fix_carries_the_last_position_and_its_age():
    rig = Rig()
    rig.fix()
    rig.after(30).gnss_lost()  # into a tunnel: the receiver goes silent
    rig.press("emergency")
    alarm = one(rig.run_until(rig.t + HOLD), "alarm")
    assert alarm["fix"]["mode"] == 1 and alarm["fix"]["receiver"] == "lost"
    assert alarm["fix"]["lat"] == pytest.approx(34.2610) and alarm["fix"]["age"] == pytest.approx(30 + HOLD)


@pytest.mark.parametrize("jump_s", [3600.0, -86400.0])
def test_the_hold_and_the_cancel_window_ignore_a_jumping_clock(jump_s):
    # The hold and the window run on the monotonic clock: chrony stepping the system clock
    # (or a clock coming back from 1970) neither raises early, nor late, nor cancels.
    rig = JumpingClock()
    rig.press("emergency")
    rig.jump = dt.timedelta(seconds=jump_s)
    assert pubs(rig.at(T0 + HOLD - 0.01).tick(), "alarm") == []
    assert one(rig.at(T0 + HOLD).tick(), "alarm")["state"] == "pending"
    rig.jump = dt.timedelta(seconds=-jump_s)
    assert pubs(rig.at(T0 + HOLD + WINDOW - 0.01).tick(), "alarm") == []
    assert one(rig.at(T0 + HOLD + WINDOW).tick(), "alarm")["state"] == "active"
    assert rig.unit.emergency.alarm_out


def test_reports_keep_their_rhythm_and_seq_through_clock_jumps():
    rig = JumpingClock(next_seq=40)
    reports = rig.reports(rig.run_until(T0 + 3.5))
    rig.jump = dt.timedelta(hours=-5)
    reports += rig.reports(rig.run_until(T0 + 6.5))
    rig.jump = dt.timedelta(days=400)
    reports += rig.reports(rig.run_until(T0 + 9.5))
    assert [r["seq"] for r in reports] == list(range(40, 49))  # one a second, none skipped or repeated


def test_a_call_is_shown_and_answered_whatever_the_system_clock_says():
    rig = JumpingClock(synced=False)
    rig.jump = dt.timedelta(days=-3000)  # a clock left in 2018 by a dead battery
    out = rig.message("call", call_payload())
    assert one(out, "call/response")["response"] == "received"
    assert rig.unit.calls.shown() is not None and rig.unit.calls.shown().id == "C-1001"


def test_an_alarm_in_the_middle_of_a_call_leaves_the_call_and_the_call_leaves_the_alarm():
    rig = Rig(synced=False)
    rig.message("call", call_payload())
    rig.press("ack")  # accepted
    rig.after(1).press("en_route")
    rig.press("emergency")
    out = rig.run_until(rig.t + HOLD)
    assert one(out, "alarm")["state"] == "pending"
    assert one(out, "status")["call"] == {"id": "C-1001", "state": "en_route"}
    # A call update during the alarm is shown; the alarm stays out.
    out = rig.after(1).message("call", call_payload(action="update", details="Suspect armé"))
    assert pubs(out, "alarm") == [] and rig.unit.emergency.alarm_out
    assert rig.unit.calls.shown().details == "Suspect armé"


@pytest.mark.parametrize(("panel", "fragment"), [
    ({"emergency_hold_s": 0.1}, "greater than or equal to 0.5"),  # a bump would raise it
    ({"emergency_hold_s": 30}, "less than or equal to 10"),  # an officer could not hold that long
    ({"emergency_cancel_s": 600}, "less than or equal to 60"),  # help would wait for the window
])
def test_a_push_cannot_make_the_alarm_too_easy_or_too_hard_to_raise(panel, fragment):
    state = ConfigState.initial(config())
    request = {"id": "r-1", "version": 1, "config": {"panel": panel}}
    outcome = handle_config_set(json.dumps(request).encode(), state, wall(T0), validate=parse_config)
    assert not outcome.result.ok and outcome.state is None
    assert any(fragment in p.msg for p in outcome.result.errors), outcome.result.errors


def test_an_unsynchronised_clock_is_said_on_every_message_the_alarm_sends():
    rig = Rig(synced=False)
    rig.press("emergency")
    out = rig.run_until(T0 + HOLD + WINDOW) + rig.message("alarm/clear", b"")
    states = [(body(p)["state"], body(p)["time_source"]) for p in pubs(out, "alarm")]
    assert states == [("pending", "system_unsynced"), ("active", "system_unsynced"), ("cleared", "system_unsynced")]


def test_a_hold_queued_while_the_core_was_busy_is_timed_by_its_edges():
    # At start the screens take seconds to come up and the panel's edges wait in the inbox: the
    # hold is the real one, measured between the button's edges, not between their handling.
    rig = Rig()
    late = T0 + 3.0  # when the core gets to both edges
    out = rig.unit.handle(ButtonPressed("emergency", T0, "panel"), now(late))
    out += rig.unit.handle(ButtonReleased("emergency", T0 + 1.5 * HOLD), now(late))
    alarm = one(out, "alarm")
    assert alarm["state"] == "pending" and rig.unit.emergency.alarm_out
    # And a bump stays a bump, however late it is handled (no alarm from the handling's delay).
    rig = Rig()
    out = rig.unit.handle(ButtonPressed("emergency", T0, "panel"), now(late))
    out += rig.unit.handle(FixReceived(gnss_fix(T0 + 0.2), T0 + 0.2), now(late))
    out += rig.unit.handle(ButtonReleased("emergency", T0 + 0.5), now(late))
    out += rig.unit.handle(Tick(late + 10), now(late + 10))
    assert pubs(out, "alarm") == [] and not rig.unit.emergency.alarm_out


def test_a_cancel_pressed_inside_the_window_counts_even_if_handled_after_it():
    rig = Rig()
    rig.press("emergency")
    rig.run_until(T0 + HOLD)
    late = T0 + HOLD + WINDOW + 1.0
    out = rig.unit.handle(ButtonPressed("ack", T0 + HOLD + WINDOW - 0.5, "panel"), now(late))
    assert [body(p)["state"] for p in pubs(out, "alarm")] == ["cancelled"]
    assert not rig.unit.emergency.alarm_out
