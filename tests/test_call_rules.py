"""The call rules a crew meets (pure core): the transition table, a call read before it is answered,
stale calls judged on trusted time only, waiting calls counted, cancel notices that name their call."""

from __future__ import annotations

import json

import pytest

from agent.core import views
from agent.core.dispatch import READ_S, TRANSITIONS, CallBook, Refuse, ResponseRefused, To
from agent.core.effects import Feedback
from tests.support.unit_rig import WALL0, Rig, body, call_payload, config, pubs

RESPONSES = ("received", "accepted", "declined", "en_route", "on_scene", "cleared")


def responses(out) -> list[tuple[str, str]]:
    return [(b["id"], b["response"]) for b in map(body, pubs(out, "call/response"))]


def test_the_table_lists_every_pair_and_only_moves_forward():
    order = ["new", "received", "accepted", "en_route", "on_scene", "cleared"]
    for state, row in TRANSITIONS.items():
        assert set(row) == set(RESPONSES), state  # nothing decided by omission
        for response, rule in row.items():
            if isinstance(rule, To) and rule.state != "declined":
                assert order.index(rule.state) > order.index(state), (state, response)
            assert isinstance(rule, (To, Refuse))
    assert TRANSITIONS["received"]["declined"] == To("declined")
    assert TRANSITIONS["accepted"]["declined"] == Refuse("not_allowed")  # too late: dispatch counts on it


def test_an_answer_within_a_moment_of_a_call_taking_anothers_place_is_refused():
    book = CallBook()
    book.receive(call_payload(id="A", priority=3), WALL0, 10.0)
    book.respond("received", "A", 10.0)
    # Onto a screen that showed no call: answered at once.
    assert not book.unread(10.0) and book.read_left(10.0) == 0.0
    book.receive(call_payload(id="B", priority=1), WALL0, 12.0)  # more urgent: it takes A's place
    book.respond("received", "B", 12.0)
    refused = book.respond("accepted", None, 12.0 + READ_S - 0.01)
    assert isinstance(refused, ResponseRefused) and refused.reason == "not_read"
    declined = book.respond("declined", None, 12.0 + READ_S - 0.01)
    assert isinstance(declined, ResponseRefused) and declined.reason == "not_read"
    assert book.respond("accepted", None, 12.0 + READ_S).call.state == "accepted"
    assert book.shown().id == "A"  # A is back: it took B's place, so it waits its moment too
    assert book.unread(12.0 + READ_S + 0.5) and not book.unread(12.0 + 2 * READ_S)


def test_the_first_call_on_an_idle_screen_is_accepted_at_once():
    rig = Rig()
    rig.message("call", call_payload(id="A"))
    assert responses(rig.press("ack", source="touch")) == [("A", "accepted")]


def test_the_second_press_does_not_accept_the_call_that_slid_in_unread():
    rig = Rig(config("motorcycle"))
    rig.message("call", call_payload(id="A", priority=1))
    rig.message("call", call_payload(id="B", priority=2))
    assert views.rider_view(rig.unit, rig.now()).waiting == 1
    assert responses(rig.after(READ_S).press("ack")) == [("A", "accepted")]
    # B takes the screen now: a double press a moment later is refused, and says why.
    out = rig.after(0.3).press("ack")
    assert responses(out) == [] and [e for e in out if isinstance(e, Feedback)] == [Feedback("refused")]
    assert rig.unit.notice.detail == "not_read"
    assert views.screen_snapshot(rig.unit, rig.now())["notice"]["text"] == "Nouvel appel : lisez-le avant de répondre"
    assert rig.unit.calls.calls["B"].state == "received"
    assert views.rider_view(rig.unit, rig.now()).waiting == 0
    assert responses(rig.after(READ_S).press("ack")) == [("B", "accepted")]


def test_a_more_urgent_call_replacing_the_one_being_read_needs_its_own_moment():
    rig = Rig()
    rig.message("call", call_payload(id="LOW", priority=3))
    rig.after(5)
    rig.message("call", call_payload(id="HIGH", priority=1))  # takes the screen from LOW
    snap = views.screen_snapshot(rig.unit, rig.now())
    assert snap["call"]["id"] == "HIGH" and snap["call"]["answer_in_s"] == pytest.approx(READ_S)
    assert snap["waiting"] == 1
    assert responses(rig.after(0.2).press("ack", source="touch")) == []
    assert responses(rig.after(READ_S).press("ack", source="touch")) == [("HIGH", "accepted")]


def test_during_the_cancel_window_ack_still_cancels_the_alarm_first():
    rig = Rig(config("motorcycle", panel={"emergency_hold_s": 2.0, "emergency_cancel_s": 5.0}))
    rig.press("emergency")
    rig.run_until(rig.t + 2.0)
    rig.message("call", call_payload(id="A"))
    out = rig.after(0.2).press("ack")
    assert [body(p)["state"] for p in pubs(out, "alarm")] == ["cancelled"]
    assert rig.unit.calls.calls["A"].state == "received"


@pytest.mark.parametrize("created, stale, age", [
    ("2026-11-25T19:58:00Z", False, 120.0),  # two minutes: fresh
    ("2026-11-25T18:30:00Z", True, 5400.0),  # an hour and a half late
    ("2026-11-20T20:00:00Z", True, 5 * 86400.0),  # days old: the doc's own example
    ("2026-11-25T20:05:00Z", False, 0.0),  # the dispatcher's clock ahead: not negative
])
def test_received_says_how_old_the_call_was_on_trusted_time(created, stale, age):
    rig = Rig()
    received = body(pubs(rig.message("call", call_payload(created=created)), "call/response")[0])
    assert received["response"] == "received" and received["time_source"] == "system"
    assert received["stale"] is stale and received["age_s"] == pytest.approx(age)
    snap = views.screen_snapshot(rig.unit, rig.now())
    assert snap["call"]["stale"] is stale and snap["call"]["age_s"] == pytest.approx(age)
    assert views.rider_view(rig.unit, rig.now()).call.stale is stale


def test_without_trusted_time_the_age_is_unverified_never_guessed():
    rig = Rig(synced=False)  # no synchronised clock, no GNSS time yet
    received = body(pubs(rig.message("call", call_payload(created="2020-01-01T00:00:00Z")), "call/response")[0])
    assert received["time_source"] == "system_unsynced"
    assert received["age_s"] is None and received["stale"] is None
    snap = views.screen_snapshot(rig.unit, rig.now())
    assert snap["call"]["age_s"] is None and snap["call"]["stale"] is None
    assert not views.rider_view(rig.unit, rig.now()).call.stale
    # Only "received" carries the age: the crew's answers do not.
    accepted = body(pubs(rig.after(READ_S).press("ack"), "call/response")[0])
    assert "age_s" not in accepted and "stale" not in accepted


def test_the_limit_is_configured_and_0_never_flags():
    rig = Rig(config("car", panel={"stale_call_after_s": 60}))
    received = body(pubs(rig.message("call", call_payload(created="2026-11-25T19:58:00Z")), "call/response")[0])
    assert received["stale"] is True
    never = Rig(config("car", panel={"stale_call_after_s": 0}))
    received = body(pubs(never.message("call", call_payload(created="2026-11-20T19:58:00Z")), "call/response")[0])
    assert received["stale"] is False and received["age_s"] > 86400


def test_a_cancel_notice_names_its_call_and_says_when_one_of_the_same_nature_is_shown():
    rig = Rig()
    rig.message("call", call_payload(id="KEN-41", nature="Rixe", address="Marché central"))
    rig.message("call", call_payload(id="KEN-42", nature="Rixe", address="Gare"))
    rig.message("call", json.dumps({"id": "KEN-41", "action": "cancel", "reason": "doublon"}).encode())
    notice = views.screen_snapshot(rig.unit, rig.now())["notice"]
    assert (notice["subject"], notice["call_id"], notice["address"], notice["reason"]) == (
        "Rixe", "KEN-41", "Marché central", "doublon")
    assert notice["same_nature_shown"] is True


def test_the_snapshot_says_since_when_the_link_is_down_and_since_when_the_unit_runs():
    rig = Rig()
    rig.after(300).link_up()
    snap = views.screen_snapshot(rig.unit, rig.now())
    assert snap["status_since"] is None and snap["started_s"] == pytest.approx(300.0)
    rig.after(20).link_down()
    rig.after(12).tick()
    snap = views.screen_snapshot(rig.unit, rig.now())
    assert snap["link"]["online"] is False and snap["link"]["since_s"] == pytest.approx(12.0)
    assert snap["link"]["since_s"] >= snap["link"]["alert_after_s"]
