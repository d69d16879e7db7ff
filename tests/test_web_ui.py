"""The car touchscreen: the real WebUi server, driven over HTTP and by headless Chromium.

Snapshots are pushed from the test as the core would push them; touches on
the page must come back as ButtonPressed / ButtonReleased events through the
``post`` callback. Browser tests use Debian's /usr/bin/chromium through
Playwright (never a downloaded browser) and save 800x480 screenshots to
test-artifacts/ui/ for a person to look at.
"""

from __future__ import annotations

import copy
import http.client
import io
import json
import threading
import wave
from pathlib import Path

import pytest

from agent.adapters.web_ui import WebUi
from agent.core import screen_rules
from agent.core.events import ButtonPressed, ButtonReleased
from hil.browser import chromium_missing
from tests.support.broker import wait_until

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "ui"
WIDTH, HEIGHT = 800, 480
# A bound on waiting for the page, not a speed requirement (the bench measures speed): on a
# loaded machine, with the suite's workers beside it, a page may take seconds to lay out.
TIMEOUT_S = 15.0

browser_test = pytest.mark.browser
needs_chromium = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))

LABELS = {
    "fr": {"available": "Disponible", "en_route": "En route", "on_scene": "Sur place",
           "busy": "Occupé", "out_of_service": "Hors service"},
    "ar": {"available": "متاح", "en_route": "في الطريق", "on_scene": "في عين المكان",
           "busy": "مشغول", "out_of_service": "خارج الخدمة"},
}
STATUS_CODES = ["available", "en_route", "on_scene", "busy", "out_of_service"]
INPUTS = [*STATUS_CODES, "ack", "decline", "cleared", "emergency"]
KENITRA = (34.2610, -6.5802)


def snapshot(lang: str = "fr", **changes) -> dict:
    snap = {
        "unit": {"id": "car-07", "kind": "car", "name": "Voiture 07 – Kénitra centre"},
        "lang": lang, "theme": "day", "sound": True,
        "now": "2024-03-01T10:20:30Z",
        "status": "available", "status_since": "2024-03-01T10:08:10Z",
        "status_labels": LABELS[lang],
        "status_buttons": list(STATUS_CODES),
        "inputs": list(INPUTS),
        "siren": False,
        "link": {"online": True, "backlog": 0},
        "gnss": {"mode": 3, "lat": KENITRA[0], "lon": KENITRA[1], "speed": 0.0, "track": None, "age": 0.3},
        "emergency": {"state": "none", "since": None, "cancel_deadline_s": None, "hold_s": 2.0},
        "call": None,
        "notice": None,
    }
    snap.update(changes)
    return snap


def call(**changes) -> dict:
    c = {
        "id": "KEN-2024-0301-0042", "priority": 1,
        "nature": "Agression sur la voie publique", "code": "AGR",
        "address": "Avenue Mohammed V, devant la gare, Kénitra",
        "location": {"lat": 34.2655, "lon": -6.5750},
        "details": "Deux individus, l'un armé d'un couteau. Victime au sol, ambulance prévenue.",
        "caller": "Témoin, 06 12 34 56 78",
        "created": "2024-03-01T10:18:05Z", "state": "new", "acknowledged": False,
        "distance_m": 1240.0, "bearing_deg": 60.0, "updated": "2024-03-01T10:18:06Z",
    }
    c.update(changes)
    return c


ARABIC_CALL = {
    "nature": "سرقة بالعنف", "code": None,
    "address": "شارع محمد الخامس، قرب المحطة، القنيطرة",
    "details": "شخصان على دراجة نارية، اتجها نحو الكورنيش.",
    "caller": "صاحب المتجر",
}


class Recorder:
    """The inbox as the web UI sees it: records what ``post`` got."""

    def __init__(self):
        self.events: list = []
        self._cond = threading.Condition()

    def post(self, event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = TIMEOUT_S):
        with self._cond:
            if not self._cond.wait_for(lambda: any(predicate(e) for e in self.events), timeout):
                raise AssertionError(f"no matching event within {timeout}s; got {self.events}")
            return next(e for e in self.events if predicate(e))


def is_event(kind, name):
    return lambda e: type(e) is kind and e.name == name and e.source == "touch"


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def ui(recorder):
    server = WebUi("127.0.0.1", 0, post=recorder.post, clock=lambda: 1234.5, ping_s=1.0)
    server.start()
    yield server
    server.stop()


# ------------------------------------------------------------ plain HTTP


def request(ui: WebUi, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def post_input(ui: WebUi, payload, headers: dict | None = None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(ui, "POST", "/api/input", body, {"Content-Type": "application/json", **(headers or {})})


def test_start_picks_a_free_port_and_serves_the_page(ui):
    assert ui.port and ui.url == f"http://127.0.0.1:{ui.port}/"
    status, headers, body = request(ui, "GET", "/")
    assert status == 200 and b'id="statuses"' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    for path in ("/static/app.js", "/static/style.css", "/static/i18n/fr.json", "/static/i18n/ar.json"):
        assert request(ui, "GET", path)[0] == 200, path
    assert request(ui, "GET", "/static/../web_ui.py")[0] == 404
    assert request(ui, "GET", "/fonts/../../etc/passwd")[0] == 404


def test_alert_sounds_are_valid_wav_per_priority(ui):
    lengths = []
    for prio in (1, 2, 3):
        status, headers, body = request(ui, "GET", f"/sounds/p{prio}.wav")
        assert status == 200 and headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(body)) as wav:
            assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
            frames = wav.readframes(wav.getnframes())
            lengths.append(wav.getnframes() / wav.getframerate())
        assert max(frames) > 0  # not silence
    assert all(0.5 < s < 3.0 for s in lengths)


@pytest.mark.skipif(not Path("/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf").exists(),
                    reason="fonts-dejavu-core not installed")
def test_arabic_capable_font_is_served_locally(ui):
    status, headers, body = request(ui, "GET", "/fonts/DejaVuSansCondensed-Bold.ttf")
    assert status == 200 and headers["content-type"] == "font/ttf" and len(body) > 100_000


def test_touch_input_posts_button_events(ui, recorder):
    ui.update(snapshot())
    assert post_input(ui, {"name": "ack", "action": "press"})[0] == 200
    assert post_input(ui, {"name": "ack", "action": "release"})[0] == 200
    assert recorder.events == [ButtonPressed("ack", 1234.5, source="touch"),
                               ButtonReleased("ack", 1234.5, source="touch")]


def test_the_release_of_a_press_that_changed_the_inputs_is_still_taken(ui, recorder):
    # The cancel ends the window: the snapshot that answers the press no longer offers it.
    ui.update(snapshot(inputs=[*INPUTS, "emergency_cancel"]))
    assert post_input(ui, {"name": "emergency_cancel", "action": "press"})[0] == 200
    ui.update(snapshot())
    assert post_input(ui, {"name": "emergency_cancel", "action": "release"})[0] == 200
    # Once released it is not offered: neither a press nor a second release is taken.
    assert post_input(ui, {"name": "emergency_cancel", "action": "release"})[0] == 400
    assert post_input(ui, {"name": "emergency_cancel", "action": "press"})[0] == 400
    assert [type(e) for e in recorder.events] == [ButtonPressed, ButtonReleased]


@pytest.mark.parametrize(
    "payload, status",
    [
        ({"name": "launch_missiles", "action": "press"}, 400),  # not an input of this snapshot
        ({"name": "ack", "action": "hold"}, 400),
        ({"name": 7, "action": "press"}, 400),
        ({"action": "press"}, 400),
        (["ack", "press"], 400),
        (b"{not json", 400),
        (b"\xff\xfe", 400),
        ({"name": "ack", "action": "press", "pad": "x" * 2000}, 413),
    ],
)
def test_bad_input_is_refused_and_posts_nothing(ui, recorder, payload, status):
    ui.update(snapshot())
    got, _, body = post_input(ui, payload)
    assert got == status
    assert json.loads(body)["ok"] is False and json.loads(body)["error"]
    assert recorder.events == []


def test_input_needs_json_same_origin_and_a_snapshot(ui, recorder):
    press = json.dumps({"name": "ack", "action": "press"}).encode()
    assert post_input(ui, press)[0] == 400  # no snapshot yet: nothing is accepted
    ui.update(snapshot(inputs=["available"]))
    assert post_input(ui, {"name": "ack", "action": "press"})[0] == 400  # not accepted now
    assert request(ui, "POST", "/api/input", press, {"Content-Type": "text/plain"})[0] == 415
    assert post_input(ui, press, {"Origin": "http://evil.example"})[0] == 403
    assert recorder.events == []
    assert post_input(ui, {"name": "available", "action": "press"},
                      {"Origin": f"http://127.0.0.1:{ui.port}"})[0] == 200
    assert recorder.events == [ButtonPressed("available", 1234.5, source="touch")]


def test_a_refusing_inbox_gives_503_not_a_crash(recorder):
    def full(event):
        raise RuntimeError("inbox full")

    server = WebUi("127.0.0.1", 0, post=full)
    server.start()
    try:
        server.update(snapshot())
        assert post_input(server, {"name": "ack", "action": "press"})[0] == 503
        assert request(server, "GET", "/api/snapshot")[0] == 200  # still serving
    finally:
        server.stop()


def test_update_rejects_non_json_and_keeps_the_last_good_snapshot(ui):
    assert json.loads(request(ui, "GET", "/api/snapshot")[2]) is None
    good = snapshot(status="busy")
    assert ui.update(good) is True
    bad = snapshot()
    bad["gnss"]["speed"] = float("nan")
    assert ui.update(bad) is False
    assert ui.update(snapshot(now=object())) is False
    assert ui.rejected_snapshots == 2
    # The good one, with the page's rules derived from it (agent/core/screen_rules.py).
    assert json.loads(request(ui, "GET", "/api/snapshot")[2]) == screen_rules.complete(good)


class SseReader:
    """A raw ``GET /api/events`` client that parses Server-Sent Events."""

    def __init__(self, ui: WebUi):
        self.conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=TIMEOUT_S)
        self.conn.request("GET", "/api/events")
        self.resp = self.conn.getresponse()

    def next(self) -> tuple[str, object]:
        event, data = "message", []
        while True:
            line = self.resp.fp.readline()
            if not line:
                raise EOFError("stream closed")
            line = line.decode().rstrip("\n")
            if not line:
                if data:
                    return event, json.loads("\n".join(data))
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)

    def next_snapshot(self) -> dict:
        while True:
            event, data = self.next()
            if event == "snapshot":
                return data

    def close(self) -> None:
        self.conn.close()


def test_sse_sends_current_snapshot_then_only_the_newest(ui):
    ui.update(snapshot(status="busy"))
    reader = SseReader(ui)
    try:
        assert reader.resp.status == 200
        assert reader.resp.getheader("content-type").startswith("text/event-stream")
        event, hello = reader.next()
        assert event == "hello" and hello["version"]
        assert reader.next_snapshot()["status"] == "busy"
        wait_until(lambda: ui.connected_clients == 1, TIMEOUT_S, "the page's stream")
        for i in range(300):  # far faster than any page reads: most are coalesced away
            ui.update(snapshot(link={"online": True, "backlog": i}))
        seen = []
        while not seen or seen[-1] != 299:
            seen.append(reader.next_snapshot()["link"]["backlog"])
        assert seen == sorted(seen) and len(seen) <= 300
        event, _ = reader.next()  # nothing new for ping_s: a keep-alive ping
        assert event == "ping"
    finally:
        reader.close()
    wait_until(lambda: ui.connected_clients == 0, TIMEOUT_S, "the stream closed")


def test_sse_clients_are_bounded(recorder):
    server = WebUi("127.0.0.1", 0, post=recorder.post, max_clients=2)
    server.start()
    readers = []
    try:
        readers = [SseReader(server) for _ in range(2)]
        assert all(r.resp.status == 200 for r in readers)
        wait_until(lambda: server.connected_clients == 2, TIMEOUT_S, "two streams")
        status, headers, _ = request(server, "GET", "/api/events")
        assert status == 503 and headers["retry-after"]
    finally:
        for r in readers:
            r.close()
        server.stop()


def test_stop_ends_open_streams_and_frees_the_port(recorder):
    server = WebUi("127.0.0.1", 0, post=recorder.post)
    server.start()
    server.update(snapshot())
    reader = SseReader(server)
    reader.next_snapshot()
    port = server.port
    server.stop()
    with pytest.raises(EOFError):
        while True:
            reader.next()
    reader.close()
    again = WebUi("127.0.0.1", port, post=recorder.post)
    again.start()  # the same port binds again at once
    again.stop()


def test_restarted_server_serves_the_newest_snapshot(recorder):
    server = WebUi("127.0.0.1", 0, post=recorder.post)
    server.update(snapshot(status="busy"))  # before start: kept for the first page
    server.start()
    server.stop()
    server.update(snapshot(status="on_scene"))  # while stopped
    server.start()
    try:
        reader = SseReader(server)
        assert reader.next_snapshot()["status"] == "on_scene"
        server.update(snapshot(status="en_route"))
        assert reader.next_snapshot()["status"] == "en_route"
        reader.close()
    finally:
        server.stop()


def test_busy_port_is_an_error_at_start(ui, recorder):
    other = WebUi("127.0.0.1", ui.port, post=recorder.post)
    with pytest.raises(OSError):
        other.start()


# ------------------------------------------------------------- the browser


@pytest.fixture
def page(browser, ui):
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    pg = context.new_page()
    errors: list[str] = []
    foreign: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("request", lambda req: None if req.url.startswith(ui.url) else foreign.append(req.url))
    pg.set_default_timeout(TIMEOUT_S * 1000)
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"
    assert foreign == [], f"requests leaving the unit: {foreign}"


def open_page(page, ui: WebUi, snap: dict):
    from playwright.sync_api import expect

    ui.update(snap)
    page.goto(ui.url)
    expect(page.locator("#statuses button")).to_have_count(len(snap["status_buttons"]))
    expect(page.locator("#band-link")).to_be_hidden()
    return expect


def check_layout(page) -> None:
    """Every visible button >= 78x78 px and inside 800x480; nothing to scroll to."""
    sizes = page.evaluate(
        """() => Array.from(document.querySelectorAll('button'))
              .filter(b => b.offsetParent !== null)
              .map(b => { const r = b.getBoundingClientRect();
                          return {id: b.id || b.dataset.input || b.className,
                                  x: r.left, y: r.top, w: r.width, h: r.height}; })"""
    )
    assert sizes, "no buttons visible"
    for b in sizes:
        assert b["w"] >= 78 and b["h"] >= 78, f"touch target too small: {b}"
        assert b["x"] >= 0 and b["y"] >= 0, f"outside the screen: {b}"
        assert b["x"] + b["w"] <= WIDTH + 0.5 and b["y"] + b["h"] <= HEIGHT + 0.5, f"outside the screen: {b}"
    scroll = page.evaluate("[document.scrollingElement.scrollHeight, document.scrollingElement.scrollWidth]")
    assert scroll[0] <= HEIGHT and scroll[1] <= WIDTH, f"page scrolls: {scroll}"


@browser_test
@needs_chromium
def test_page_shows_unit_state(page, ui):
    expect = open_page(page, ui, snapshot(status="en_route", siren=True, link={"online": False, "backlog": 37}))
    expect(page.locator("#idle .label")).to_have_text("En route")
    expect(page.locator("#statuses button.current")).to_have_attribute("data-status", "en_route")
    expect(page.locator("#ind-link")).to_contain_text("Hors ligne")
    expect(page.locator("#ind-link")).to_contain_text("37")
    expect(page.locator("#ind-gnss")).to_contain_text("GNSS 3D")
    expect(page.locator("#ind-siren")).to_have_class("ind alert")
    expect(page.locator("#idle .since")).to_contain_text("12 min")
    # Live: the next snapshot shows without a reload.
    ui.update(snapshot(status="on_scene", link={"online": True, "backlog": 0}))
    expect(page.locator("#idle .label")).to_have_text("Sur place")
    expect(page.locator("#ind-link")).to_have_class("ind good")


@browser_test
@needs_chromium
def test_new_call_takes_the_screen_with_sound_until_accepted(page, ui, recorder):
    expect = open_page(page, ui, snapshot())
    expect(page.locator("#takeover")).to_be_hidden()
    ui.update(snapshot(call=call()))
    over = page.locator("#takeover")
    expect(over).to_be_visible()
    expect(over.locator(".nature")).to_contain_text("Agression sur la voie publique")
    expect(over.locator(".address")).to_have_text("Avenue Mohammed V, devant la gare, Kénitra")
    expect(over.locator(".dist")).to_have_text("1,2 km")
    expect(over.locator(".prio")).to_contain_text("P1")
    expect(over).to_have_attribute("data-priority", "1")
    page.wait_for_function(
        "() => { const a = document.getElementById('alert-audio');"
        " return a.src.endsWith('/sounds/p1.wav') && !a.paused && a.loop; }"
    )
    check_layout(page)

    page.locator("#btn-accept").click()
    recorder.wait_for(is_event(ButtonPressed, "ack"))
    recorder.wait_for(is_event(ButtonReleased, "ack"))
    presses = [e for e in recorder.events if isinstance(e, ButtonPressed)]
    assert [e.name for e in presses] == ["ack"]

    # Still on screen until the agent says the call is acknowledged.
    expect(over).to_be_visible()
    ui.update(snapshot(status="en_route", call=call(state="accepted", acknowledged=True)))
    expect(over).to_be_hidden()
    card = page.locator("#call")
    expect(card).to_be_visible()
    expect(card.locator(".call-state")).to_have_text("Accepté")
    page.wait_for_function("() => document.getElementById('alert-audio').paused")
    expect(page.locator("#call-controls button")).to_have_count(3)
    check_layout(page)
    page.locator('#call-controls [data-input="on_scene"]').click()
    recorder.wait_for(is_event(ButtonPressed, "on_scene"))


@browser_test
@needs_chromium
def test_decline_posts_decline(page, ui, recorder):
    expect = open_page(page, ui, snapshot(call=call(priority=2)))
    expect(page.locator("#takeover")).to_have_attribute("data-priority", "2")
    page.locator("#btn-decline").click()
    # A decline cannot be taken back once dispatch has it: the first touch asks to confirm.
    expect(page.locator("#btn-decline")).to_have_text("Confirmer le refus ?")
    assert recorder.events == []
    page.locator("#btn-decline").click()
    recorder.wait_for(is_event(ButtonPressed, "decline"))


@browser_test
@needs_chromium
def test_status_buttons_post_their_codes(page, ui, recorder):
    open_page(page, ui, snapshot())
    for code in STATUS_CODES:
        page.locator(f'#statuses [data-status="{code}"]').click()
        recorder.wait_for(is_event(ButtonReleased, code))
    pressed = [e.name for e in recorder.events if isinstance(e, ButtonPressed)]
    assert pressed == STATUS_CODES


@browser_test
@needs_chromium
def test_emergency_hold_posts_press_then_release(page, ui, recorder):
    expect = open_page(page, ui, snapshot())
    sos = page.locator("#actions .sos")
    box = sos.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    recorder.wait_for(is_event(ButtonPressed, "emergency"))
    expect(sos).to_have_attribute("data-state", "holding")  # the ring runs while held
    page.wait_for_function(
        "() => parseFloat(document.querySelector('#actions .sos .ring .fill')"
        ".getAttribute('stroke-dasharray')) > 10"
    )
    assert not any(isinstance(e, ButtonReleased) for e in recorder.events)
    page.mouse.up()
    recorder.wait_for(is_event(ButtonReleased, "emergency"))
    assert [type(e) for e in recorder.events] == [ButtonPressed, ButtonReleased]
    expect(sos).to_have_attribute("data-state", "none")

    # The core raised it (the alarm is out): the control now reads "cancel", the band says sent.
    ui.update(snapshot(emergency={"state": "pending", "since": "2024-03-01T10:20:28Z",
                                  "cancel_deadline_s": 30.0, "hold_s": 2.0}, inputs=[*INPUTS, "emergency_cancel"]))
    expect(sos).to_have_attribute("data-state", "pending")
    expect(sos.locator(".sos-label")).to_have_text("ANNULER l'alerte")
    expect(page.locator("#band-alarm")).to_contain_text("Alerte envoyée")
    # After the alarm is active the control says so, and a touch posts nothing.
    ui.update(snapshot(emergency={"state": "active", "since": "2024-03-01T10:20:33Z",
                                  "cancel_deadline_s": None}))
    expect(sos.locator(".sos-label")).to_have_text("ALERTE ACTIVE")
    expect(page.locator("#band-alarm")).to_contain_text("URGENCE ACTIVE")
    expect(page.locator("#app")).to_have_attribute("data-emergency", "active")
    sos.click()
    page.locator("#btn-lang").click()  # a later click: the page has handled the first
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    assert len(recorder.events) == 2


@browser_test
@needs_chromium
@pytest.mark.parametrize("how", ["mouse", "touch"])
def test_a_touch_on_the_alarm_control_in_the_cancel_window_cancels(browser, ui, recorder, how):
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, has_touch=how == "touch")
    page = context.new_page()
    try:
        expect = open_page(page, ui, snapshot(
            emergency={"state": "pending", "since": None, "cancel_deadline_s": 30.0, "hold_s": 2.0},
            inputs=[*INPUTS, "emergency_cancel"]))
        sos = page.locator("#actions .sos")
        expect(sos.locator(".sos-label")).to_have_text("ANNULER l'alerte")
        box = sos.bounding_box()
        if how == "touch":
            page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        else:
            sos.click()
        recorder.wait_for(is_event(ButtonReleased, "emergency_cancel"))
        names = [(type(e).__name__, e.name) for e in recorder.events]
        # A cancel, never a new press of the alarm.
        assert names == [("ButtonPressed", "emergency_cancel"), ("ButtonReleased", "emergency_cancel")]
    finally:
        context.close()


@browser_test
@needs_chromium
def test_sliding_off_the_emergency_button_releases_it(page, ui, recorder):
    open_page(page, ui, snapshot())
    box = page.locator("#actions .sos").bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()
    recorder.wait_for(is_event(ButtonPressed, "emergency"))
    page.mouse.move(box["x"] + box["width"] + 150, box["y"] - 150)  # finger slid off
    recorder.wait_for(is_event(ButtonReleased, "emergency"))
    page.mouse.up()


def boxes(page) -> tuple[dict, dict]:
    return page.locator("#statuses").bounding_box(), page.locator("#body").bounding_box()


@browser_test
@needs_chromium
def test_arabic_is_right_to_left_and_mirrored(page, ui):
    expect = open_page(page, ui, snapshot())
    statuses, main = boxes(page)
    assert statuses["x"] > main["x"]  # French: status column on the right
    ui.update(snapshot("ar", call=call(**ARABIC_CALL, state="accepted", acknowledged=True)))
    html = page.locator("html")
    expect(html).to_have_attribute("dir", "rtl")
    expect(html).to_have_attribute("lang", "ar")
    statuses, main = boxes(page)
    assert statuses["x"] + statuses["width"] <= main["x"]  # Arabic: on the left
    expect(page.locator('#statuses [data-status="busy"] .name')).to_have_text("مشغول")
    card = page.locator("#call")
    expect(card.locator(".address")).to_have_text(ARABIC_CALL["address"])
    # Free text takes its own direction whatever the UI language.
    assert card.locator(".address").evaluate("e => getComputedStyle(e).direction") == "rtl"
    ui.update(snapshot("fr", call=call(**ARABIC_CALL, state="accepted", acknowledged=True)))
    expect(html).to_have_attribute("dir", "ltr")
    assert card.locator(".address").evaluate("e => getComputedStyle(e).direction") == "rtl"
    assert card.locator(".call-state").evaluate("e => getComputedStyle(e).direction") == "ltr"


@browser_test
@needs_chromium
def test_language_toggle_is_a_local_preference(page, ui, recorder):
    expect = open_page(page, ui, snapshot("fr"))
    html = page.locator("html")
    page.locator("#btn-lang").click()
    expect(html).to_have_attribute("dir", "rtl")
    # French labels came in the snapshot: the page's own Arabic names stand in.
    expect(page.locator('#statuses [data-status="available"] .name')).to_have_text("متاح")
    page.reload()
    expect(html).to_have_attribute("dir", "rtl")  # kept by this screen
    assert recorder.events == []  # nothing posted for a preference
    # A new configured language wins, and the old local choice is forgotten.
    ui.update(snapshot("ar", status="busy"))
    expect(page.locator("#statuses button.current")).to_have_attribute("data-status", "busy")
    expect(html).to_have_attribute("dir", "rtl")
    ui.update(snapshot("fr"))
    expect(html).to_have_attribute("dir", "ltr")


@browser_test
@needs_chromium
def test_theme_toggle_and_auto_theme_by_sun(page, ui):
    expect = open_page(page, ui, snapshot(theme="auto", now="2024-03-20T12:30:00Z"))
    html = page.locator("html")
    expect(html).to_have_attribute("data-theme", "day")  # Kénitra, noon
    ui.update(snapshot(theme="auto", now="2024-03-20T23:30:00Z"))
    expect(html).to_have_attribute("data-theme", "night")
    page.locator("#btn-theme").click()  # auto -> night -> day
    page.locator("#btn-theme").click()
    expect(html).to_have_attribute("data-theme", "day")
    # The almanac: sun elevation at Kénitra at the March equinox around local noon.
    elevation = page.evaluate("umps.sunElevation(new Date('2024-03-20T12:27:00Z'), 34.261, -6.5802)")
    assert abs(elevation - (90 - 34.261)) < 1.5
    # Midsummer sunset there is about 19:40 UTC: light before, night a little after.
    assert page.evaluate("umps.isNight(new Date('2024-06-21T19:00:00Z'), 34.261, -6.5802)") is False
    assert page.evaluate("umps.isNight(new Date('2024-06-21T20:15:00Z'), 34.261, -6.5802)") is True


@browser_test
@needs_chromium
def test_call_age_ticks_between_snapshots(page, ui):
    expect = open_page(page, ui, snapshot(now="2024-03-01T10:19:10Z", call=call(created="2024-03-01T10:18:05Z")))
    age = page.locator("#takeover .age")
    expect(age).to_contain_text("1 min")
    first = age.inner_text()
    page.wait_for_function(
        "t => document.querySelector('#takeover .age').textContent !== t", arg=first, timeout=3000
    )


@browser_test
@needs_chromium
def test_page_reconnects_after_the_agent_restarts(page, ui, recorder):
    expect = open_page(page, ui, snapshot(status="busy"))
    expect(page.locator("#idle .label")).to_have_text("Occupé")
    port = ui.port
    ui.stop()
    banner = page.locator("#band-link")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Agent déconnecté")
    expect(page.locator("#idle .label")).to_have_text("Occupé")  # last state stays on screen
    again = WebUi("127.0.0.1", port, post=recorder.post)
    again.update(snapshot(status="on_scene"))
    again.start()
    try:
        expect(page.locator("#idle .label")).to_have_text("Sur place")
        expect(banner).to_be_hidden()
        wait_until(lambda: again.connected_clients == 1, TIMEOUT_S, "the page back on the new server")
    finally:
        again.stop()
    # ``ui`` stays stopped (stopping it again is harmless) and keeps its port: the page's
    # next reconnect attempts go to the unit's address, as they should.


@browser_test
@needs_chromium
def test_notice_is_shown(page, ui):
    expect = open_page(page, ui, snapshot())
    ui.update(snapshot(notice={"kind": "refused", "text": "Transition refusée : Hors service → Sur place", "id": 1}))
    notice = page.locator("#band-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Transition refusée")
    # A cancelled call: which one, and the dispatcher's reason, without covering any control.
    ui.update(snapshot(status="busy", notice={"kind": "cancelled", "text": "Appel annulé", "id": 2,
                                              "subject": "Rixe sur la voie publique", "reason": "doublon de KEN-41"}))
    expect(notice).to_contain_text("Appel annulé par le central")
    expect(notice).to_contain_text("Rixe sur la voie publique")
    expect(notice).to_contain_text("motif : \u2068doublon de KEN-41\u2069")
    busy = page.locator('#statuses [data-status="busy"]').bounding_box()
    hit = page.evaluate("([x, y]) => document.elementFromPoint(x, y).closest('button')?.dataset.status",
                        [busy["x"] + busy["width"] / 2, busy["y"] + busy["height"] / 2])
    assert hit == "busy"


SCREENS = {
    "idle": lambda lang: snapshot(lang, status="en_route", siren=True, link={"online": False, "backlog": 37}),
    "p1-call": lambda lang: snapshot(lang, call=call(**(ARABIC_CALL if lang == "ar" else {}))),
    "p1-accepted": lambda lang: snapshot(
        lang, status="en_route",
        gnss={"mode": 3, "lat": KENITRA[0], "lon": KENITRA[1], "speed": 12.0, "track": 30.0, "age": 0.2},
        call=call(**(ARABIC_CALL if lang == "ar" else {}), state="en_route", acknowledged=True),
    ),
    "emergency-pending": lambda lang: snapshot(
        lang, emergency={"state": "pending", "since": "2024-03-01T10:20:28Z", "cancel_deadline_s": 4.0}
    ),
}


@browser_test
@needs_chromium
@pytest.mark.parametrize("theme", ["day", "night"])
@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_screenshots_fit_800x480(page, ui, lang, theme):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import expect

    first = True
    for name, build in SCREENS.items():
        snap = build(lang)
        snap["theme"] = theme
        if first:
            open_page(page, ui, snap)
            first = False
        else:
            ui.update(copy.deepcopy(snap))
        expect(page.locator("html")).to_have_attribute("data-theme", theme)
        expect(page.locator("html")).to_have_attribute("dir", "rtl" if lang == "ar" else "ltr")
        if snap["call"] and not snap["call"]["acknowledged"]:
            expect(page.locator("#takeover")).to_be_visible()
        else:
            expect(page.locator("#takeover")).to_be_hidden()
        page.evaluate("document.fonts.ready")
        check_layout(page)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{lang}-{theme}.png"), animations="disabled")
