"""Every rider panel state in both languages, rendered through luma's dummy device and read from its pixels.

What a rider must get at a glance, checked on the image itself:

* no lit pixel in the display's last row (an Arabic descender or the "م" after
  the distance touching the edge), except on the inverted alarm screens;
* a blank pixel row between two lines of text that lie one above the other
  (two Arabic lines touching read as one smudge);
* every text inside its box and on the screen;
* nature and address never cut mid-word and never lost: every word shows on
  some page, the pages turn with a page mark, and the dispatcher's short form
  (``code``) stands in for a nature that would need pages.

Each state is saved under ``test-artifacts/panel/states/`` (128×64 and ×4).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image

from agent.adapters.display_text import visual
from agent.adapters.panel_display import DisplayWorker, PanelDisplay, open_display
from agent.core.panel_view import CallSummary, PanelView

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "panel" / "states"
W, H = 128, 64

TEXT = {
    "fr": {
        "short": ("Rixe", "Marché central"),
        "medium": ("Rixe sur la voie publique", "Marché central, Kénitra"),
        "long": ("Rixe sur la voie publique avec arme blanche, plusieurs blessés",
                 "Marché central, angle avenue Mohammed V et rue de Fès, Kénitra"),
    },
    "ar": {
        "short": ("شجار", "السوق المركزي"),
        "medium": ("شجار في الطريق العام", "السوق المركزي، القنيطرة"),
        "long": ("شجار في الطريق العام بسلاح أبيض، عدة مصابين",
                 "السوق المركزي، زاوية شارع محمد الخامس وزنقة فاس، القنيطرة"),
    },
}


def calls(lang: str) -> dict[str, CallSummary]:
    out = {}
    for size, (nature, address) in TEXT[lang].items():
        out[f"{size}-moving"] = CallSummary("C-1", 1, nature, address, 850.0, 40.0, 35.0, 60.0)
        out[f"{size}-stopped"] = CallSummary("C-2", 2, nature, address, 2_400.0, 225.0, None, 60.0)
    nature, address = TEXT[lang]["long"]
    out["long-with-code"] = CallSummary("C-3", 1, nature, address, 850.0, 40.0, 35.0, 60.0, code="RIXE-AB",
                                        address_short="Marché central" if lang == "fr" else "السوق المركزي")
    out["no-location"] = CallSummary("C-4", 2, *TEXT[lang]["medium"], has_location=False)
    out["no-own-fix"] = CallSummary("C-5", 3, *TEXT[lang]["medium"])
    out["on-the-spot"] = CallSummary("C-6", 1, *TEXT[lang]["medium"], 12.0, None, None, 60.0)
    out["far"] = CallSummary("C-7", 3, *TEXT[lang]["short"], 128_400.0, 315.0, None, 60.0)
    return out


def states(lang: str) -> dict[str, PanelView]:
    out = {}
    for link in (True, False):
        for fix in (3, 1):
            out[f"idle-{'online' if link else 'offline'}-fix{fix}"] = PanelView(
                lang=lang, status="out_of_service", link_up=link, gnss_fix=fix, clock="23:59")
    out["idle-offline-receiver-lost"] = PanelView(lang=lang, status="en_route", gnss_fix=1, gnss_lost=True, clock="23:59")
    for name, call in calls(lang).items():
        out[f"call-{name}"] = PanelView(lang=lang, status="en_route", link_up=True, gnss_fix=3, call=call, clock="23:59")
    for em in ("pending", "active", "acknowledged"):
        out[f"emergency-{em}"] = PanelView(lang=lang, emergency=em, link_up=True, gnss_fix=3)
    return out


LINE_ROLES = {"nature", "address", "distance", "status", "problems", "emergency-title", "emergency-state"}
CASES = [(lang, name) for lang in ("fr", "ar") for name in states(lang)]


@pytest.fixture(scope="module")
def panel() -> PanelDisplay:
    return open_display("dummy")


def pixels(image: Image.Image):
    return image.convert("1").load()


def save(name: str, image: Image.Image) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    image.save(ARTIFACTS / f"{name}.png")
    image.convert("L").resize((W * 4, H * 4), Image.NEAREST).save(ARTIFACTS / f"{name}_x4.png")


def check_page(image: Image.Image, layout, framed: bool, filled: bool | None) -> None:
    """``framed``: a screen drawn edge to edge on purpose (the alarm); ``filled``: white background."""
    px = pixels(image)
    if not framed:
        lit = [x for x in range(W) if px[x, H - 1]]
        assert not lit, f"lit pixels in the last row at x={lit}"
    texts = [p for p in layout if p.text]
    for p in texts:
        l, t, r, b = p.ink
        assert 0 <= l and 0 <= t and r <= W and b <= H, f"{p.role} {p.text!r} off screen: {p.ink}"
        x0, y0, x1, y1 = p.box
        assert x0 <= l and r <= x1 and y0 <= t and b <= y1, f"{p.role} {p.text!r} {p.ink} outside its box {p.box}"
    # Lines one above the other: a blank row between them, over the width they share (text
    # drawn on the open screen; labels inside a filled box or over a rule are the box's business).
    lines = [p for p in texts if p.role in LINE_ROLES]
    for a in lines:
        for b in lines:
            if a is b or not a.ink[3] <= b.ink[1] + 1 or a.ink[1] >= b.ink[1]:
                continue
            left, right = max(a.ink[0], b.ink[0]), min(a.ink[2], b.ink[2])
            if left >= right:
                continue
            assert a.ink[3] < b.ink[1], f"{a.role} {a.text!r} touches {b.role} {b.text!r}"
            # The row just under the upper line and the row just over the lower one are background.
            if filled is None:
                continue  # two backgrounds meet between the lines (the acknowledged alarm's band)
            background = 1 if filled else 0
            for y in (a.ink[3], b.ink[1] - 1):
                assert all((px[x, y] != 0) == bool(background) for x in range(left, right)), \
                f"no blank row between {a.text!r} and {b.text!r}"


def words_shown(panel: PanelDisplay, view: PanelView, role: str) -> list[str]:
    lines = []
    for page in range(panel.page_count(view)):
        lines += [p.text for p in panel.render_layout(view, page)[1] if p.role == role]
    return lines


@pytest.mark.parametrize("lang,name", CASES, ids=[f"{lang}-{name}" for lang, name in CASES])
def test_every_panel_state_reads_clean(panel, lang, name):
    view = states(lang)[name]
    pages = panel.page_count(view)
    assert 1 <= pages <= 6
    for page in range(pages):
        image, layout = panel.render_layout(view, page)
        save(f"{lang}-{name}" + (f"-p{page + 1}" if pages > 1 else ""), image)
        check_page(image, layout, framed=view.emergency != "none", filled={"none": False, "pending": False, "active": True}.get(view.emergency))
        assert any(p.role == "page-mark" for p in layout) == (pages > 1)
        assert not any("…" in p.text for p in layout), f"text cut: {[p.text for p in layout]}"
    call = view.call
    if call is None:
        return
    shorts = call.code is not None
    for role, text in (("nature", call.code if shorts else call.nature),
                       ("address", call.address_short if shorts else call.address)):
        shown = words_shown(panel, view, role)
        assert not any("…" in line for line in shown), f"{role} cut: {shown}"
        base = "R" if lang == "ar" and role != "code" else "L"
        for word in text.split():
            form = visual(word, base) if any("\u0600" <= ch <= "\u06ff" for ch in word) else word
            assert any(form in line for line in shown), f"{role}: {word!r} never shown in {shown}"


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_a_short_call_fits_one_page_and_a_long_one_pages(panel, lang):
    medium = PanelView(lang=lang, gnss_fix=3, call=calls(lang)["medium-moving"])
    long = PanelView(lang=lang, gnss_fix=3, call=calls(lang)["long-moving"])
    assert panel.page_count(PanelView(lang=lang, gnss_fix=3, call=calls(lang)["short-moving"])) == 1
    assert panel.page_count(long) > 1
    assert panel.page_count(medium) <= 2


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_the_short_forms_stand_in_for_text_that_would_need_pages(panel, lang):
    view = PanelView(lang=lang, gnss_fix=3, call=calls(lang)["long-with-code"])
    assert set(words_shown(panel, view, "nature")) == {"RIXE-AB"}
    assert words_shown(panel, view, "address") == [visual(view.call.address_short)]
    assert panel.page_count(view) == 1  # one glance
    # A call that fits keeps its full text even when it carries short forms.
    nature, address = TEXT[lang]["short"]
    fits = PanelView(lang=lang, gnss_fix=3, call=CallSummary("C", 1, nature, address, 900.0, 10.0, 10.0,
                                                             code="X-1", address_short="Y"))
    assert words_shown(panel, fits, "nature") == [visual(nature)]
    assert words_shown(panel, fits, "address") == [visual(address)]


class _Device:
    """A dummy device that counts frames, so the worker's page turns can be awaited."""

    def __init__(self):
        self.inner = open_display("dummy")
        self.frames: list[Image.Image] = []
        self.cond = threading.Condition()

    def __getattr__(self, name):
        return getattr(self.inner.device, name)

    def display(self, image):
        with self.cond:
            self.frames.append(image.copy())
            self.cond.notify_all()


def test_the_worker_turns_the_pages_of_a_long_call_and_stops_on_a_short_one():
    device = _Device()
    display = PanelDisplay(device)
    worker = DisplayWorker(display, page_s=0.05)
    try:
        worker.post(PanelView(lang="ar", gnss_fix=3, call=calls("ar")["long-moving"]))
        pages = display.page_count(PanelView(lang="ar", gnss_fix=3, call=calls("ar")["long-moving"]))
        with device.cond:
            assert device.cond.wait_for(lambda: len(device.frames) >= pages + 1, 10.0)
        distinct = {frame.tobytes() for frame in device.frames[: pages]}
        assert len(distinct) == pages  # each page is a different picture
        assert device.frames[pages].tobytes() == device.frames[0].tobytes()  # and it comes round again
        worker.post(PanelView(lang="ar", gnss_fix=3, call=calls("ar")["short-moving"]))
        assert worker.wait_drawn(5.0)
        with device.cond:
            count = len(device.frames)
            # A one-page view is not redrawn: nothing new arrives.
            assert not device.cond.wait_for(lambda: len(device.frames) > count, 0.3)
    finally:
        worker.close()
