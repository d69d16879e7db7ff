"""The rider panel display drawn through luma's dummy device (agent.adapters.panel_display).

Every screen is saved under test-artifacts/panel/ (native 128×64 and ×4 for a
person to look at). The assertions are about what a rider would notice: a
blank screen, empty boxes instead of Arabic letters, text cut by the screen
edge, Arabic drawn left to right, an arrow that does not turn.
"""

import threading
from pathlib import Path

import pytest
from luma.core.device import dummy
from PIL import Image, ImageChops, ImageDraw, ImageFont

from agent.adapters.display_text import FontSet, fit_line, missing_glyphs, visual, wrap_lines
from agent.adapters.panel_display import DisplayError, DisplayWorker, PanelDisplay, _Painter, open_display
from agent.core.i18n import load_strings
from agent.core.panel_view import CallSummary, PanelView

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "panel"
W, H = 128, 64

CALLS = {
    "fr": [
        CallSummary("C-1", 1, "Accident de la circulation", "Avenue Mohammed V, Kénitra", 850, 40, 35, 120),
        CallSummary("C-2", 2, "Vol à l'arraché", "Rue Ibn Sina, Maamora", 2_400, 200, -90, 30),
        CallSummary("C-3", 3, "Tapage nocturne", "Bir Rami Est", 12_600, 300, None, 30),
    ],
    "ar": [
        CallSummary("C-1", 1, "حادثة سير خطيرة", "شارع محمد الخامس، القنيطرة", 850, 40, 35, 120),
        CallSummary("C-2", 2, "سرقة بالخطف", "Rue Ibn Sina, Maamora", 2_400, 200, 170, 30),  # Latin address
        CallSummary("C-3", 3, "إزعاج ليلي", "حي الساكنية 12", 12_600, 300, None, 30),
    ],
}


def save(name: str, image: Image.Image) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    image.save(path)
    image.convert("L").resize((image.width * 4, image.height * 4), Image.NEAREST).save(ARTIFACTS / f"{name}_x4.png")
    return path


def lit(image: Image.Image, box=None) -> int:
    """Number of lit pixels (in ``box`` if given)."""
    region = image.convert("1") if box is None else image.convert("1").crop(box)
    return region.histogram()[255]


@pytest.fixture(scope="module")
def panel() -> PanelDisplay:
    return open_display("dummy")


def assert_on_screen(layout, width=W, height=H):
    """Nothing drawn is cut by the screen edge or spills out of its box sideways."""
    assert layout, "nothing was drawn"
    for placed in layout:
        l, t, r, b = placed.ink
        assert 0 <= l and r <= width and 0 <= t and b <= height, f"{placed.role} {placed.text!r} off screen: {placed.ink}"
        assert placed.box[0] <= l and r <= placed.box[2], f"{placed.role} {placed.text!r} {placed.ink} outside {placed.box}"


# ------------------------------------------------------------------ screens


@pytest.mark.parametrize("lang", ["fr", "ar"])
@pytest.mark.parametrize("index", [0, 1, 2])
def test_call_screens(panel, lang, index):
    call = CALLS[lang][index]
    view = PanelView(lang=lang, status="en_route", link_up=True, gnss_fix=3, call=call)
    image, layout = panel.render_layout(view)
    save(f"call_{lang}_p{call.priority}", image)
    assert image.size == (W, H) and image.mode == "1"
    assert 300 < lit(image) < W * H * 0.6
    assert_on_screen(layout)
    roles = [p.role for p in layout]
    assert {"priority", "nature", "distance"} <= set(roles)
    assert next(p.text for p in layout if p.role == "priority") == f"P{call.priority}"
    assert ("arrow" in roles) == (call.relative_bearing_deg is not None)


def test_call_screen_through_the_device(panel):
    view = PanelView(lang="fr", call=CALLS["fr"][0])
    frames = panel.frames
    assert panel.show(view)
    assert panel.device.image is not None
    assert ImageChops.difference(panel.device.image.convert("L"), panel.render(view).convert("L")).getbbox() is None
    assert panel.show(view) and panel.frames == frames + 1  # unchanged view: no second write
    assert panel.show(view, force=True) and panel.frames == frames + 2


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_idle_screens(panel, lang):
    good = PanelView(lang=lang, status="available", link_up=True, gnss_fix=3, clock="14:05")
    bad = PanelView(lang=lang, status="out_of_service", link_up=False, gnss_fix=1, clock="09:41")
    for name, view in (("ok", good), ("degraded", bad)):
        image, layout = panel.render_layout(view)
        save(f"idle_{lang}_{name}", image)
        assert lit(image) > 200
        assert_on_screen(layout)
    good_layout = {p.role: p for p in panel.render_layout(good)[1]}
    bad_layout = {p.role: p for p in panel.render_layout(bad)[1]}
    assert "problems" not in good_layout and "problems" in bad_layout  # link and GNSS trouble is spelled out
    assert good_layout["clock"].text == "14:05"
    # The clock is at the end of the top bar: right in French, left in Arabic.
    if lang == "fr":
        assert good_layout["clock"].ink[2] >= W - 2
    else:
        assert good_layout["clock"].ink[0] <= 1


@pytest.mark.parametrize("lang", ["fr", "ar"])
@pytest.mark.parametrize("state", ["pending", "active", "acknowledged"])
def test_emergency_screens(panel, lang, state):
    view = PanelView(lang=lang, emergency=state, call=CALLS[lang][0])  # the alarm outranks the call
    image, layout = panel.render_layout(view)
    save(f"emergency_{lang}_{state}", image)
    assert_on_screen(layout)
    roles = {p.role for p in layout}
    assert "emergency-title" in roles and "nature" not in roles
    assert ("check" in roles) == (state == "acknowledged")
    # Raised but still cancellable: dark screen with a frame; sent: the screen lights up.
    top = lit(image, (0, 0, W, H // 2)) / (W * H // 2)
    assert top < 0.45 if state == "pending" else top > 0.55


def test_states_look_different(panel):
    renders = [panel.render(PanelView(emergency=s)).tobytes() for s in ("pending", "active", "acknowledged")]
    assert len(set(renders)) == 3


# --------------------------------------------------------------- Arabic text


def arabic_strings() -> str:
    sample = "".join(c.nature + c.address for c in CALLS["ar"])
    return sample + "".join(load_strings("ar").values())


def test_dejavu_has_every_arabic_glyph_pillow_default_has_none():
    fonts = FontSet.default()
    shaped = visual(arabic_strings())
    for bold in (False, True):
        assert missing_glyphs(fonts.get(14, bold), shaped) == set()
    # The check can fail: Pillow's own font draws empty boxes for Arabic.
    tofu = missing_glyphs(ImageFont.load_default(), shaped)
    assert {ch for ch in shaped if "\ufe70" <= ch <= "\ufefc"} <= tofu


def test_arabic_render_is_not_tofu(panel):
    """The nature drawn on the panel differs from what the default font would draw there."""
    call = CALLS["ar"][1]
    image, layout = panel.render_layout(PanelView(lang="ar", call=call))
    nature = next(p for p in layout if p.role == "nature")
    tofu = Image.new("1", image.size)
    ImageDraw.Draw(tofu).text((nature.ink[0], nature.ink[1]), nature.text, font=ImageFont.load_default(), fill=1)
    ours = image.crop(nature.ink)
    theirs = tofu.crop(nature.ink)
    assert lit(ours) > 40
    assert ImageChops.difference(ours.convert("L"), theirs.convert("L")).getbbox() is not None


def test_first_logical_arabic_letter_is_drawn_at_the_right():
    """RTL order: "دار" is "ار" with the first letter (dal) added on the right.

    Dal does not join to the next letter, so taking it away leaves the other
    glyphs unchanged; drawn from the same left edge, the two renders share
    their left part and only the three-letter word has ink further right.
    """
    font = FontSet.default().get(20, True)

    def draw(text):
        image = Image.new("1", (80, 30))
        ImageDraw.Draw(image).text((2, 2), visual(text), font=font, fill=1)
        return image

    full, rest = draw("دار"), draw("ار")
    rest_right = rest.getbbox()[2]
    assert full.getbbox()[2] > rest_right + 3
    left_full, left_rest = full.crop((0, 0, rest_right - 2, 30)), rest.crop((0, 0, rest_right - 2, 30))
    assert ImageChops.difference(left_full.convert("L"), left_rest.convert("L")).getbbox() is None


def test_arabic_layout_is_mirrored(panel):
    image, layout = panel.render_layout(PanelView(lang="ar", call=CALLS["ar"][0]))
    placed = {p.role: p for p in layout}
    assert placed["priority-box"].box[2] == W  # priority box on the right
    assert placed["nature"].ink[2] >= placed["nature"].box[2] - 2  # Arabic text flush right
    assert placed["arrow"].box[2] == W and placed["distance"].ink[2] < placed["arrow"].box[0]
    fr = {p.role: p for p in panel.render_layout(PanelView(lang="fr", call=CALLS["fr"][0]))[1]}
    assert fr["priority-box"].box[0] == 0 and fr["arrow"].box[0] == 0


def test_mixed_scripts_keep_their_order():
    # Digits and Latin words inside Arabic keep their left-to-right order.
    assert "12" in visual("حي الساكنية 12") and "21" not in visual("حي الساكنية 12")
    assert "V12" in visual("سرقة سيارة V12")
    assert visual("Rue Ibn Sina, Maamora") == "Rue Ibn Sina, Maamora"  # Latin untouched
    # A Latin address in the Arabic UI: still left to right, aligned right.
    assert visual("Rue Ibn Sina 12 حي") .startswith("Rue Ibn Sina 12")


# -------------------------------------------------------------- fitting text


def test_fit_and_wrap_in_logical_order():
    # One "pixel" per character makes the arithmetic visible.
    assert fit_line("Accident", len, 20) == ("Accident", False)
    assert fit_line("Accident de la circulation", len, 12) == ("Accident de…", True)
    assert wrap_lines("Accident de la circulation", len, 12, 2) == ["Accident de", "la circulat…"]
    assert wrap_lines("Accident de la circulation", len, 12, 1) == ["Accident de…"]
    assert wrap_lines("Vol", len, 12, 2) == ["Vol"]
    # Arabic is cut at its logical end, which is drawn on the left: the ellipsis comes out leftmost.
    cut, was_cut = fit_line("حادثة سير خطيرة", len, 10)
    assert was_cut and cut.startswith("…") and cut == visual("حادثة سير…")


@pytest.mark.parametrize("lang, nature, address", [
    ("fr", "Agression à l'arme blanche sur la voie publique avec plusieurs blessés",
     "Boulevard Mohammed Diouri, angle rue Abdelkrim El Khattabi, Kénitra"),
    ("ar", "اعتداء بالسلاح الأبيض على الطريق العمومية مع عدة جرحى",
     "شارع محمد الديوري، زاوية شارع عبد الكريم الخطابي، القنيطرة"),
])
def test_long_text_is_paged_never_cut_nor_run_off_the_edge(panel, lang, nature, address):
    call = CallSummary("C-9", 1, nature, address, 1_450, 10, 10, 20)
    view = PanelView(lang=lang, call=call)
    pages = panel.page_count(view)
    assert pages > 1
    for page in range(pages):
        image, layout = panel.render_layout(view, page)
        save(f"call_{lang}_long_p{page + 1}", image)
        assert_on_screen(layout)
        assert not any("…" in p.text for p in layout), [p.text for p in layout]
        assert any(p.role == "page-mark" for p in layout)


# -------------------------------------------------------------------- arrow


def arrow_crop(panel, bearing, lang="fr"):
    call = CallSummary("C", 1, "Vol", "", 2_000, 0, bearing)
    image, layout = panel.render_layout(PanelView(lang=lang, call=call))
    return image.crop(next(p for p in layout if p.role == "arrow").box)


def overlap(a: Image.Image, b: Image.Image) -> float:
    """Intersection over union of the lit pixels of two same-sized images."""
    a, b = a.convert("1"), b.convert("1")
    return lit(ImageChops.logical_and(a, b)) / lit(ImageChops.logical_or(a, b))


def test_arrow_turns_with_the_bearing(panel):
    north, east, south, west = (arrow_crop(panel, b) for b in (0, 90, 180, -90))
    arrows = Image.new("1", (north.width * 4 + 12, north.height), 0)
    for i, im in enumerate((north, east, south, west)):
        arrows.paste(im, (i * (north.width + 4), 0))
    save("arrows_0_90_180_270", arrows)
    assert overlap(north, east) < 0.5
    # Turning the 0° arrow a quarter clockwise gives the 90° one (PIL rotates anticlockwise).
    assert overlap(north.rotate(-90), east) > 0.8
    assert overlap(north.rotate(180), south) > 0.8
    assert overlap(north.rotate(90), west) > 0.8
    # Pointing ahead: more ink in the top half than in the bottom half? No: the tip is thin.
    # The tip is the topmost lit pixel and it sits on the vertical centre line.
    top_row = next(y for y in range(north.height) if lit(north, (0, y, north.width, y + 1)))
    xs = [x for x in range(north.width) if north.getpixel((x, top_row))]
    assert abs(sum(xs) / len(xs) - (north.width - 1) / 2) <= 1


def test_arrow_is_not_mirrored_in_arabic(panel):
    assert overlap(arrow_crop(panel, 90, "ar"), arrow_crop(panel, 90, "fr")) > 0.95


def test_without_heading_the_compass_point_is_written(panel):
    call = CallSummary("C", 2, "Vol", "", 2_400, 225.0, None)
    layout = panel.render_layout(PanelView(lang="fr", call=call))[1]
    assert next(p.text for p in layout if p.role == "distance") == "2,4\u202fkm SO"
    assert "arrow" not in {p.role for p in layout}


def test_a_position_no_longer_current_keeps_distance_and_compass_with_its_age(panel):
    """The fix went (a tunnel, a restart in a garage): the way from where the unit was, and how long ago."""
    call = CallSummary("C", 2, "Vol", "", 2_400, 225.0, None, position_age_s=190.0)
    layout = panel.render_layout(PanelView(lang="fr", call=call))[1]
    assert next(p.text for p in layout if p.role == "distance") == "2,4\u202fkm SO · il y a 3 min"
    assert "arrow" not in {p.role for p in layout}


def test_arabic_compass_point_fits_untruncated(panel):
    call = CallSummary("C", 3, "إزعاج ليلي", "", 2_600, 315.0, None)
    layout = panel.render_layout(PanelView(lang="ar", call=call))[1]
    assert next(p.text for p in layout if p.role == "distance") == visual("2,6 كلم شمال غرب")


def test_near_and_unknown_positions(panel):
    near = panel.render_layout(PanelView(lang="fr", call=CallSummary("C", 1, "Vol", "", 12.0)))[1]
    assert "target" in {p.role for p in near}
    assert next(p.text for p in near if p.role == "distance") == "Sur zone"
    no_fix = panel.render_layout(PanelView(lang="fr", call=CallSummary("C", 1, "Vol")))[1]
    assert next(p.text for p in no_fix if p.role == "distance") == "Pas de GPS"
    nowhere = panel.render_layout(PanelView(lang="ar", call=CallSummary("C", 1, "سرقة", has_location=False)))[1]
    assert next(p.text for p in nowhere if p.role == "distance") == visual("موقع البلاغ مجهول")
    lost = panel.render_layout(PanelView(lang="fr", gnss_lost=True, call=CallSummary("C", 1, "Vol")))[1]
    assert next(p.text for p in lost if p.role == "distance") == "GPS débranché"


# ------------------------------------------------------------ device, errors


class FlakyDevice(dummy):
    """A dummy panel whose I2C writes fail while ``broken`` is set, like a loose connector."""

    broken = True

    def display(self, image):
        if self.broken:
            raise OSError(121, "Remote I/O error")
        super().display(image)


def test_a_failing_bus_is_counted_not_raised():
    device = FlakyDevice(width=W, height=H, mode="1")
    panel = PanelDisplay(device)
    view = PanelView(lang="fr", status="busy")
    assert panel.show(view) is False and panel.errors == 1
    device.broken = False
    assert panel.show(view) is True and device.image is not None  # the same view is retried once it works


class SlowDevice(dummy):
    """A dummy panel that blocks each frame until the test lets it through."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.gate = threading.Event()
        self.frames = []

    def display(self, image):
        assert self.gate.wait(5), "the test never opened the gate"
        super().display(image)
        self.frames.append(image.copy())


def test_worker_keeps_the_caller_free_and_draws_the_latest_view():
    device = SlowDevice(width=W, height=H, mode="1")
    worker = DisplayWorker(PanelDisplay(device))
    try:
        worker.post(PanelView(status="available"))  # the worker takes it and blocks in the device
        for status in ("en_route", "on_scene", "busy"):
            worker.post(PanelView(status=status))  # returns at once; only the last one stays
        assert not worker.wait_drawn(0.05)  # still blocked in the device
        device.gate.set()
        assert worker.wait_drawn(5)
        expected = PanelDisplay(dummy(width=W, height=H, mode="1")).render(PanelView(status="busy"))
        assert len(device.frames) <= 2  # first frame, then straight to the latest
        assert ImageChops.difference(device.frames[-1].convert("L"), expected.convert("L")).getbbox() is None
    finally:
        device.gate.set()
        worker.close()


def test_status_labels_from_config():
    panel = PanelDisplay(dummy(width=W, height=H, mode="1"), labels={"fr": {"status.busy": "Indispo"}})
    layout = panel.render_layout(PanelView(lang="fr", status="busy"))[1]
    assert next(p.text for p in layout if p.role == "status") == "Indispo"


def test_rotated_device_draws_in_its_own_orientation():
    panel = open_display("dummy", rotate=2)
    view = PanelView(lang="fr", call=CALLS["fr"][0])
    panel.show(view)
    upright = open_display("dummy").render(view)
    assert ImageChops.difference(panel.device.image.convert("L"), upright.rotate(180).convert("L")).getbbox() is None


def test_open_display_kinds():
    assert open_display("none") is None
    with pytest.raises(DisplayError, match="unknown display kind"):
        open_display("lcd")
    with pytest.raises(DisplayError, match="landscape"):
        open_display("dummy", rotate=1)
    with pytest.raises(DisplayError, match="128×64"):
        open_display("dummy", height=32)


def test_missing_i2c_bus_is_a_clear_error():
    # No /dev/i2c-7 on a test machine (or on a Pi): luma's own check, reported with port and address.
    with pytest.raises(DisplayError, match=r"ssd1306 display at I2C port 7 address 0x3C"):
        open_display("ssd1306", i2c_port=7)


def test_missing_font_is_a_clear_error(tmp_path):
    with pytest.raises(DisplayError, match="fonts-dejavu-core"):
        FontSet.default(dirs=[tmp_path])


def test_painter_boxes_mirror_for_rtl():
    image = Image.new("1", (W, H))
    assert _Painter(image, FontSet.default(), rtl=True).box(0, 0, 34, 20) == (94, 0, 128, 20)
    assert _Painter(image, FontSet.default(), rtl=False).box(0, 0, 34, 20) == (0, 0, 34, 20)
