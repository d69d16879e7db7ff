"""The panel's view model and the call summary seen from the vehicle (agent.core.panel_view)."""

import pytest

from agent.core.events import Fix
from agent.core.i18n import Catalog
from agent.core.panel_view import (
    NEAR_M, CallSummary, PanelView, format_age, spoken_call, summarize_call,
)

KENITRA = (34.2610, -6.5802)
RABAT = (34.0209, -6.8416)


def fix(lat=KENITRA[0], lon=KENITRA[1], *, mode=3, speed=12.0, track=0.0):
    return Fix(mode=mode, lat=lat, lon=lon, speed=speed, track=track)


def summary(location=RABAT, at=None, **kw):
    return summarize_call(call_id="C-1", priority=1, nature=" Vol ", address="Bab el Had ", location=location,
                          fix=at if at is not None else fix(), **kw)


def test_moving_vehicle_gets_distance_and_relative_arrow():
    s = summary(at=fix(track=220.0))  # riding south-west, towards Rabat
    assert 35_000 < s.distance_m < 37_500
    assert 215 < s.bearing_deg < 230
    assert abs(s.relative_bearing_deg) < 10  # nearly straight ahead
    assert s.compass == "SW"
    assert (s.nature, s.address) == ("Vol", "Bab el Had")  # trimmed


def test_relative_bearing_follows_the_track():
    ahead = summary(at=fix(track=222.0)).relative_bearing_deg
    right = summary(at=fix(track=132.0)).relative_bearing_deg  # heading south-east: Rabat is to the right
    behind = summary(at=fix(track=42.0)).relative_bearing_deg
    assert ahead == pytest.approx(right - 90, abs=0.5)
    assert abs(behind) == pytest.approx(180, abs=1)


def test_stopped_vehicle_gets_no_arrow_but_a_compass_point():
    s = summary(at=fix(speed=0.3, track=17.0))
    assert s.relative_bearing_deg is None and s.bearing_deg is not None and s.compass == "SW"
    assert summary(at=fix(speed=None, track=None)).relative_bearing_deg is None
    assert summary(at=fix(speed=None, track=220.0)).relative_bearing_deg is not None  # no speed given: trust the track


def test_near_the_incident_there_is_no_direction():
    here = (KENITRA[0] + 0.0001, KENITRA[1])  # ~11 m north
    s = summary(location=here)
    assert s.distance_m < NEAR_M and s.near
    assert s.bearing_deg is None and s.relative_bearing_deg is None and s.compass is None


def test_no_fix_or_no_location():
    for at in (fix(mode=1), Fix()):
        s = summary(at=at)
        assert s.distance_m is None and s.bearing_deg is None and s.has_location
    s = summary(location=None)
    assert s.distance_m is None and not s.has_location
    assert summarize_call(call_id="C", priority=2, nature="x", location=RABAT, fix=None).distance_m is None


@pytest.mark.parametrize("kwargs, needle", [
    ({"priority": 4}, "priority"),
    ({"distance_m": -1.0}, "distance_m"),
    ({"relative_bearing_deg": float("nan")}, "relative_bearing_deg"),
])
def test_call_summary_validates(kwargs, needle):
    base = {"id": "C", "priority": 1, "nature": "x"}
    with pytest.raises(ValueError, match=needle):
        CallSummary(**{**base, **kwargs})


@pytest.mark.parametrize("kwargs, needle", [
    ({"lang": "en"}, "lang"),
    ({"status": ""}, "status"),
    ({"gnss_fix": 4}, "gnss_fix"),
    ({"emergency": "panic"}, "emergency"),
])
def test_panel_view_validates(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        PanelView(**kwargs)


def test_views_compare_by_value():
    call = CallSummary("C", 1, "Vol")
    assert PanelView(call=call, link_up=True) == PanelView(call=CallSummary("C", 1, "Vol"), link_up=True)
    assert PanelView(call=call) != PanelView(call=call, emergency="active")


def test_age_wording():
    fr, ar = Catalog("fr"), Catalog("ar")
    assert format_age(42.9, fr) == "il y a 42 s"
    assert format_age(185, fr) == "il y a 3 min"
    assert format_age(3_900, fr) == "il y a 1 h 05"
    assert format_age(185, ar) == "منذ 3 د"
    assert format_age(-5, fr) == "il y a 0 s"  # clock skew never shows a negative age


def test_spoken_call_uses_words_not_symbols():
    s = summary(at=fix(track=220.0))
    text = spoken_call(s, Catalog("fr"))
    assert text.startswith("Nouvel appel, priorité 1. Vol. Bab el Had.")
    assert text.endswith("À 36 kilomètres, direction sud-ouest.")
    ar = spoken_call(CallSummary("C", 2, "حادثة سير", "", 850.0, 90.0), Catalog("ar"))
    assert ar == "نداء جديد، أولوية 2. حادثة سير. على بعد 850 متر، في اتجاه الشرق."
    assert spoken_call(CallSummary("C", 3, "Tapage"), Catalog("fr")) == "Nouvel appel, priorité 3. Tapage."
