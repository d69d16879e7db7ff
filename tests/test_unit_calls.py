"""Dispatch calls through the core unit: receipt, rejection, crew responses, status, restarts."""

import json

import pytest

from agent.core import views

from agent.core.dispatch import MAX_CALL_BYTES, READ_S
from agent.core.effects import Feedback, Speak
from agent.core.publish import Lane
from tests.support.unit_rig import T0, Rig, body, call_payload, config, iso, now, one, pubs


def responses(effects) -> list[tuple[str, str]]:
    return [(b["id"], b["response"]) for b in map(body, pubs(effects, "call/response"))]


def accepted_call(rig: Rig, **fields) -> Rig:
    rig.message("call", call_payload(**fields))
    rig.press("ack")
    return rig


def test_valid_call_is_answered_received_at_once_and_shown():
    rig = Rig()
    rig.at(T0 + 0.5).fix()
    r0 = rig.unit.revision
    out = rig.at(T0 + 0.6).message("call", call_payload())
    [p] = pubs(out, "call/response")
    assert p.lane is Lane.STATUS and p.qos == 1 and not p.retain
    receipt = body(p)
    assert receipt["id"] == "C-1001" and receipt["response"] == "received"
    assert receipt["ts"] == iso(T0 + 0.6)
    assert receipt["fix"]["mode"] == 3 and receipt["fix"]["lat"] == pytest.approx(34.2610)
    assert not any(isinstance(e, Feedback) for e in out)  # the receipt is the agent's, not a press
    shown = rig.unit.calls.shown()
    assert shown.id == "C-1001" and shown.state == "received" and shown.nature == "Accident de la circulation"
    assert rig.unit.counters.calls == 1 and rig.unit.revision > r0
    assert rig.reports(rig.run_until(T0 + 1.5))[-1]["call"] == {"id": "C-1001", "state": "received"}


def test_same_id_twice_is_not_a_second_alert():
    rig = Rig()
    rig.message("call", call_payload())
    out = rig.after(0.1).message("call", call_payload())
    assert pubs(out) == []
    assert rig.unit.counters.calls == 1
    assert rig.unit.counters.messages_ignored == 1
    assert list(rig.unit.calls.calls) == ["C-1001"]


def test_update_changes_the_call_without_a_new_receipt():
    rig = Rig()
    rig.message("call", call_payload())
    r0 = rig.unit.revision
    out = rig.after(1).message("call", call_payload(action="update", address="Rue 12, Kénitra", priority=2))
    assert pubs(out, "call/response") == [] and pubs(out, "call/rejected") == []
    call = rig.unit.calls.shown()
    assert call.address == "Rue 12, Kénitra" and call.priority == 2 and call.state == "received"
    assert rig.unit.revision > r0
    assert rig.unit.counters.calls == 1


def test_speech_reads_a_new_call_when_enabled():
    rig = Rig(config(display={"speech": True}, panel={"language": "ar"}))
    out = rig.message("call", call_payload(nature="حادثة سير", priority=2))
    [speak] = [e for e in out if isinstance(e, Speak)]
    assert speak.call_id == rig.unit.calls.shown().id
    # The words themselves come from the views, in the rider's language.
    text = views.spoken_text(rig.unit, speak.call_id, rig.now())
    assert "حادثة سير" in text and text.startswith(views.catalogs(rig.unit)["ar"]("speech.new_call", priority=2))
    assert not any(isinstance(e, Speak) for e in Rig().message("call", call_payload()))


@pytest.mark.parametrize("payload, readable_id, needle", [
    (b"x" * (MAX_CALL_BYTES + 1), None, "too large"),
    (call_payload(details="é" * 9000), None, "too large"),
    (b"\xff\xfe{}", None, "not UTF-8"),
    (b"{not json", None, "not JSON"),
    (b"[1, 2]", None, "not a JSON object"),
    (b"[" * 10_000, None, "not JSON: nested too deeply"),
    (call_payload(priority=4), "C-1001", "priority"),
    (call_payload(nature=None), "C-1001", "nature"),
    (call_payload(created="2026-11-25T19:58:00"), "C-1001", "time zone"),
    (call_payload(action="update", id="C-9", nature=None), "C-9", "unknown call id"),
])
def test_bad_call_is_rejected_with_a_reason_and_never_shown(payload, readable_id, needle):
    rig = Rig()
    out = rig.message("call", payload)
    [p] = pubs(out)
    assert p.topic == "call/rejected" and p.lane is Lane.STATUS and not p.retain
    rejected = body(p)
    assert rejected["id"] == readable_id
    assert needle in rejected["error"]
    assert rejected["ts"] == iso(rig.t)
    assert rig.unit.calls.shown() is None
    assert rig.unit.counters.calls_rejected == 1 and rig.unit.counters.calls == 0
    # The unit carries on.
    assert responses(rig.message("call", call_payload(id="C-2"))) == [("C-2", "received")]


def test_ack_accepts_the_shown_call():
    rig = Rig()
    rig.message("call", call_payload())
    out = rig.after(3).press("ack")
    assert responses(out) == [("C-1001", "accepted")]
    assert Feedback("accepted") in out
    assert rig.unit.calls.shown().state == "accepted"
    assert rig.unit.status.state == "available"  # accepting does not move the status


def test_ack_decline_cleared_without_a_call_are_refused():
    rig = Rig()
    for name in ("ack", "decline", "cleared"):
        assert rig.press(name) == [Feedback("refused")]
        assert rig.unit.notice.detail == "no_call"
    assert rig.unit.counters.presses_refused == 3


def test_decline_closes_an_unaccepted_call():
    rig = Rig()
    rig.message("call", call_payload())
    out = rig.press("decline")
    assert responses(out) == [("C-1001", "declined")]
    assert rig.unit.calls.shown() is None
    assert pubs(rig.message("call", call_payload()), "call/response") == []  # a redelivery stays closed


def test_decline_after_accepting_is_refused():
    rig = accepted_call(Rig())
    assert rig.press("decline") == [Feedback("refused")]
    assert rig.unit.calls.shown().state == "accepted"


def test_status_buttons_drive_responses_of_the_accepted_call():
    rig = accepted_call(Rig())
    out = rig.after(5).press("en_route")
    assert responses(out) == [("C-1001", "en_route")]
    assert one(out, "status")["status"] == "en_route"
    out = rig.after(300).press("on_scene")
    assert responses(out) == [("C-1001", "on_scene")]
    assert rig.unit.calls.shown().state == "on_scene"
    out = rig.after(900).press("available")
    assert responses(out) == [("C-1001", "cleared")]
    assert rig.unit.calls.shown() is None and rig.unit.status.state == "available"


def test_status_press_with_an_unaccepted_call_changes_status_only():
    rig = Rig()
    rig.message("call", call_payload())
    out = rig.press("en_route")
    assert responses(out) == []
    assert rig.unit.status.state == "en_route"
    assert rig.unit.calls.shown().state == "received"


def test_cleared_button_closes_the_call_and_makes_the_unit_available():
    rig = accepted_call(Rig())
    rig.press("on_scene")
    out = rig.press("cleared")
    assert responses(out) == [("C-1001", "cleared")]
    assert one(out, "status")["status"] == "available"
    assert rig.unit.calls.shown() is None


def test_dispatch_cancel_removes_the_call_and_tells_the_crew():
    rig = accepted_call(Rig())
    out = rig.after(2).message("call", call_payload(action="cancel", reason="autre unité sur place"))
    assert pubs(out, "call/response") == [] and pubs(out, "call/rejected") == []
    assert rig.unit.calls.shown() is None
    assert (rig.unit.notice.kind, rig.unit.notice.detail) == ("cancelled", "autre unité sur place")
    assert rig.press("ack") == [Feedback("refused")]


def test_cancel_before_new_suppresses_the_late_new():
    rig = Rig()
    rig.message("call", call_payload(action="cancel"))
    assert rig.unit.notice is None  # nothing was shown, so nothing to tell the crew
    out = rig.message("call", call_payload())
    assert pubs(out, "call/response") == [] and rig.unit.calls.shown() is None


def test_calls_survive_a_restart_and_a_redelivery_is_no_second_alert():
    rig = accepted_call(Rig())
    rig.message("call", call_payload(id="C-2", priority=3))
    rig.after(READ_S).press("decline")  # C-2 declined and closed, once read (it took C-1001's place)
    stored = json.loads(json.dumps(rig.unit.persistent_state()))
    again = Rig(t0=T0 + 100)
    assert again.unit.restore(stored, now(again.t)) == []
    assert again.unit.calls.shown().id == "C-1001" and again.unit.calls.shown().state == "accepted"
    # The persistent MQTT session redelivers both calls after the restart.
    out = again.message("call", call_payload()) + again.message("call", call_payload(id="C-2", priority=3))
    assert pubs(out, "call/response") == [] and again.unit.counters.calls == 0
    assert responses(again.press("en_route")) == [("C-1001", "en_route")]


def test_a_call_stored_before_its_receipt_gets_the_receipt_after_restart():
    rig = Rig()
    rig.message("call", call_payload())
    state = rig.unit.persistent_state()
    state["calls"]["calls"][0]["state"] = "new"  # the power went between storing and answering
    again = Rig(t0=T0 + 100)
    out = again.unit.restore(json.loads(json.dumps(state)), now(again.t))
    assert responses(out) == [("C-1001", "received")]



def test_status_press_answers_the_call_being_worked_while_another_waits():
    rig = accepted_call(Rig(), id="C-1", priority=2)
    rig.press("en_route")
    rig.after(10).message("call", call_payload(id="C-2", priority=1))  # new call, not yet accepted
    assert rig.unit.calls.shown().id == "C-2"  # the waiting one takes the screen
    out = rig.after(60).press("on_scene")
    assert responses(out) == [("C-1", "on_scene")]
    assert rig.unit.calls.calls["C-2"].state == "received"


def test_cleared_clears_the_call_being_worked_not_the_one_waiting():
    rig = accepted_call(Rig(), id="C-1", priority=2)
    rig.message("call", call_payload(id="C-2", priority=1))
    out = rig.press("cleared")
    assert responses(out) == [("C-1", "cleared")]
    assert list(rig.unit.calls.calls) == ["C-2"]
    assert rig.unit.calls.calls["C-2"].state == "received"



def test_status_press_gives_one_feedback_even_when_it_answers_a_call():
    rig = accepted_call(Rig())
    out = rig.press("en_route")
    assert [e for e in out if isinstance(e, Feedback)] == [Feedback("accepted")]


def test_status_message_after_a_response_shows_the_call_as_it_now_is():
    rig = accepted_call(Rig())
    out = rig.press("en_route")
    assert one(out, "status")["call"] == {"id": "C-1001", "state": "en_route"}
    out = rig.press("available")  # clears the call
    assert one(out, "status") == {**one(out, "status"), "status": "available", "call": None}



def test_retained_status_follows_the_call():
    """``status`` carries ``call`` and is published on every change, so the retained copy is never stale."""
    rig = Rig()
    out = rig.message("call", call_payload())
    assert one(out, "status")["call"] == {"id": "C-1001", "state": "received"}
    out = rig.press("ack")
    assert one(out, "status")["call"] == {"id": "C-1001", "state": "accepted"}
    out = rig.message("call", call_payload(action="cancel"))
    assert one(out, "status")["call"] is None
    out = rig.message("call", call_payload(action="update", address="ailleurs"))
    assert pubs(out, "status") == []  # nothing that status carries changed


def test_ack_accepts_the_call_waiting_while_another_is_worked():
    rig = accepted_call(Rig(), id="C-1", priority=2)
    rig.press("en_route")
    rig.message("call", call_payload(id="C-2", priority=3))
    out = rig.after(READ_S).press("ack")  # it came over the call being worked: read it first
    assert responses(out) == [("C-2", "accepted")]
    assert rig.unit.calls.calls["C-1"].state == "en_route"


def test_too_many_open_calls_are_rejected_not_dropped_silently():
    from agent.core.dispatch import MAX_OPEN_CALLS
    rig = Rig()
    for k in range(MAX_OPEN_CALLS):
        rig.message("call", call_payload(id=f"C-{k}"))
    out = rig.message("call", call_payload(id="C-X"))
    rejected = one(out, "call/rejected")
    assert rejected["id"] == "C-X" and str(MAX_OPEN_CALLS) in rejected["error"]
    assert rig.unit.counters.calls == MAX_OPEN_CALLS and rig.unit.counters.calls_rejected == 1


def test_telemetry_carries_the_call_and_its_state():
    rig = accepted_call(Rig())
    rig.press("en_route")
    assert rig.reports(rig.run_until(T0 + 1.5))[-1]["call"] == {"id": "C-1001", "state": "en_route"}
