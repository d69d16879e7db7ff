"""The car touchscreen in Chromium: the page follows the rules the snapshot carries.

The page holds no rule of its own (agent/core/screen_rules.py derives them).
These tests state a rule in the snapshot that differs from what the core
would derive, and check the page obeys the snapshot: a page that kept its own
copy of a rule would fail them.
"""

from __future__ import annotations

from tests.test_web_ui import (  # noqa: F401  (fixtures)
    INPUTS, browser, browser_test, call, is_event, needs_chromium, open_page, page, recorder, snapshot, ui,
)
from agent.core.events import ButtonPressed


@browser_test
@needs_chromium
def test_the_hold_time_and_the_call_steps_come_from_the_snapshot(page, ui):
    expect = open_page(page, ui, snapshot(emergency={"state": "none", "since": None, "cancel_deadline_s": None,
                                                     "hold_s": 4.0}))
    expect(page.locator("#actions .sos .sos-hint")).to_have_text("maintenir \u20684\u2069 s")
    # A new call the snapshot keeps off the full screen, with a single step offered.
    ui.update(snapshot(call=call(), takeover=False, call_controls=["cleared"]))
    expect(page.locator("#call")).to_be_visible()
    expect(page.locator("#takeover")).to_be_hidden()
    expect(page.locator("#call-controls button")).to_have_count(1)
    expect(page.locator("#call-controls button")).to_have_attribute("data-input", "cleared")
    page.wait_for_function("() => document.getElementById('alert-audio').paused")


@browser_test
@needs_chromium
def test_what_a_touch_on_the_alarm_control_does_comes_from_the_snapshot(page, ui, recorder):
    expect = open_page(page, ui, snapshot(emergency={"state": "none", "since": None, "cancel_deadline_s": None,
                                                     "hold_s": 2.0, "control": "none"}))
    sos = page.locator("#actions .sos")
    sos.click()
    # "cancel" while pending: the same touch now posts the cancel, never the alarm.
    ui.update(snapshot(emergency={"state": "pending", "since": None, "cancel_deadline_s": 20.0, "hold_s": 2.0},
                       inputs=[*INPUTS, "emergency_cancel"]))
    expect(sos).to_have_attribute("data-state", "pending")
    sos.click()
    recorder.wait_for(is_event(ButtonPressed, "emergency_cancel"))
    assert not any(e.name == "emergency" for e in recorder.events)


@browser_test
@needs_chromium
def test_the_cancel_window_ends_in_the_state_the_snapshot_names(page, ui):
    expect = open_page(page, ui, snapshot(
        emergency={"state": "pending", "since": None, "cancel_deadline_s": 1.0, "hold_s": 2.0,
                   "at_deadline": {"state": "acknowledged", "control": "none"}},
        inputs=[*INPUTS, "emergency_cancel"]))
    sos = page.locator("#actions .sos")
    expect(sos).to_have_attribute("data-state", "pending")
    # Counted down on the page, then what the agent said the window ends in, without a new snapshot.
    expect(sos).to_have_attribute("data-state", "acknowledged", timeout=4000)
    expect(page.locator("#band-alarm")).to_contain_text("URGENCE REÇUE")
