"""Officer in danger through the core unit: hold, cancel window, dispatch ack/clear, restarts."""

import json

import pytest

from agent.core.effects import Feedback
from agent.core.publish import Lane
from tests.support.unit_rig import T0, Rig, alarm_uuid, body, call_payload, iso, now, one, pubs

HOLD = 2.0
WINDOW = 5.0
A1, A2 = alarm_uuid(1), alarm_uuid(2)  # the rig's first two alarm ids


def named(alarm_id: str) -> bytes:
    return json.dumps({"id": alarm_id}).encode()


def raised(rig: Rig, at: float = T0 + 0.1) -> Rig:
    """Press and hold emergency at ``at`` until the alarm is raised (pending)."""
    rig.at(at).press("emergency")
    rig.run_until(at + HOLD)
    assert rig.unit.emergency.state == "pending"
    return rig


def test_hold_raises_a_pending_alarm_then_active_after_the_window():
    rig = Rig()
    press_at = T0 + 0.1
    assert pubs(rig.at(press_at).press("emergency"), "alarm") == []
    assert rig.unit.emergency.next_deadline() == pytest.approx(press_at + HOLD)
    assert rig.unit.next_deadline() == pytest.approx(T0 + 1.2)  # the telemetry slot comes first
    out = rig.run_until(press_at + HOLD - 0.01)
    assert pubs(out, "alarm") == [] and pubs(out, "status") == []

    out = rig.run_until(press_at + HOLD)
    [p] = pubs(out, "alarm")
    assert p.lane is Lane.EMERGENCY and p.retain and p.qos == 1
    alarm = body(p)
    assert alarm["active"] is True and alarm["state"] == "pending" and alarm["id"] == A1
    assert alarm["unit"] == "KEN-C-01" and alarm["status"] == "available"
    assert alarm["ts"] == iso(press_at + HOLD)
    assert alarm["cancel_until"] == iso(press_at + HOLD + WINDOW)
    assert "fix" in alarm and alarm["fix"]["mode"] == 1
    assert one(out, "status")["emergency"] is True
    # The alarm goes out before the status message: highest priority first.
    assert [p.topic for p in pubs(out) if p.topic != "telemetry"] == ["alarm", "status"]

    out = rig.run_until(press_at + HOLD + WINDOW)
    alarm = one(out, "alarm")
    assert alarm["state"] == "active" and alarm["active"] is True and "cancel_until" not in alarm
    assert pubs(out, "status") == []  # emergency was already true
    assert rig.unit.emergency.next_deadline() is None


def test_release_after_raising_does_not_withdraw_the_alarm():
    rig = raised(Rig())
    assert pubs(rig.release("emergency")) == []
    assert rig.unit.emergency.state == "pending"


def test_late_tick_does_not_lengthen_the_hold():
    rig = Rig()
    rig.at(T0 + 0.1).press("emergency")
    out = rig.at(T0 + 2.9).tick()  # the wake-up came 0.8 s late
    alarm = one(out, "alarm")
    assert alarm["cancel_until"] == iso(T0 + 0.1 + HOLD + WINDOW)


def test_release_before_the_hold_publishes_nothing():
    rig = Rig()
    rig.at(T0 + 0.1).press("emergency")
    out = rig.at(T0 + 1.9).release("emergency")
    assert [p.topic for p in pubs(out)] == ["telemetry"]  # the 1 s slot, served on this event
    assert rig.unit.emergency.state == "none"
    out = rig.run_until(T0 + 20)
    assert [p.topic for p in pubs(out)] == ["telemetry"] * len(pubs(out))
    assert all(r["emergency"] is False for r in rig.reports())


def test_ack_inside_the_window_cancels_and_is_not_taken_as_a_call_accept():
    rig = Rig()
    rig.message("call", call_payload())
    raised(rig)
    out = rig.after(1).press("ack")
    alarm = one(out, "alarm")
    assert alarm == {**alarm, "active": False, "state": "cancelled", "id": A1}
    assert [p.retain for p in pubs(out, "alarm")] == [True]
    assert one(out, "status")["emergency"] is False
    assert pubs(out, "call/response") == []
    assert rig.unit.calls.shown().state == "received"
    assert rig.unit.emergency.state == "none"
    out = rig.run_until(T0 + 20)
    assert pubs(out, "alarm") == []
    assert all(r["emergency"] is False for r in rig.reports(out))


def test_ack_after_the_window_does_not_cancel():
    rig = raised(Rig())
    rig.run_until(rig.t + WINDOW)
    out = rig.press("ack")
    assert pubs(out, "alarm") == [] and out == [Feedback("refused")]
    assert rig.unit.emergency.state == "active"
    # The crew is told why: only dispatch can clear it now (not "no call").
    assert rig.unit.notice.detail == "alarm_not_cancellable"


def test_ack_after_the_window_still_accepts_a_waiting_call():
    rig = raised(Rig())
    rig.run_until(rig.t + WINDOW)
    rig.message("call", call_payload())
    out = rig.press("ack")
    assert [body(p)["response"] for p in pubs(out, "call/response")] == ["accepted"]
    assert rig.unit.emergency.state == "active"


def test_ack_exactly_at_the_end_of_the_window_is_too_late():
    rig = Rig()
    rig.at(T0).press("emergency")
    rig.at(T0 + HOLD).tick()
    out = rig.at(T0 + HOLD + WINDOW).press("ack")  # the deadline is applied first
    assert one(out, "alarm")["state"] == "active"
    assert rig.unit.emergency.state == "active"


def test_more_presses_of_emergency_change_nothing():
    rig = raised(Rig())
    for _ in range(3):
        out = rig.after(0.2).press("emergency") + rig.release("emergency")
        assert pubs(out, "alarm") == []
    assert rig.unit.emergency.state == "pending" and rig.unit.emergency.alarm_id == A1


def test_status_and_telemetry_carry_emergency_while_the_alarm_is_out():
    rig = raised(Rig())
    out = rig.after(0.1).press("en_route")
    assert one(out, "status")["emergency"] is True  # status changes still work during an alarm
    reports = rig.reports(rig.run_until(rig.t + 10))
    assert reports and all(r["emergency"] is True for r in reports)


# Without dispatch keys an answer may leave the alarm out ("the current one"); a signed one must name it.
@pytest.mark.parametrize("payload", [b"", b"  ", b"{}", named(A1), named(A1.upper()), b'{"id": null}'])
def test_dispatch_ack_then_clear(payload):
    rig = raised(Rig())
    out = rig.after(1).message("alarm/ack", payload)
    alarm = one(out, "alarm")
    assert alarm["state"] == "acknowledged" and alarm["active"] is True and alarm["id"] == A1
    assert rig.unit.emergency.next_deadline() is None  # the window is over once dispatch has acted
    assert rig.press("ack") == [Feedback("refused")]  # the officer can no longer cancel
    out = rig.after(1).message("alarm/clear", payload)
    alarm = one(out, "alarm")
    assert alarm["state"] == "cleared" and alarm["active"] is False and alarm["id"] == A1
    assert one(out, "status")["emergency"] is False
    assert rig.unit.emergency.state == "none"
    assert rig.unit.counters.messages_ignored == 0


def test_clear_naming_another_alarm_is_ignored():
    rig = raised(Rig())
    assert pubs(rig.message("alarm/ack", named(A2))) == []
    assert pubs(rig.message("alarm/clear", named(alarm_uuid(7)))) == []
    assert rig.unit.emergency.state == "pending"
    assert one(rig.message("alarm/clear", named(A1)), "alarm")["state"] == "cleared"


def test_dispatch_clear_of_a_pending_alarm_and_a_new_alarm_gets_a_new_id():
    rig = raised(Rig())
    rig.message("alarm/clear", b"")
    rig.after(1).press("emergency")
    out = rig.run_until(rig.t + HOLD)
    assert one(out, "alarm")["id"] == A2
    # The stale clear of the first alarm does not touch the second.
    assert pubs(rig.message("alarm/clear", named(A1)), "alarm") == []
    assert rig.unit.emergency.state == "pending"


def test_ack_or_clear_without_an_alarm_does_nothing():
    rig = Rig()
    assert pubs(rig.message("alarm/ack", b"")) == []
    assert pubs(rig.message("alarm/clear", named(A1))) == []


@pytest.mark.parametrize("payload", [
    b"\xff\xfe", b"clear", b"[1]", b"null", b"7", b'{"id": "1"}', b'{"id": true}', b'{"id": 1.0}',
    b'{"id": 1}', named(A1[:-1]), named("{" + A1 + "}"),  # numbered ids are gone; a UUID exactly
    b"[" * 100_000, b'{"id":' * 50_000,  # nested past the JSON decoder's recursion limit
])
def test_garbled_alarm_message_is_ignored_and_counted(payload):
    rig = raised(Rig())
    for topic in ("alarm/ack", "alarm/clear"):
        assert pubs(rig.message(topic, payload)) == []
    assert rig.unit.emergency.state == "pending"
    assert rig.unit.counters.messages_ignored == 2


def test_active_alarm_survives_a_restart_and_is_republished():
    rig = raised(Rig())
    stored = json.loads(json.dumps(rig.unit.persistent_state()))
    again = Rig(t0=T0 + 600, ids=rig.unit.alarm_ids)
    out = again.unit.restore(stored, now(again.t))
    alarm = one(out, "alarm")
    assert alarm["active"] is True and alarm["id"] == A1
    assert alarm["state"] == "active"  # pending at the power cut: back as active, no new window
    assert one(out, "status")["emergency"] is True
    assert again.unit.emergency.cancellable is False
    # Republished at each connect, carried in telemetry.
    assert one(again.link_up(), "alarm")["state"] == "active"
    assert all(r["emergency"] for r in again.reports(again.run_until(T0 + 603)))
    # Only dispatch clears it; the next alarm does not reuse the id.
    assert one(again.message("alarm/clear", b""), "alarm")["state"] == "cleared"
    again.press("emergency")
    assert one(again.run_until(again.t + HOLD), "alarm")["id"] == A2


def test_acknowledged_alarm_survives_a_restart():
    rig = raised(Rig())
    rig.message("alarm/ack", b"")
    again = Rig(t0=T0 + 600)
    assert one(again.unit.restore(rig.unit.persistent_state(), now(again.t)), "alarm")["state"] == "acknowledged"


def test_hold_in_progress_does_not_survive_a_restart():
    rig = Rig()
    rig.press("emergency")
    again = Rig(t0=T0 + 600)
    assert again.unit.restore(rig.unit.persistent_state(), now(again.t)) == []
    assert pubs(again.run_until(T0 + 610), "alarm") == []


def test_wake_up_after_both_deadlines_still_says_when_the_window_closed():
    """A wake-up later than hold + window publishes pending then active; pending keeps its cancel_until."""
    rig = Rig()
    rig.at(T0 + 0.1).press("emergency")
    out = rig.at(T0 + 10).tick()
    alarms = [body(p) for p in pubs(out, "alarm")]
    assert [a["state"] for a in alarms] == ["pending", "active"]
    assert alarms[0]["cancel_until"] == iso(T0 + 0.1 + HOLD + WINDOW)
    assert one(out, "status")["emergency"] is True


def test_no_cancel_window_goes_straight_to_active():
    from tests.support.unit_rig import config
    rig = Rig(config(panel={"emergency_cancel_s": 0}))
    rig.at(T0 + 0.1).press("emergency")
    out = rig.run_until(T0 + 0.1 + HOLD)
    assert [body(p)["state"] for p in pubs(out, "alarm")] == ["pending", "active"]
    assert rig.unit.emergency.state == "active"
    assert rig.press("ack") == [Feedback("refused")]


def test_status_republished_after_restart_names_the_restored_call():
    from tests.support.unit_rig import call_payload
    rig = Rig()
    rig.message("call", call_payload())
    rig.press("ack")
    raised(rig, at=rig.t + 1)
    stored = json.loads(json.dumps(rig.unit.persistent_state()))
    again = Rig(t0=T0 + 600)
    out = again.unit.restore(stored, now(again.t))
    assert one(out, "status")["call"] == {"id": "C-1001", "state": "accepted"}
    assert one(out, "status")["emergency"] is True
