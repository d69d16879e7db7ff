"""A call shown while the unit has no trusted time: its age is marked unverified on every screen.

Without a GNSS fix and with the system clock not synchronised, a call's ``created`` cannot be
compared with the unit's clock: the call is shown (docs/safety.md, H4), and its age is said to
be unknown rather than guessed, on the touchscreen page (in Chromium), the rider's OLED panel
(luma's dummy device) and the 20x4 character display. Once the unit has a trusted clock, the
age is counted on it (the receiver's UTC, not an unsynchronised system clock).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from agent.adapters.char_lcd import char_lines
from agent.adapters.panel_display import open_display
from agent.core import views
from agent.core.i18n import Catalog
from agent.core.panel_view import CallSummary, PanelView
from tests.support.unit_rig import WALL0, Rig, call_payload, config
from tests.test_web_ui import (  # noqa: F401 - the page fixtures (the browser is conftest's, one per worker)
    browser_test, call, needs_chromium, open_page, page, recorder, snapshot, ui,
)

CREATED = "2026-11-25T19:58:00Z"  # two minutes before the rig's wall clock (WALL0)


def shown_call(rig: Rig) -> dict:
    return views.screen_snapshot(rig.unit, rig.now())["call"]


def test_without_trusted_time_the_call_is_shown_with_its_age_unknown():
    rig = Rig(synced=False)
    rig.message("call", call_payload(created=CREATED))
    body = shown_call(rig)
    assert body["id"] == "C-1001" and body["age_verified"] is False
    panel = views.rider_view(rig.unit, rig.now()).call
    assert panel.age_verified is False and panel.age_s is None


def test_with_gnss_time_the_age_is_counted_on_the_receivers_clock_not_the_system_clock():
    rig = Rig(synced=False)
    rig.message("call", call_payload(created=CREATED))
    rig.after(1.0).fix()  # the receiver agrees with the rig's wall clock: 20:00:01
    body = shown_call(rig)
    assert body["age_verified"] is True
    assert views.screen_snapshot(rig.unit, rig.now())["now"].startswith("2026-11-25T20:00:01")
    panel = views.rider_view(rig.unit, rig.now()).call
    assert panel.age_verified is True and panel.age_s == pytest.approx(121.0)


def test_a_synchronised_clock_verifies_the_age():
    rig = Rig(synced=True)
    rig.message("call", call_payload(created=CREATED))
    assert shown_call(rig)["age_verified"] is True
    assert views.rider_view(rig.unit, rig.now()).call.age_s == pytest.approx(120.0)


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_the_rider_panel_marks_an_unverified_age_beside_the_distance(lang):
    panel = open_display("dummy")
    unverified = CallSummary("C", 1, "Vol à l'arraché", "Rue Ibn Sina", 850.0, 40.0, 35.0, age_verified=False)
    image, placed = panel.render_layout(PanelView(lang=lang, gnss_fix=3, call=unverified, waiting=2))
    roles = {p.role: p for p in placed}
    mark, distance, waiting = roles["age-unverified"], roles["distance"], roles["waiting"]
    assert mark.text == Catalog(lang)("call.age_unverified")
    for other in (distance, waiting):  # beside them, never over
        assert mark.ink[0] >= other.ink[2] or mark.ink[2] <= other.ink[0]
    verified = CallSummary("C", 1, "Vol à l'arraché", "Rue Ibn Sina", 850.0, 40.0, 35.0)
    assert "age-unverified" not in {p.role for p in panel.render_layout(PanelView(lang=lang, gnss_fix=3,
                                                                                    call=verified))[1]}


def test_the_character_display_marks_an_unverified_age():
    unverified = CallSummary("C", 1, "Vol", "Rue Ibn Sina", 850.0, 40.0, 35.0, age_verified=False)
    lines = char_lines(PanelView(lang="fr", gnss_fix=3, call=unverified), cols=20, rows=4)
    assert lines[-1].rstrip().endswith("age?") and len(lines[-1]) <= 20
    verified = CallSummary("C", 1, "Vol", "Rue Ibn Sina", 850.0, 40.0, 35.0)
    assert "age?" not in "".join(char_lines(PanelView(lang="fr", gnss_fix=3, call=verified), cols=20, rows=4))


@browser_test
@needs_chromium
@pytest.mark.parametrize(("lang", "text"), [("fr", "âge non vérifié"), ("ar", "العمر غير مؤكد")])
def test_the_touchscreen_says_the_age_is_unverified_instead_of_guessing_it(page, ui, lang, text):
    expect = open_page(page, ui, snapshot(lang, now="2018-01-01T00:00:00Z",  # a clock never set
                                          call=call(created="2024-03-01T10:18:05Z", age_verified=False)))
    age = page.locator("#takeover .age")
    expect(age).to_have_text(text)
    expect(age).to_have_class("age unverified")
    # Trusted time again: the age is counted.
    ui.update(snapshot(lang, now="2024-03-01T10:20:30Z", call=call(created="2024-03-01T10:18:05Z", age_verified=True)))
    expect(age).not_to_have_text(text)
    expect(age).not_to_have_class("age unverified")


def test_the_snapshot_carries_the_mark_as_json():
    rig = Rig(config(), synced=False)
    rig.message("call", call_payload(created=CREATED))
    assert json.loads(json.dumps(views.screen_snapshot(rig.unit, rig.now())))["call"]["age_verified"] is False
    assert WALL0.tzinfo is dt.timezone.utc
