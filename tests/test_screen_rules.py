"""The touchscreen's rules, derived from its snapshot (pure): what the page shows and may press."""

from __future__ import annotations

import copy

from agent.core import screen_rules
from agent.core.screen_rules import complete

INPUTS = ["available", "en_route", "on_scene", "busy", "out_of_service", "ack", "decline", "cleared", "emergency"]


def snap(**changes) -> dict:
    base = {
        "sound": True, "inputs": list(INPUTS), "call": None,
        "emergency": {"state": "none", "since": None, "cancel_deadline_s": None, "hold_s": 2.0},
        "gnss": {"mode": 3, "lat": 34.26, "lon": -6.58, "speed": 0.0, "track": None, "age": 0.3, "receiver": "ok"},
    }
    base.update(changes)
    return base


def call(**changes) -> dict:
    c = {"id": "KEN-1", "priority": 1, "state": "new", "acknowledged": False}
    c.update(changes)
    return c


def test_a_new_call_takes_the_screen_with_its_alert_until_answered():
    new = complete(snap(call=call()))
    assert new["takeover"] is True
    assert new["alert"] == {"call_id": "KEN-1", "url": "/sounds/p1.wav", "loop": True, "plays": 1}
    assert new["call_controls"] == ["en_route", "on_scene", "cleared"]
    accepted = complete(snap(call=call(state="accepted", acknowledged=True)))
    assert accepted["takeover"] is False and accepted["alert"] is None
    assert accepted["call_controls"] == ["en_route", "on_scene", "cleared"]


def test_p3_sounds_three_times_and_a_silent_screen_not_at_all():
    assert complete(snap(call=call(priority=3)))["alert"] == {
        "call_id": "KEN-1", "url": "/sounds/p3.wav", "loop": False, "plays": 3}
    assert complete(snap(sound=False, call=call()))["alert"] is None


def test_an_ended_call_has_no_fullscreen_and_no_next_step():
    for state in ("declined", "cleared", "cancelled"):
        done = complete(snap(call=call(state=state)))
        assert done["takeover"] is False and done["call_controls"] == [] and done["alert"] is None


def test_call_controls_are_only_those_the_page_may_post():
    assert complete(snap(call=call(), inputs=["available", "cleared"]))["call_controls"] == ["cleared"]
    assert complete(snap())["call_controls"] == []


def test_the_alarm_control_follows_the_alarm():
    hold = complete(snap())["emergency"]
    assert (hold["control"], hold["hold_s"], hold["at_deadline"]) == ("hold", 2.0, None)
    pending = complete(snap(inputs=[*INPUTS, "emergency_cancel"],
                            emergency={"state": "pending", "cancel_deadline_s": 4.0}))["emergency"]
    assert pending["control"] == "cancel"
    assert pending["at_deadline"] == {"state": "active", "control": "none"}
    # Without the cancel input (the window closed on the agent's side) a touch is a new hold.
    assert complete(snap(emergency={"state": "pending"}))["emergency"]["control"] == "hold"
    for state in ("active", "acknowledged"):
        assert complete(snap(emergency={"state": state}))["emergency"]["control"] == "none"


def test_the_hold_time_is_the_configured_default_when_not_given():
    assert complete(snap(emergency={"state": "none"}))["emergency"]["hold_s"] == screen_rules.DEFAULT_HOLD_S == 2.0
    assert complete(snap(emergency={"state": "none", "hold_s": 3.5}))["emergency"]["hold_s"] == 3.5
    assert complete({})["emergency"] == {"state": "none", "hold_s": 2.0, "control": "hold", "at_deadline": None}


def test_gnss_staleness_and_heading_up():
    assert complete(snap())["gnss"]["stale"] is False
    assert complete(snap(gnss={"mode": 1, "age": 6.0}))["gnss"]["stale"] is True
    moving = {"mode": 3, "speed": 12.0, "track": 30.0, "receiver": "ok"}
    assert complete(snap(gnss=moving))["gnss"]["heading_deg"] == 30.0
    assert complete(snap(gnss={**moving, "speed": 2.9}))["gnss"]["heading_deg"] is None  # standing: north-up
    assert complete(snap(gnss={**moving, "receiver": "lost"}))["gnss"]["heading_deg"] is None
    assert complete(snap(gnss={**moving, "track": None}))["gnss"]["heading_deg"] is None


def test_complete_leaves_its_input_alone_and_keeps_what_a_producer_stated():
    given = snap(call=call(), takeover=False, call_controls=["cleared"])
    before = copy.deepcopy(given)
    done = complete(given)
    assert given == before
    assert done["takeover"] is False and done["call_controls"] == ["cleared"]
    assert complete(done) == done  # idempotent: the web server completes the core's snapshot again
