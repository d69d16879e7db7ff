"""The car touchscreen in Chromium: the page follows the rules the snapshot carries.

The page holds no rule of its own (agent/core/screen_rules.py derives them).
These tests state a rule in the snapshot that differs from what the core
would derive, and check the page obeys the snapshot: a page that kept its own
copy of a rule would fail them.
"""

from __future__ import annotations

from tests.test_web_ui import (  # noqa: F401  (fixtures)
    INPUTS, browser_test, call, is_event, needs_chromium, open_page, page, recorder, snapshot, ui,
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


# --------------------------------------------------------- issue 28: the crew's points

import copy  # noqa: E402
import json  # noqa: E402
import queue  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402

from agent.adapters.web_ui import WebUi  # noqa: E402
from agent.core import views  # noqa: E402
from agent.core.dispatch import READ_S  # noqa: E402
from agent.core.events import ButtonReleased  # noqa: E402
from tests.support.unit_rig import Rig, call_payload, config  # noqa: E402
from tests.test_web_ui import (  # noqa: E402
    ARABIC_CALL, ARTIFACTS, HEIGHT, TIMEOUT_S, WIDTH, check_layout,
)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("document.fonts.ready")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), animations="disabled")


def text_of(lang: str) -> dict:
    return ARABIC_CALL if lang == "ar" else {}


@browser_test
@needs_chromium
@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_a_new_call_shows_its_details_and_the_calls_waiting_before_it_is_accepted(page, ui, lang):
    # The alarm band and a notice take room: the details still show before the call is answered.
    snap = snapshot(lang, call=call(**text_of(lang)), waiting=2,
                    emergency={"state": "active", "since": None, "cancel_deadline_s": None, "hold_s": 2.0})
    expect = open_page(page, ui, snap)
    over = page.locator("#takeover")
    expect(over).to_be_visible()
    details = over.locator(".details")
    expect(details).to_be_visible()
    expect(details).to_contain_text("armé d'un couteau" if lang == "fr" else "دراجة نارية")
    expect(over.locator(".waiting")).to_contain_text("+\u20682\u2069")
    check_layout(page)
    shot(page, f"call-details-waiting-{lang}")
    ui.update(snapshot(lang, call=call(**text_of(lang), state="accepted", acknowledged=True), waiting=1))
    expect(page.locator("#call .waiting")).to_contain_text("+\u20681\u2069")


@browser_test
@needs_chromium
@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_refuser_asks_for_confirmation_and_goes_back_by_itself(page, ui, recorder, lang):
    expect = open_page(page, ui, snapshot(lang, call=call(**text_of(lang)), confirm={"decline": 1.0}))
    decline = page.locator("#btn-decline")
    first = decline.inner_text()
    decline.click()
    expect(decline).to_have_class(re.compile(r"\bconfirm\b"))
    expect(decline).not_to_have_text(first)
    check_layout(page)
    shot(page, f"decline-confirm-{lang}")
    assert recorder.events == []
    expect(decline).to_have_text(first, timeout=3000)  # not confirmed in time: as it was
    assert recorder.events == []
    decline.click()
    decline.click()
    recorder.wait_for(is_event(ButtonReleased, "decline"))


@browser_test
@needs_chromium
def test_the_arrow_has_a_head_and_a_narrow_tail(page, ui):
    expect = open_page(page, ui, snapshot(call=call()))
    expect(page.locator("#takeover .arrow")).to_be_attached()
    d = page.locator("#takeover .arrow").get_attribute("d")
    points = [tuple(map(float, p)) for p in re.findall(r"(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)", d)]
    tip = min(points, key=lambda p: p[1])
    head = max(abs(x) for x, y in points if y <= 0)
    tail = max(abs(x) for x, y in points if y > 0)
    assert tip[0] == 0 and tail <= 0.4 * head, d


@browser_test
@needs_chromium
@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_a_link_down_for_a_while_is_said_in_big_letters(page, ui, lang):
    expect = open_page(page, ui, snapshot(lang, link={"online": False, "backlog": 37, "since_s": 2.0,
                                                      "alert_after_s": 3.0}))
    band = page.locator("#band-offline")
    expect(band).to_be_hidden()  # a short drop is only the indicator's
    expect(band).to_be_visible(timeout=4000)  # then, with no new snapshot, the band says it
    expect(band).to_contain_text("37")
    assert float(band.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 20
    expect(page.locator("#app")).to_have_class(re.compile(r"\blink-lost\b"))
    check_layout(page)
    shot(page, f"offline-band-{lang}")
    ui.update(snapshot(lang, link={"online": True, "backlog": 0, "since_s": 0.0}))
    expect(band).to_be_hidden()


@browser_test
@needs_chromium
@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_a_cancel_notice_names_the_call_and_says_the_one_shown_stays(page, ui, lang):
    nature = "Rixe sur la voie publique" if lang == "fr" else ARABIC_CALL["nature"]
    expect = open_page(page, ui, snapshot(lang, call=call(id="KEN-42", nature=nature, code=None, state="accepted",
                                                          acknowledged=True)))
    ui.update(snapshot(lang, call=call(id="KEN-42", nature=nature, code=None, state="accepted", acknowledged=True),
                       notice={"kind": "cancelled", "text": "Appel annulé", "id": 7, "subject": nature,
                               "reason": "doublon", "call_id": "KEN-41", "address": "Marché central",
                               "same_nature_shown": True}))
    notice = page.locator("#band-notice")
    expect(notice).to_contain_text(nature)
    expect(notice).to_contain_text("Marché central")
    expect(notice).to_contain_text("l'appel affiché reste en cours" if lang == "fr" else "البلاغ المعروض ما زال قائما")
    check_layout(page)
    shot(page, f"cancel-notice-{lang}")


@browser_test
@needs_chromium
@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_the_status_says_since_when_at_start(page, ui, lang):
    expect = open_page(page, ui, snapshot(lang, status_since=None, started_s=300.0))
    since = page.locator("#idle .since")
    five = "5 min" if lang == "fr" else "5 د"
    expect(since).to_contain_text(five)
    expect(since).to_contain_text("depuis le démarrage" if lang == "fr" else "منذ التشغيل")
    expect(page.locator('#statuses button.current .since')).to_contain_text(five)
    shot(page, f"since-start-{lang}")


@browser_test
@needs_chromium
@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_a_days_old_call_is_flagged_and_an_unverified_age_is_said(page, ui, lang):
    old = call(**text_of(lang), created="2021-08-01T10:00:00Z", age_s=3 * 86400 + 7200.0, stale=True)
    expect = open_page(page, ui, snapshot(lang, call=old))
    over = page.locator("#takeover")
    expect(over.locator(".stale-tag")).to_have_text("APPEL ANCIEN" if lang == "fr" else "بلاغ قديم")
    expect(over.locator(".age")).to_contain_text("3 j 02" if lang == "fr" else "3 يوم 02")
    assert " h " not in over.locator(".age").inner_text().replace("\u2068", "").split("j")[0]
    check_layout(page)
    shot(page, f"stale-call-{lang}")
    ui.update(snapshot(lang, call=call(**text_of(lang), created="2021-08-01T10:00:00Z", age_s=None, stale=None)))
    expect(over.locator(".age")).to_have_text("âge non vérifié" if lang == "fr" else "العمر غير مؤكد")
    expect(over.locator(".stale-tag")).to_have_text("")
    shot(page, f"age-unverified-{lang}")


# ------------------------------------------------ the core and the page together


class Shift:
    """The core (a Rig) behind the real web server: the page's touches go to the core, as the runtime does."""

    def __init__(self, lang: str) -> None:
        self.events: queue.Queue = queue.Queue()
        self.ui = WebUi("127.0.0.1", 0, post=self.events.put)
        self.rig = Rig(config("car", ui={"language": lang, "theme": "day"}, panel={"emergency_cancel_s": 30.0}))
        self.rig.link_up()
        self.rig.fix()

    def push(self) -> None:
        self.ui.update(views.screen_snapshot(self.rig.unit, self.rig.now()))

    def feed(self, kind, name) -> list:
        event = self.events.get(timeout=TIMEOUT_S)
        assert (type(event), event.name) == (kind, name)
        out = self.rig.send(event)
        self.push()
        return out

    def tap(self, name) -> list:
        return self.feed(ButtonPressed, name) + self.feed(ButtonReleased, name)


def responses(out) -> list[tuple[str, str]]:
    return [(b["id"], b["response"]) for b in
            (json.loads(p.payload) for p in out if getattr(p, "topic", "") == "call/response")]


@browser_test
@needs_chromium
@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_a_second_call_arriving_while_the_first_is_read(browser, lang):
    from playwright.sync_api import expect

    shift = Shift(lang)
    shift.ui.start()
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    try:
        first = {"fr": ("Agression sur la voie publique", "Avenue Mohammed V"),
                 "ar": ("سرقة بالعنف", "شارع محمد الخامس")}[lang]
        second = {"fr": ("Tapage nocturne", "Bir Rami Est"), "ar": ("إزعاج ليلي", "حي الساكنية")}[lang]
        shift.rig.message("call", call_payload(id="A", priority=1, nature=first[0], address=first[1]))
        shift.push()
        page.goto(shift.ui.url)
        over = page.locator("#takeover")
        expect(over.locator(".nature")).to_contain_text(first[0])
        # While the crew reads it, a less urgent call comes: the first stays, the second is counted.
        shift.rig.after(0.5).message("call", call_payload(id="B", priority=3, nature=second[0], address=second[1]))
        shift.push()
        expect(over.locator(".waiting")).to_contain_text("1")
        expect(over.locator(".nature")).to_contain_text(first[0])
        shift.rig.after(READ_S)
        shift.push()
        expect(page.locator("#btn-accept")).not_to_have_class(re.compile(r"\breading\b"))
        page.locator("#btn-accept").click()
        assert responses(shift.tap("ack")) == [("A", "accepted")]
        # The second slides in: the same finger, a moment later, does not accept it unread.
        expect(over.locator(".nature")).to_contain_text(second[0])
        expect(page.locator("#btn-accept")).to_have_class(re.compile(r"\breading\b"))
        shot(page, f"second-call-read-first-{lang}")
        page.locator("#btn-accept").click()
        assert responses(shift.tap("ack")) == []
        assert shift.rig.unit.calls.calls["B"].state == "received"
        expect(page.locator("#band-notice")).to_contain_text("lisez-le" if lang == "fr" else "اقرأه")
        shift.rig.after(READ_S)
        shift.push()
        page.locator("#btn-accept").click()
        assert responses(shift.tap("ack")) == [("B", "accepted")]
        expect(over).to_be_hidden()
    finally:
        context.close()
        shift.ui.stop()


@browser_test
@needs_chromium
@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_an_alarm_raised_during_a_new_call_leaves_the_call_to_answer(browser, lang):
    from playwright.sync_api import expect

    shift = Shift(lang)
    shift.ui.start()
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    try:
        shift.rig.message("call", call_payload(id="A", priority=1, **{k: v for k, v in text_of(lang).items()
                                                                       if k in ("nature", "address")}))
        shift.push()
        page.goto(shift.ui.url)
        sos = page.locator("#takeover .sos")
        expect(sos).to_be_visible()
        box = sos.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        shift.feed(ButtonPressed, "emergency")
        shift.rig.run_until(shift.rig.t + 2.0)  # held: the alarm goes out
        shift.push()
        page.mouse.up()
        shift.feed(ButtonReleased, "emergency")
        expect(page.locator("#band-alarm")).to_be_visible()
        expect(page.locator("#takeover")).to_be_visible()  # the call is still there to answer
        check_layout(page)
        shot(page, f"alarm-during-call-{lang}")
        page.locator("#btn-accept").click()
        assert responses(shift.tap("ack")) == [("A", "accepted")]
        assert shift.rig.unit.emergency.alarm_out  # accepting the call never cancels the alarm
    finally:
        context.close()
        shift.ui.stop()
