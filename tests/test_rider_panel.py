"""The rider panel as a rider meets it: pages that turn while riding, an arrow read at a glance,
bold text, waiting calls counted, the alarm's cancel button and countdown, a hold that shows.

Drawn through luma's dummy device and read from its pixels; the paging runs the real
DisplayWorker thread. Each changed screen is saved under ``test-artifacts/ui/panel/`` (128×64
and ×4), in French and Arabic.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from luma.core.device import dummy
from PIL import Image, ImageDraw

from agent.adapters.char_lcd import char_lines
from agent.adapters.display_text import FontSet, visual
from agent.adapters.panel_display import DisplayWorker, PanelDisplay, open_display
from agent.core import views
from agent.core.panel_view import CallSummary, PanelView
from hil.wait import poll_until
from tests.support.unit_rig import Rig, call_payload, config

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "ui" / "panel"
W, H = 128, 64

LONG = {  # a nature and address that need pages, "Kénitra" on the last one
    "fr": ("Rixe sur la voie publique avec arme blanche, plusieurs blessés",
           "Marché central, angle avenue Mohammed V et rue de Fès, Kénitra"),
    "ar": ("شجار في الطريق العام بسلاح أبيض، عدة مصابين",
           "السوق المركزي، زاوية شارع محمد الخامس وزنقة فاس، القنيطرة"),
}
SHORT = {"fr": ("Vol à l'arraché", "Rue Ibn Sina, Maamora"), "ar": ("سرقة بالخطف", "شارع محمد الخامس")}


def save(name: str, image: Image.Image) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    image.save(ARTIFACTS / f"{name}.png")
    image.convert("L").resize((W * 4, H * 4), Image.NEAREST).save(ARTIFACTS / f"{name}_x4.png")


def lit_rows(image: Image.Image, box) -> list[int]:
    crop = image.convert("1").crop(box)
    return [y for y in range(crop.height) if any(crop.getpixel((x, y)) for x in range(crop.width))]


def long_call(lang: str, distance: float, bearing: float = 35.0) -> CallSummary:
    return CallSummary("C-1", 1, *LONG[lang], distance, 40.0, bearing, 60.0)


@pytest.fixture(scope="module")
def panel() -> PanelDisplay:
    return open_display("dummy")


# ------------------------------------------------------------------ paging


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_pages_turn_every_3_s_while_the_distance_changes_every_second(lang):
    display = PanelDisplay(dummy(width=W, height=H, mode="1"))
    clock = Clock()
    worker = DisplayWorker(display, page_s=3.0, clock=clock)
    shown = []
    try:
        for second in range(10):  # 9 s of riding, a new distance every second
            clock.t = 1000.0 + second
            worker.post(PanelView(lang=lang, gnss_fix=3, call=long_call(lang, 2000.0 - 15 * second)))
            assert worker.wait_drawn(5.0)
            shown.append(display.page)
    finally:
        worker.close()
    pages = display.pages
    assert pages >= 3
    assert shown == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3 % pages]
    # Page 2 really reached the glass: the address's last words are on it at some page.
    words = []
    for page in range(pages):
        image, placed = display.render_layout(PanelView(lang=lang, gnss_fix=3, call=long_call(lang, 1880.0)), page)
        words += [p.text for p in placed if p.role == "address"]
        save(f"paged-{lang}-page{page + 1}", image)
    last_word = "Kénitra" if lang == "fr" else visual("القنيطرة")
    assert any(last_word in text for text in words)


def test_pages_turn_on_the_worker_thread_in_real_time_while_views_keep_coming():
    display = PanelDisplay(dummy(width=W, height=H, mode="1"))
    worker = DisplayWorker(display, page_s=0.3)
    stop = threading.Event()

    def ride():
        distance = 2000.0
        while not stop.is_set():
            worker.post(PanelView(gnss_fix=3, call=long_call("fr", distance)))
            distance -= 5
            stop.wait(0.1)  # three new views per page: each one used to send it back to page 1

    rider = threading.Thread(target=ride)
    rider.start()
    try:
        assert poll_until(lambda: display.page == 1, 5.0), "page 2 never showed"
        assert poll_until(lambda: display.page == 2, 5.0), "page 3 never showed"
    finally:
        stop.set()
        rider.join(5.0)
        worker.close()


def test_another_call_starts_on_its_first_page(panel):
    display = PanelDisplay(dummy(width=W, height=H, mode="1"))
    display.show(PanelView(gnss_fix=3, call=long_call("fr", 900.0)))
    display.turn_page()
    display.show(PanelView(gnss_fix=3, call=long_call("fr", 880.0)))  # the same call, closer
    assert display.page == 1
    other = CallSummary("C-9", 1, *LONG["fr"], 880.0, 40.0, 35.0, 60.0)
    display.show(PanelView(gnss_fix=3, call=other))
    assert display.page == 0


# ------------------------------------------------------------------ layout


def test_the_arrow_is_as_tall_as_the_digits_and_its_tail_is_a_shaft(panel):
    view = PanelView(gnss_fix=3, call=CallSummary("C", 1, "Vol", "Rue", 1240.0, 0.0, 0.0))
    image, placed = panel.render_layout(view)
    save("arrow-fr", image)
    arrow = next(p for p in placed if p.role == "arrow")
    distance = next(p for p in placed if p.role == "distance")
    font = FontSet.default().get(20, True)
    _, top, _, bottom = ImageDraw.Draw(Image.new("1", (1, 1))).textbbox((0, 0), "0", font=font, anchor="ls")
    digits = bottom - top
    rows = lit_rows(image, arrow.box)
    assert distance.text == "1,2\u202fkm"
    assert len(rows) >= digits, f"arrow {len(rows)} px high beside {digits} px digits"
    # Pointing ahead: the head (widest row) is in the front half, the tail a narrow shaft.
    crop = image.convert("1").crop(arrow.box)
    widths = [sum(1 for x in range(crop.width) if crop.getpixel((x, y))) for y in rows]
    widest = rows[widths.index(max(widths))]
    assert widest < (rows[0] + rows[-1]) / 2
    assert widths[-1] <= max(widths) / 2


def one_pixel_runs(image: Image.Image, box) -> float:
    """The share of horizontal runs of lit pixels one pixel long: high for a 1-px stroke."""
    crop = image.convert("1").crop(box)
    one = total = 0
    for y in range(crop.height):
        run = 0
        for x in range(crop.width + 1):
            if x < crop.width and crop.getpixel((x, y)):
                run += 1
            elif run:
                total += 1
                one += run == 1
                run = 0
    return one / max(1, total)


@pytest.mark.parametrize("lang", ["fr", "ar"])
@pytest.mark.parametrize("text", ["long", "short"])
def test_nature_and_address_are_drawn_with_a_two_pixel_stroke(panel, lang, text):
    nature, address = (LONG if text == "long" else SHORT)[lang]
    image, placed = panel.render_layout(PanelView(lang=lang, gnss_fix=3,
                                                  call=CallSummary("C", 2, nature, address, 850.0, 40.0, 35.0)))
    save(f"bold-{text}-{lang}", image)
    for role in ("nature", "address"):
        for p in (p for p in placed if p.role == role):
            assert one_pixel_runs(image, p.ink) < 0.25, f"{role} {p.text!r} drawn in a thin stroke"


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_waiting_calls_are_counted_on_the_call_screen(panel, lang):
    call = CallSummary("C", 1, *SHORT[lang], 850.0, 40.0, 35.0)
    image, placed = panel.render_layout(PanelView(lang=lang, gnss_fix=3, call=call, waiting=2))
    save(f"waiting-{lang}", image)
    badge = next(p for p in placed if p.role == "waiting")
    assert badge.text == "+2"
    distance = next(p for p in placed if p.role == "distance")
    assert badge.ink[0] >= distance.ink[2] or badge.ink[2] <= distance.ink[0]  # beside, not over
    assert "waiting" not in {p.role for p in panel.render_layout(PanelView(lang=lang, gnss_fix=3, call=call))[1]}


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_the_pending_alarm_names_its_cancel_button_and_the_seconds_left(panel, lang):
    image, placed = panel.render_layout(PanelView(lang=lang, emergency="pending", cancel_left_s=4))
    save(f"alarm-pending-{lang}", image)
    texts = {p.role: p.text for p in placed}
    assert "ACK" in " ".join(p.text for p in placed if p.role == "cancel-button")
    assert "4" in texts["cancel-countdown"]
    for p in placed:
        assert 0 <= p.ink[0] and p.ink[2] <= W and 0 <= p.ink[1] and p.ink[3] <= H


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_a_hold_shows_its_progress_over_the_screen(panel, lang):
    call = CallSummary("C", 1, *SHORT[lang], 850.0, 40.0, 35.0)
    widths = []
    for progress in (0.2, 0.5, 0.9):
        image, placed = panel.render_layout(PanelView(lang=lang, gnss_fix=3, call=call, hold_progress=progress))
        save(f"hold-{lang}-{int(progress * 100)}", image)
        bar = next(p for p in placed if p.role == "hold-bar")
        widths.append(bar.box[2] - bar.box[0])
        assert next(p for p in placed if p.role == "nature")  # the call stays on screen
        if lang == "ar":
            assert bar.box[2] >= W - 1  # it fills from the start side: the right in Arabic
    assert widths == sorted(widths) and widths[0] < widths[-1]


# ------------------------------------------------------------- from the core


def test_the_core_counts_waiting_calls_and_times_the_alarm_for_the_panel():
    rig = Rig(config("motorcycle", panel={"emergency_hold_s": 2.0, "emergency_cancel_s": 5.0}))
    rig.link_up()
    rig.fix()
    rig.message("call", call_payload(id="A", priority=1))
    rig.message("call", call_payload(id="B", priority=2))
    assert views.rider_view(rig.unit, rig.now()).waiting == 1
    rig.press("emergency")
    rig.after(1.0).tick()
    view = views.rider_view(rig.unit, rig.now())
    assert view.emergency == "none" and view.hold_progress == pytest.approx(0.5)
    assert views.next_redraw(rig.unit, rig.now().mono) == pytest.approx(rig.now().mono + views.HOLD_REDRAW_S)
    rig.after(1.1).tick()
    view = views.rider_view(rig.unit, rig.now())
    assert view.emergency == "pending" and view.cancel_left_s == 5 and view.hold_progress is None
    rig.after(1.5).tick()
    assert views.rider_view(rig.unit, rig.now()).cancel_left_s == 4
    # Woken when the whole seconds left drop by one, so the countdown never skips a second.
    assert views.next_redraw(rig.unit, rig.now().mono) == pytest.approx(rig.now().mono + 0.4, abs=0.01)


def test_the_character_lcd_shows_the_same():
    call = CallSummary("C", 1, "Vol à l'arraché", "Rue Ibn Sina", 1240.0, 40.0, 35.0)
    rows = char_lines(PanelView(call=call, waiting=3))
    assert rows[-1].endswith("+3") and "1,2 km" in rows[-1]
    pending = char_lines(PanelView(emergency="pending", cancel_left_s=4))
    assert any("ACK" in r for r in pending) and any("4 s" in r for r in pending)
    held = char_lines(PanelView(call=call, hold_progress=0.5))
    assert held[-1] == "[" + "#" * 9 + " " * 9 + "]"


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_a_call_old_on_arrival_says_so_before_its_nature(panel, lang):
    call = CallSummary("C", 1, *SHORT[lang], 850.0, 40.0, 35.0, stale=True)
    image, placed = panel.render_layout(PanelView(lang=lang, gnss_fix=3, call=call))
    save(f"stale-{lang}", image)
    nature = " ".join(p.text for p in placed if p.role == "nature")
    assert (visual("قديم") if lang == "ar" else "ANCIEN") in nature
    fresh = panel.render_layout(PanelView(lang=lang, gnss_fix=3, call=CallSummary("C", 1, *SHORT[lang], 850.0)))[1]
    assert "ANCIEN" not in " ".join(p.text for p in fresh) and visual("قديم") not in " ".join(p.text for p in fresh)
    assert char_lines(PanelView(call=CallSummary("C", 1, "Vol", "Rue", 850.0, stale=True)))[0].startswith("P1 ANCIEN Vol")
