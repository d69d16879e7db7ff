"""The touchscreen in the situations a shift puts together, in real Chromium.

Each case builds a unit (the pure core) and drives it with the events a shift
produces: a status press, a dispatch call and the crew's answers, the alarm
held, raised, acknowledged by dispatch, the link dropping with reports
waiting, the receiver losing its fix or going silent. The core's snapshot is
then pushed to the real web server and the page is checked from its geometry:

* every visible control is >= 78x78 px, inside 800x480, and
  ``document.elementFromPoint`` at its centre returns that control (nothing
  lies over it);
* no element with hidden overflow is wider inside than its box
  (``scrollWidth > clientWidth``), and no text is cut by a clipping box or by
  the screen's edge (call details excepted: they are clamped, with an ellipsis,
  to the lines left over);
* priority, nature, address and the primary action of the call are whole and
  on screen, without scrolling.

Every case writes a screenshot to ``test-artifacts/ui/matrix/``. ``make test``
runs the cases that cover every pair of values (allpairspy); the full product
(3600 cases) runs with ``--run-slow``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from allpairspy import AllPairs

from agent.adapters.web_ui import WebUi
from agent.core import views
from tests.support.unit_rig import Rig, call_payload, config
from tests.test_web_ui import ARTIFACTS, HEIGHT, TIMEOUT_S, WIDTH, needs_chromium

SHOTS = ARTIFACTS / "matrix"

DIMENSIONS = {
    "status": ["available", "en_route", "on_scene", "busy", "out_of_service"],
    "call": ["none", "incoming", "accepted", "en_route", "on_scene", "cancelled"],
    "emergency": ["idle", "holding", "pending", "active", "acknowledged"],
    "link": ["online", "offline"],
    "gnss": ["3d", "no_fix", "lost"],
    "lang": ["fr", "ar"],
    "theme": ["day", "night"],
}
NAMES = list(DIMENSIONS)
BACKLOG = 1284  # reports waiting while offline: a long shift in a dead zone

# Long, real-looking texts: what makes a layout break.
CALL_TEXT = {
    "fr": {
        "nature": "Rixe sur la voie publique avec arme blanche, plusieurs blessés",
        "code": "RIXE-AB",
        "address": "Marché central, angle avenue Mohammed V et rue de Fès, Kénitra",
        "details": "Trois individus, dont un armé d'un couteau, se battent devant l'entrée sud du marché. "
                   "Deux blessés au sol. SAMU prévenu, arrivée estimée dans 10 minutes.",
        "caller": "Commerçant du marché, 06 61 23 45 67",
    },
    "ar": {
        "nature": "شجار في الطريق العام بسلاح أبيض، عدة مصابين",
        "code": None,
        "address": "السوق المركزي، زاوية شارع محمد الخامس وزنقة فاس، القنيطرة",
        "details": "ثلاثة أشخاص، أحدهم يحمل سكينا، يتشاجرون أمام المدخل الجنوبي للسوق. مصابان على الأرض. "
                   "تم إخبار الإسعاف.",
        "caller": "تاجر في السوق",
    },
}

ALL = [tuple(case) for case in itertools.product(*DIMENSIONS.values())]
PAIRWISE = [tuple(case) for case in AllPairs(list(DIMENSIONS.values()))]


def case_id(case: tuple) -> str:
    return "-".join(str(v) for v in case)


def drive(case: tuple) -> dict:
    """Put a core unit in the situation ``case`` by its own events; return its touchscreen snapshot."""
    want = dict(zip(NAMES, case))
    cfg = config("car", unit={"id": "KEN-C-07", "kind": "car", "name": "Voiture 07 – Kénitra centre, équipe de nuit B"},
                 ui={"language": want["lang"], "theme": want["theme"]},
                 panel={"emergency_hold_s": 2.0, "emergency_cancel_s": 30.0})
    rig = Rig(cfg)
    rig.link_up()
    rig.fix()
    if want["status"] != "available":
        rig.press(want["status"], source="touch")
    rig.after(75)  # the status has been held a while: its "since" shows minutes

    if want["call"] != "none":
        text = CALL_TEXT[want["lang"]]
        rig.message("call", call_payload(id="KEN-2026-1125-0042", priority=1, location={"lat": 34.2655, "lon": -6.5750},
                                         created="2026-11-25T20:00:30Z", **text))
        if want["call"] in ("accepted", "en_route", "on_scene"):
            rig.press("ack", source="touch")
        if want["call"] in ("en_route", "on_scene"):
            rig.press(want["call"], source="touch")

    em = want["emergency"]
    if em != "idle":
        rig.press("emergency", source="touch")
    if em in ("pending", "active", "acknowledged"):
        rig.run_until(rig.t + 2.0)
        rig.release("emergency")
    if em == "active":
        rig.run_until(rig.t + 30.0)
    if em == "acknowledged":
        rig.message("alarm/ack", b"")

    rig.after(0.5)
    if want["gnss"] == "3d":
        rig.fix()
    elif want["gnss"] == "no_fix":
        rig.fix(mode=1)
        rig.after(6).tick()  # the last position is now old: its age shows
    else:
        rig.fix()
        rig.gnss_lost()
    if want["call"] == "cancelled":  # last: the notice shows for a few seconds only
        rig.message("call", json.dumps({"id": "KEN-2026-1125-0042", "action": "cancel",
                                        "reason": "Doublon de l'appel KEN-2026-1125-0041, déjà traité"}).encode())
    if want["link"] == "offline":
        rig.link_down()
    rig.tick()
    return views.screen_snapshot(rig.unit, rig.now(), backlog=BACKLOG if want["link"] == "offline" else 0)


# What the page must show, from its geometry. Returns a list of problems.
GEOMETRY_JS = r"""
() => {
  const W = window.innerWidth, H = window.innerHeight, problems = [];
  const visible = (el) => el.offsetParent !== null || getComputedStyle(el).position === "fixed";
  const label = (el) => (el.id ? "#" + el.id : "") + (el.dataset.input ? `[${el.dataset.input}]` : "")
      + (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : "")
      + ` "${el.textContent.trim().slice(0, 30)}"`;
  const inside = (r, b, tol = 1) => r.left >= b.left - tol && r.top >= b.top - tol
      && r.right <= b.right + tol && r.bottom <= b.bottom + tol;
  const screen = { left: 0, top: 0, right: W, bottom: H };

  for (const b of document.querySelectorAll("button")) {
    if (!visible(b)) continue;
    const r = b.getBoundingClientRect();
    if (r.width < 78 || r.height < 78) problems.push(`small target ${label(b)} ${r.width}x${r.height}`);
    if (!inside(r, screen, 0.5)) problems.push(`control off screen ${label(b)}`);
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (!hit || hit.closest("button") !== b) problems.push(`control covered ${label(b)} by ${hit ? label(hit) : "nothing"}`);
  }

  const clipping = (el) => {
    const s = getComputedStyle(el);
    return s.overflowX !== "visible" || s.overflowY !== "visible";
  };
  for (const el of document.querySelectorAll("body *")) {
    if (!visible(el) || el.closest("svg")) continue;
    if (clipping(el) && el.scrollWidth > el.clientWidth + 1)
      problems.push(`overflows its box ${label(el)} ${el.scrollWidth}>${el.clientWidth}`);
    // Text cut by a clipping ancestor or by the screen edge.
    const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest(".details")) continue;
    const range = document.createRange();
    range.selectNodeContents(el);
    const tr = range.getBoundingClientRect();
    if (tr.width === 0 && tr.height === 0) continue;
    if (!inside(tr, screen)) problems.push(`text off screen ${label(el)}`);
    for (let a = el; a && a !== document.body; a = a.parentElement) {
      if (clipping(a) && !inside(tr, a.getBoundingClientRect(), 1.5)) {
        problems.push(`text cut ${label(el)} by ${label(a)}`);
        break;
      }
    }
  }
  const se = document.scrollingElement;
  if (se.scrollHeight > H || se.scrollWidth > W) problems.push(`page scrolls ${se.scrollWidth}x${se.scrollHeight}`);
  return problems;
}
"""

# The call's essentials, whole and hit-testable; which region shows the call.
ESSENTIALS_JS = r"""
() => {
  const over = document.querySelector("#takeover");
  const card = document.querySelector("#call");
  const root = over.offsetParent !== null ? over : card.offsetParent !== null ? card : null;
  if (!root) return { region: null, problems: [] };
  const problems = [];
  for (const sel of [".prio", ".nature", ".address"]) {
    const el = root.querySelector(sel);
    const r = el.getBoundingClientRect();
    if (!el.textContent.trim()) problems.push(`${sel} empty`);
    if (r.top < 0 || r.bottom > window.innerHeight || r.left < 0 || r.right > window.innerWidth) problems.push(`${sel} off screen`);
    if (el.scrollHeight > el.clientHeight + 1) problems.push(`${sel} clamped`);
  }
  return { region: root.id, problems };
}
"""

PRIMARY = {"incoming": "ack", "accepted": "en_route", "en_route": "on_scene", "on_scene": "cleared"}


@pytest.fixture(scope="module")
def server():
    ui = WebUi("127.0.0.1", 0, post=lambda event: None)
    ui.start()
    yield ui
    ui.stop()


@pytest.fixture(scope="module")
def context(browser):
    ctx = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, has_touch=True)
    yield ctx
    ctx.close()


def check_case(context, server: WebUi, case: tuple) -> None:
    from playwright.sync_api import expect

    want = dict(zip(NAMES, case))
    snap = drive(case)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(TIMEOUT_S * 1000)
    try:
        server.update(snap)
        page.goto(server.url)
        html = page.locator("html")
        expect(html).to_have_attribute("dir", "rtl" if want["lang"] == "ar" else "ltr")
        expect(html).to_have_attribute("data-theme", want["theme"])
        expect(page.locator("#band-link")).to_be_hidden()
        expect(page.locator("#statuses button").first).to_be_attached()
        page.evaluate("document.fonts.ready.then(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))))")

        # The page shows the situation the core is in.
        call = snap["call"]
        incoming = call is not None and not call["acknowledged"]
        expect(page.locator("#takeover")).to_be_visible() if incoming else expect(page.locator("#takeover")).to_be_hidden()
        alarm_out = snap["emergency"]["state"] in ("pending", "active", "acknowledged")
        band = page.locator("#band-alarm")
        expect(band).to_be_visible() if alarm_out else expect(band).to_be_hidden()
        if want["call"] == "cancelled":
            expect(page.locator("#band-notice")).to_contain_text("Doublon")
        gnss = page.locator("#ind-gnss")
        lost_text = "Récepteur GNSS débranché" if want["lang"] == "fr" else "جهاز GNSS مفصول"
        expect(gnss).to_contain_text(lost_text) if want["gnss"] == "lost" else expect(gnss).not_to_contain_text(lost_text)
        expect(page.locator("#btn-lang")).to_be_visible()  # the language is reachable in every state

        problems = page.evaluate(GEOMETRY_JS)
        essentials = page.evaluate(ESSENTIALS_JS)
        problems += essentials["problems"]
        if call is not None:
            assert essentials["region"] == ("takeover" if incoming else "call")
        primary = PRIMARY.get(want["call"])
        if call is not None and primary and call["state"] == (want["call"] if want["call"] != "incoming" else "new"):
            control = page.locator(f'[data-input="{primary}"]:visible').first
            expect(control).to_be_visible()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{case_id(case)}.png"), animations="disabled")
        assert problems == [], f"{case_id(case)}: {problems}"
        assert errors == [], f"JavaScript errors: {errors}"
    finally:
        page.close()


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("case", PAIRWISE, ids=case_id)
def test_every_pair_of_situations_renders_without_overlap_or_cut_text(context, server, case):
    check_case(context, server, case)


@pytest.mark.slow
@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("case", [c for c in ALL if c not in set(PAIRWISE)], ids=case_id)
def test_every_combination_renders_without_overlap_or_cut_text(context, server, case):
    check_case(context, server, case)


def test_the_pairwise_cases_cover_every_pair():
    pairs = {(i, a, j, b) for case in PAIRWISE for (i, a), (j, b) in itertools.combinations(enumerate(case), 2)}
    wanted = {(i, a, j, b)
              for (i, va), (j, vb) in itertools.combinations(enumerate(DIMENSIONS.values()), 2)
              for a in va for b in vb}
    assert wanted <= pairs
    assert len(PAIRWISE) < 60 and len(ALL) == 3600


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_a_false_alarm_is_cancelled_by_touch_through_the_core(browser, lang):
    """Hold the alarm on the screen, let go, touch "cancel": the core withdraws the alarm it sent."""
    import queue

    from playwright.sync_api import expect

    from agent.core.emergency import EmergencyState
    from agent.core.events import ButtonPressed, ButtonReleased

    events: queue.Queue = queue.Queue()
    ui = WebUi("127.0.0.1", 0, post=events.put)
    ui.start()
    rig = Rig(config("car", ui={"language": lang, "theme": "night"}, panel={"emergency_cancel_s": 30.0}))
    rig.link_up()
    rig.fix()

    def feed(kind, name):
        """The page's next input, handed to the core as the runtime does; the screen gets its snapshot."""
        event = events.get(timeout=TIMEOUT_S)
        assert (type(event), event.name, event.source) == (kind, name, "touch")
        rig.send(event)
        ui.update(views.screen_snapshot(rig.unit, rig.now()))

    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, has_touch=True)
    page = context.new_page()
    try:
        ui.update(views.screen_snapshot(rig.unit, rig.now()))
        page.goto(ui.url)
        sos = page.locator("#actions .sos")
        expect(sos).to_have_attribute("data-state", "none")
        box = sos.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        feed(ButtonPressed, "emergency")
        rig.run_until(rig.t + 2.0)  # held for the hold time: the alarm goes out, pending
        ui.update(views.screen_snapshot(rig.unit, rig.now()))
        assert rig.unit.emergency.state is EmergencyState.PENDING
        page.mouse.up()  # lifting the finger that raised it cancels nothing
        feed(ButtonReleased, "emergency")
        assert rig.unit.emergency.state is EmergencyState.PENDING
        expect(sos).to_have_attribute("data-state", "pending")
        expect(page.locator("#band-alarm")).to_be_visible()

        page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        feed(ButtonPressed, "emergency_cancel")
        feed(ButtonReleased, "emergency_cancel")
        assert rig.unit.emergency.state is EmergencyState.NONE
        withdrawn = [json.loads(p.payload) for p in rig.log if getattr(p, "topic", None) == "alarm"]
        assert [a["state"] for a in withdrawn] == ["pending", "cancelled"]
        expect(sos).to_have_attribute("data-state", "none")
        expect(page.locator("#band-alarm")).to_be_hidden()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"touch-cancel-done-{lang}.png"), animations="disabled")
    finally:
        context.close()
        ui.stop()


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_the_longest_texts_the_contract_allows_still_fit(context, server, lang):
    """A 300-character cancel reason in the band over a new call with a 200-character nature
    and a 300-character address: shrunk to fit, nothing covered, the essentials whole."""
    from playwright.sync_api import expect

    word = "Kénitra " if lang == "fr" else "القنيطرة "
    rig = Rig(config("car", ui={"language": lang, "theme": "day"}))
    rig.link_up()
    rig.fix()
    rig.message("call", call_payload(id="C-OLD", nature="Vol"))
    rig.message("call", json.dumps({"id": "C-OLD", "action": "cancel", "reason": (word * 40)[:300].strip()}).encode())
    rig.message("call", call_payload(id="C-NEW", priority=2, nature=(word * 30)[:200].strip(),
                                     address=(word * 40)[:300].strip(), code="X" * 24))
    page = context.new_page()
    try:
        server.update(views.screen_snapshot(rig.unit, rig.now()))
        page.goto(server.url)
        expect(page.locator("#takeover")).to_be_visible()
        expect(page.locator("#band-notice")).to_be_visible()
        page.evaluate("document.fonts.ready.then(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))))")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"longest-texts-{lang}.png"), animations="disabled")
        problems = page.evaluate(GEOMETRY_JS)
        # The band's reason and the address may be clamped at the contract's very longest; never
        # a control covered, a box overflowing sideways, or the priority and accept off screen.
        problems = [p for p in problems if not p.startswith("text cut")]
        assert problems == []
        essentials = page.evaluate(ESSENTIALS_JS)
        assert not [p for p in essentials["problems"] if "off screen" in p or p.startswith(".prio")]
        expect(page.locator("#btn-accept")).to_be_visible()
    finally:
        page.close()
