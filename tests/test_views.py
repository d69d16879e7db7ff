"""What the LEDs, the rider display and the touchscreen show, from the unit's state (pure)."""

from __future__ import annotations

import json

import pytest

from agent.core import views
from agent.core.emergency import EmergencyState
from tests.support.unit_rig import Rig, call_payload, config


def test_idle_unit_without_a_fix():
    rig = Rig(config("car"))
    led = views.indicator_view(rig.unit, rig.now())
    assert (led.status, led.link_up, led.gnss_fix, led.call_priority) == ("available", False, False, None)
    snap = views.screen_snapshot(rig.unit, rig.now(), backlog=7)
    assert snap["gnss"] == {"mode": 0, "lat": None, "lon": None, "speed": None, "track": None, "age": None,
                            "receiver": "no_fix", "stale": False, "heading_deg": None}
    assert snap["link"] == {"online": False, "backlog": 7, "since_s": 0.0, "alert_after_s": 10.0}
    assert snap["call"] is None and snap["notice"] is None
    assert snap["status_buttons"] == ["available", "en_route", "on_scene", "busy", "out_of_service"]
    assert {"ack", "decline", "cleared", "emergency"} <= set(snap["inputs"])
    json.dumps(snap, allow_nan=False)  # plain JSON: the web UI refuses anything else


def test_a_new_call_seen_from_the_current_fix():
    rig = Rig(config("motorcycle", panel={"language": "ar"}))
    rig.link_up()
    rig.fix(lat=34.2610, lon=-6.5802)
    rig.message("call", call_payload(priority=1, location={"lat": 34.2700, "lon": -6.5802}))
    led = views.indicator_view(rig.unit, rig.now())
    assert led.call_priority == 1 and not led.call_acknowledged and led.gnss_fix
    snap = views.screen_snapshot(rig.unit, rig.now())
    # About 1 km due north.
    assert snap["call"]["distance_m"] == pytest.approx(1000.8, abs=2)
    assert snap["call"]["bearing_deg"] == pytest.approx(0.0, abs=0.5)
    assert snap["call"]["acknowledged"] is False
    rider = views.rider_view(rig.unit, rig.now(), "10:20")
    assert rider.lang == "ar" and rider.call.priority == 1 and rider.call.distance_m == pytest.approx(1000.8, abs=2)
    rig.press("ack")
    assert views.indicator_view(rig.unit, rig.now()).call_acknowledged


def test_a_stale_fix_keeps_the_last_distance_and_bearing_marked_with_their_age_and_the_gnss_led_goes_off():
    rig = Rig(config("car"))
    rig.fix()
    rig.message("call", call_payload(location={"lat": 34.27, "lon": -6.58}))
    fresh = views.screen_snapshot(rig.unit, rig.now())["call"]
    assert fresh["distance_m"] > 900 and fresh["position_age_s"] is None  # a current fix: no age mark
    rig.after(30).tick()
    assert not views.indicator_view(rig.unit, rig.now()).gnss_fix
    snap = views.screen_snapshot(rig.unit, rig.now())
    assert snap["gnss"]["mode"] == 1 and snap["gnss"]["age"] >= 30
    # The way to the call is kept rather than blanked, from where the unit was, and says how old it is.
    call = snap["call"]
    assert (call["distance_m"], call["bearing_deg"]) == (fresh["distance_m"], fresh["bearing_deg"])
    assert call["position_age_s"] >= 30
    rider = views.rider_view(rig.unit, rig.now()).call
    assert rider.distance_m == pytest.approx(fresh["distance_m"], abs=0.1) and rider.compass == "N"
    assert rider.relative_bearing_deg is None and rider.position_age_s >= 30  # no arrow: the heading is old


def test_a_call_without_any_position_ever_has_no_distance_and_no_age():
    rig = Rig(config("car"))
    rig.message("call", call_payload(location={"lat": 34.27, "lon": -6.58}))
    call = views.screen_snapshot(rig.unit, rig.now())["call"]
    assert call["distance_m"] is None and call["position_age_s"] is None
    assert views.rider_view(rig.unit, rig.now()).call.distance_m is None


def test_a_refused_press_shows_a_notice_for_a_while_in_the_screen_language():
    rig = Rig(config("car", ui={"language": "ar"}))
    rig.press("available")  # already available
    notice = views.screen_snapshot(rig.unit, rig.now())["notice"]
    assert notice["kind"] == "refused" and notice["text"] == views.catalogs(rig.unit)["ar"]("status.refused")
    rig.after(views.NOTICE_S + 1).tick()
    assert views.screen_snapshot(rig.unit, rig.now())["notice"] is None


def test_emergency_countdown_and_holding_is_not_an_alarm_on_the_rider_display():
    rig = Rig(config("motorcycle"))
    rig.press("emergency")
    assert views.rider_view(rig.unit, rig.now()).emergency == "none"
    assert views.screen_snapshot(rig.unit, rig.now())["emergency"]["state"] == "holding"
    rig.after(2.1).tick()
    assert rig.unit.emergency.state is EmergencyState.PENDING
    em = views.screen_snapshot(rig.unit, rig.now())["emergency"]
    assert em["state"] == "pending" and 0 < em["cancel_deadline_s"] <= 5.0
    assert views.rider_view(rig.unit, rig.now()).emergency == "pending"


def test_fleet_labels_reach_every_screen():
    rig = Rig(config("car", panel={"labels": {"fr": {"busy": "Indisponible"}}}))
    snap = views.screen_snapshot(rig.unit, rig.now())
    assert snap["status_labels"]["fr"]["busy"] == "Indisponible"
    assert snap["status_labels"]["ar"]["busy"] != "Indisponible"
    assert views.display_labels(rig.unit)["fr"] == {"status.busy": "Indisponible"}


def test_the_touch_cancel_is_offered_only_inside_the_window_and_cancels_there():
    rig = Rig(config("car"))
    assert "emergency_cancel" not in views.screen_snapshot(rig.unit, rig.now())["inputs"]
    rig.press("emergency", source="touch")
    rig.after(2.1).tick()
    assert "emergency_cancel" in views.screen_snapshot(rig.unit, rig.now())["inputs"]
    rig.press("emergency_cancel", source="touch")
    assert rig.unit.emergency.state is EmergencyState.NONE
    assert "emergency_cancel" not in views.screen_snapshot(rig.unit, rig.now())["inputs"]


def test_status_since_the_crew_set_it_and_kept_over_a_restart():
    rig = Rig(config("car"))
    assert views.screen_snapshot(rig.unit, rig.now())["status_since"] is None
    rig.press("busy")
    set_at = views.screen_snapshot(rig.unit, rig.now())["status_since"]
    assert set_at == views.screen_snapshot(rig.unit, rig.now())["now"]
    rig.after(600).tick()
    assert views.screen_snapshot(rig.unit, rig.now())["status_since"] == set_at
    stored = json.loads(json.dumps(rig.unit.persistent_state()))
    again = Rig(config("car"))
    again.unit.restore(stored, again.now())
    assert views.screen_snapshot(again.unit, again.now())["status_since"] == set_at


def test_a_cancelled_call_notice_names_the_call_and_the_reason():
    rig = Rig(config("car"))
    rig.message("call", call_payload(id="C-9", nature="Rixe sur la voie publique"))
    rig.message("call", json.dumps({"id": "C-9", "action": "cancel", "reason": "doublon"}).encode())
    notice = views.screen_snapshot(rig.unit, rig.now())["notice"]
    assert notice["kind"] == "cancelled"
    assert notice["subject"] == "Rixe sur la voie publique" and notice["reason"] == "doublon"


def test_a_silent_receiver_is_told_apart_from_no_fix():
    from agent.core.events import GnssLost

    rig = Rig(config("car"))
    rig.fix()
    assert views.screen_snapshot(rig.unit, rig.now())["gnss"]["receiver"] == "ok"
    rig.send(GnssLost("silent", rig.t))
    assert views.screen_snapshot(rig.unit, rig.now())["gnss"]["receiver"] == "lost"


def test_accept_on_the_touchscreen_accepts_the_call_even_in_the_cancel_window():
    rig = Rig(config("car"))
    rig.message("call", call_payload())
    rig.press("emergency", source="touch")
    rig.after(2.1).tick()
    assert rig.unit.emergency.state is EmergencyState.PENDING
    rig.press("ack", source="touch")  # the screen's "ACCEPTER": it says accept, it accepts
    assert rig.unit.emergency.state is EmergencyState.PENDING
    assert rig.unit.calls.shown().state == "accepted"
    rig.press("ack")  # the panel's ack keeps its rule: inside the window it cancels
    assert rig.unit.emergency.state is EmergencyState.NONE


def test_the_screens_get_the_parked_state_and_the_receiver_state():
    from agent.core import views
    from tests.support.unit_rig import T0, Rig, config

    rig = Rig(config(power={"ignition_pin": 4}))
    rig.at(T0 + 0.5).ignition(False)
    rig.at(T0 + 0.6).gnss_lost()
    snap = views.screen_snapshot(rig.unit, rig.now())
    assert snap["power"] == {"ignition": "off", "parked": True}
    assert snap["gnss"]["receiver"] == "lost"
    panel = views.rider_view(rig.unit, rig.now())
    assert (panel.parked, panel.gnss_lost) == (True, True)
    rig.at(T0 + 1.0).ignition(True)
    rig.at(T0 + 1.1).gnss_restored()
    panel = views.rider_view(rig.unit, rig.now())
    assert (panel.parked, panel.gnss_lost) == (False, False)
