"""The core unit (agent.core.unit.Unit): status, siren, the link, restarts.

Emergency, calls, telemetry and the fuzz test have their own files (tests/test_unit_*.py);
all drive the pure core through tests/support/unit_rig.py.
"""

import json

import pytest

from agent.core.effects import Feedback
from agent.core.events import StorageChanged
from agent.core.publish import Lane
from agent.core.unit import SUBSCRIPTIONS, Unit
from tests.support.unit_rig import T0, Rig, alarm_ids, alarm_uuid, body, call_payload, config, iso, now, one, pubs


def status_of(effects) -> dict:
    return one(effects, "status")


# ------------------------------------------------------------------ status


def test_initial_status_is_the_configured_default():
    assert Rig().unit.status.state == "available"
    rig = Rig(config(panel={"default_status": "out_of_service"}))
    assert rig.unit.status.state == "out_of_service"


def test_status_press_publishes_at_once_retained_on_the_status_lane():
    rig = Rig()
    out = rig.at(T0 + 0.3).press("en_route")
    [p] = pubs(out, "status")
    assert p.lane is Lane.STATUS and p.retain and p.qos == 1 and p.seq is None
    assert body(p) == {"status": "en_route", "siren": False, "call": None, "emergency": False, "ignition": None,
                       "fix": {"receiver": "no_fix"}, "ts": iso(T0 + 0.3), "time_source": "system",
                       "durable": True, "durable_reason": None}
    assert Feedback("accepted") in out
    assert pubs(out, "telemetry") == []  # not waiting for, nor forcing, a report
    assert rig.unit.status.state == "en_route"
    assert rig.reports(rig.run_until(T0 + 1.5))[-1]["status"] == "en_route"


def test_touch_and_remote_take_the_same_path_as_the_panel():
    for source in ("touch", "remote"):
        rig = Rig()
        out = rig.press("busy", source=source)
        assert status_of(out)["status"] == "busy"
        assert Feedback("accepted") in out


@pytest.mark.parametrize("path, target, reason", [
    (["en_route"], "out_of_service", "must_clear_first"),
    (["out_of_service"], "en_route", "return_via_available"),
    ([], "available", "same_status"),
])
def test_invalid_transition_is_refused_with_feedback_and_a_notice(path, target, reason):
    rig = Rig()
    for name in path:
        rig.press(name)
    revision = rig.unit.revision
    before = rig.unit.status.state
    out = rig.after(0.5).press(target)
    assert out == [Feedback("refused")]
    assert rig.unit.status.state == before
    assert rig.unit.notice is not None
    assert (rig.unit.notice.kind, rig.unit.notice.detail, rig.unit.notice.mono) == ("refused", reason, rig.t)
    assert rig.unit.counters.presses_refused == 1
    assert rig.unit.revision > revision  # the screens show the notice


def test_motorcycle_has_no_busy_button():
    rig = Rig(config("motorcycle"))
    assert rig.press("busy") == [Feedback("refused")]
    assert rig.unit.notice.detail == "no_such_button"


def test_unknown_input_is_refused_not_ignored():
    rig = Rig()
    assert rig.press("lightbar") == [Feedback("refused")]
    assert rig.unit.notice.detail == "unknown_input"


def test_status_survives_a_restart_through_persistent_state():
    rig = Rig()
    rig.press("en_route")
    rig.after(1).press("on_scene")
    stored = json.loads(json.dumps(rig.unit.persistent_state()))  # what the runtime writes to disk
    again = Rig(t0=T0 + 500)
    assert again.unit.restore(stored, now(again.t)) == []  # nothing to republish but the alarm
    assert again.unit.status.state == "on_scene"
    assert status_of(again.link_up())["status"] == "on_scene"
    assert again.reports(again.run_until(T0 + 501.5))[-1]["status"] == "on_scene"


def test_restore_ignores_an_unknown_status_code():
    rig = Rig()
    rig.unit.restore({"status": "lunch"}, rig.now())
    assert rig.unit.status.state == "available"


# ------------------------------------------------------------------- siren


def test_siren_change_publishes_status_once_per_change():
    rig = Rig()
    out = rig.at(T0 + 0.4).siren(True)
    assert status_of(out) == {"status": "available", "siren": True, "call": None, "emergency": False,
                              "ignition": None, "fix": {"receiver": "no_fix"}, "ts": iso(T0 + 0.4),
                              "time_source": "system", "durable": True, "durable_reason": None}
    assert pubs(rig.after(0.1).siren(True)) == []  # same state again: no message
    assert status_of(rig.after(0.1).siren(False))["siren"] is False
    assert rig.reports(rig.run_until(T0 + 1.5))[-1]["siren"] is False


# -------------------------------------------------------------------- link


def test_link_up_republishes_status():
    rig = Rig()
    rig.press("busy")
    out = rig.after(2).link_up()
    assert rig.unit.link_up
    assert status_of(out)["status"] == "busy"
    assert pubs(out, "alarm") == []
    out = rig.after(1).link_down()
    assert not rig.unit.link_up and pubs(out, "status") == []


def test_link_up_republishes_an_active_alarm_too():
    rig = Rig()
    rig.at(T0 + 0.1).press("emergency")
    rig.run_until(T0 + 8)
    assert rig.unit.emergency.state == "active"
    out = rig.link_up()
    alarm = one(out, "alarm")
    assert alarm["active"] is True and alarm["state"] == "active" and alarm["id"] == alarm_uuid(1)
    assert [p.lane for p in pubs(out, "alarm")] == [Lane.EMERGENCY]
    assert status_of(out)["emergency"] is True


def test_link_state_changes_bump_the_revision():
    rig = Rig()
    r0 = rig.unit.revision
    rig.link_up()
    r1 = rig.unit.revision
    rig.link_down()
    assert r0 < r1 < rig.unit.revision


# ------------------------------------------------------------------- misc


def test_subscriptions_cover_the_inbound_contract():
    assert {"call", "alarm/ack", "alarm/clear"} <= set(SUBSCRIPTIONS)


def test_unknown_topic_is_counted_not_fatal():
    rig = Rig()
    assert pubs(rig.message("weather", b"{}")) == []
    assert rig.unit.counters.messages_ignored == 1


def test_status_message_carries_the_call_being_shown():
    rig = Rig()
    rig.message("call", call_payload())
    rig.press("ack")
    out = rig.after(1).press("en_route")
    msg = status_of(out)
    assert msg["status"] == "en_route"
    assert msg["call"]["id"] == "C-1001"


def test_persistent_state_is_json():
    rig = Rig()
    rig.message("call", call_payload())
    rig.press("emergency")
    rig.run_until(T0 + 3)
    state = rig.unit.persistent_state()
    assert json.loads(json.dumps(state)) == json.loads(json.dumps(state, sort_keys=True))
    assert set(state) == {"status", "status_since", "emergency", "calls"}


def test_unit_constructor_contract():
    unit = Unit(config(), 5, now(T0), alarm_ids=alarm_ids())
    assert unit.next_seq == 5 and unit.link_up is False and unit.siren is False
    assert unit.last_valid is None and unit.notice is None and unit.calls.shown() is None
    assert isinstance(unit.next_deadline(), float)


def test_a_hot_config_change_keeps_status_alarm_and_calls():
    rig = Rig(config("car"))
    rig.press("busy")
    rig.message("call", call_payload())
    rig.run_until(T0 + 10)
    # Now 2 Hz, motorcycle buttons (no "busy"), faster alarm hold.
    new = config("car", telemetry={"rate_hz": 2.0}, panel={
        "emergency_hold_s": 1.0,
        "status_buttons": {"car": ["available", "en_route", "on_scene", "out_of_service"]},
    })
    rig.unit.reconfigure(new, rig.now())
    assert rig.unit.status.state == "busy" and rig.unit.calls.shown() is not None
    before = len(rig.reports())
    rig.run_until(T0 + 20)
    assert len(rig.reports()) - before == 20
    seqs = [r["seq"] for r in rig.reports()]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert pubs(rig.press("busy"), "status") == []  # the button is gone now
    rig.press("emergency")
    rig.after(1.05).tick()
    assert rig.unit.emergency.state.value == "pending"


# ----------------------------------------------------------------- storage


def test_status_says_at_once_when_the_card_stops_and_starts_taking_what_the_unit_keeps():
    rig = Rig()
    rig.link_up()
    full = "outbox writes refused (the card is full); records kept in memory"
    out = rig.after(1).send(StorageChanged(False, full, rig.t))
    assert status_of(out)["durable"] is False and status_of(out)["durable_reason"] == full
    assert not pubs(rig.after(1).send(StorageChanged(False, full, rig.t)), "status")  # no change, no message
    # Reports go on meanwhile, and the status the next connect sends says it too.
    assert pubs(rig.after(1).tick(), "telemetry")
    assert status_of(rig.link_up())["durable"] is False
    back = status_of(rig.after(1).send(StorageChanged(True, None, rig.t)))
    assert back["durable"] is True and back["durable_reason"] is None
