"""The rider panel's screens (pure): a ``PanelView`` in, a picture of the display out.

What a rider in a helmet can take in at a glance, and nothing more:

- idle: the unit status in big letters, link and GNSS indicators, the clock;
- a call: the priority in a big box ("P1" inverted), the nature and the
  address, and on the bottom row an arrow to the incident relative to the
  motorcycle's heading with the distance. Nature and address are never cut
  mid-word: each takes the largest size that fits on one line, else wraps,
  else its lines are shown a page at a time with a page mark at the edge (the
  display turns the pages). The dispatcher's short nature (the call's
  ``code``) is shown instead of a nature that would need pages, and its short
  address (``address_short``) for an address that would. Lines keep a blank
  pixel row between them and the last row of the display stays dark (Arabic
  descenders included);
- an emergency: "ALARME" and whether dispatch has acknowledged it.

``PanelLayout(size, mode).render(view, page)`` draws into a new Pillow image
of the display's size and colour mode and returns it with what was placed
where and how many pages the view has. It opens no device: the same picture
goes to a real OLED or to ``luma.core.device.dummy`` in tests
(:mod:`agent.adapters.panel_display` sends it). The screen layout is mirrored
for an Arabic UI (priority box on the right, text aligned right); arrows are
never mirrored: they point at a real place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw

from agent.adapters.display_text import DisplayError, FontSet
from agent.adapters.panel_paint import BLACK, MARK_W, WHITE, Box, Flow, Painter, Placed, arrow_polygon
from agent.core import geo
from agent.core.i18n import Catalog
from agent.core.panel_view import CallSummary, PanelView, format_age

MIN_SIZE = (128, 64)
NATURE_SIZES = [16, 15, 14, 13, 12]
ADDRESS_SIZES = [13, 12, 11]
HOLD_BAR_H = 20  # the hold bar over the bottom of the screen (the call's guidance row)


@dataclass(frozen=True)
class Frame:
    """One picture of a view: the image, what was placed where, and how many pages the view has."""

    image: Image.Image
    placed: list[Placed]
    pages: int


class PanelLayout:
    """Lays ``PanelView``s out for a display of ``size`` pixels in Pillow colour ``mode``."""

    def __init__(self, size: tuple[int, int], mode: str = "1", *, fonts: FontSet | None = None,
                 labels: Mapping[str, Mapping[str, str]] | None = None) -> None:
        width, height = size
        if width < MIN_SIZE[0] or height < MIN_SIZE[1] or width < height:
            # The screens are laid out for the 128×64 panels; a portrait or
            # 128×32 panel would get cut-off text rather than a usable display.
            raise DisplayError(
                f"the panel layout needs a landscape display of at least {MIN_SIZE[0]}×{MIN_SIZE[1]} "
                f"(after rotation); this one is {width}×{height}"
            )
        self.size = (width, height)
        self.mode = mode
        self.fonts = fonts or FontSet.default()
        # Overrides are keyed by full catalog key ({"fr": {"status.busy": "..."}}).
        self._catalogs = {lang: Catalog(lang, (labels or {}).get(lang)) for lang in ("fr", "ar")}

    def render(self, view: PanelView, page: int = 0) -> Frame:
        """Page ``page`` of ``view`` (any number: it wraps around the view's pages)."""
        catalog = self._catalogs[view.lang]
        image = Image.new(self.mode, self.size, BLACK)
        painter = Painter(image, self.fonts, catalog.direction == "rtl")
        pages = 1
        if view.crash_prompt_s is not None:
            self._crash(painter, view.crash_prompt_s, catalog)
        elif view.emergency != "none":
            self._emergency(painter, view, catalog)
        elif view.call is not None:
            pages = self._call(painter, view, page)
        else:
            self._idle(painter, view, catalog)
        if view.emergency == "none" and view.hold_progress is not None:
            self._hold(painter, view.hold_progress, catalog)
        return Frame(image, painter.placed, pages)

    @staticmethod
    def page_key(view: PanelView) -> tuple | None:
        """What the pages of ``view`` are made of: while it stays the same, so does the page on show.

        The distance, the arrow, the hold bar and the count of waiting calls change
        without turning the page; another call or another text starts again on page 1.
        """
        if view.emergency != "none" or view.call is None:
            return None
        call = view.call
        return (view.lang, call.id, call.nature, call.address, call.code, call.address_short, call.stale)

    # ----------------------------------------------------------- screens

    def _idle(self, p: Painter, view: PanelView, c: Catalog) -> None:
        w, h = p.width, p.height
        bar = max(12, h // 5)
        self._link_icon(p, p.box(0, 0, bar + 1, bar), view.link_up)
        gps = p.text("gnss", p.box(bar + 6, 0, bar + 42, bar), c("gnss.label"), [bar - 2, 10], bold=True)
        if gps and not view.has_fix:  # crossed out: no position
            l, t, r, b = gps.ink
            p.draw.line((l - 1, b + 1, r + 1, t - 1), fill=WHITE, width=2)
        if view.clock:
            p.text("clock", p.box(w - 44, 0, w, bar), view.clock, [bar, bar - 1, 11], bold=True, align="end")
        p.draw.line((0, bar + 1, w - 1, bar + 1), fill=WHITE)
        problems = [c("link.offline")] if not view.link_up else []
        if view.gnss_lost:
            problems.append(c("gnss.lost"))
        elif not view.has_fix:
            problems.append(c("gnss.no_fix"))
        footer = h - bar
        if problems:
            # Above the last pixel row: Arabic descenders must not touch the edge. Two problems
            # that do not share a line get one each, and the status gives up the room.
            box = (0, footer, w, h - 1)
            flow = p.flow(" · ".join(problems), box, [bar - 1, 11, 10], max_lines=1)
            if flow.pages > 1:
                footer = h - 2 * bar
                box = (0, footer, w, h - 1)
                flow = p.flow(" · ".join(problems), box, [11, 10], max_lines=2)
            p.draw_flow("problems", box, flow, 0, align="center")
        p.text("status", (0, bar + 3, w, footer - 1), c.status(view.status), [26, 24, 22, 20, 18, 16, 14],
               bold=True, align="center")

    def _call(self, p: Painter, view: PanelView, page: int = 0) -> int:
        """Draw page ``page`` of the call screen; returns how many pages it has."""
        call, c = view.call, self._catalogs[view.lang]
        assert call is not None
        w, h = p.width, p.height
        top = round(h * 0.42)  # priority box and nature
        mid = round(h * 0.66)  # address
        pbox = p.box(0, 0, 34, top - 1)
        p.shape("priority-box", pbox)
        if call.priority == 3:  # the least urgent is only outlined
            p.draw.rectangle((pbox[0], pbox[1], pbox[2] - 1, pbox[3] - 1), outline=WHITE, width=2)
            ink = WHITE
        else:
            p.draw.rectangle((pbox[0], pbox[1], pbox[2] - 1, pbox[3] - 1), fill=WHITE)
            ink = BLACK
        inner = (pbox[0] + 2, pbox[1], pbox[2] - 2, pbox[3])
        p.text("priority", inner, c.priority_short(call.priority), [22, 20, 18, 16], bold=True, align="center", fill=ink)

        # Every text in bold: a 1-px stroke washes out in sunlight and blurs with the engine's
        # vibration; DejaVu Sans Bold keeps a 2-px stroke down to the smallest size used here.
        def nature_flow(text: str, end: int, bigger: Sequence[int] = ()) -> Flow:
            return p.flow(text, p.box(38, 0, end, top), [*bigger, *NATURE_SIZES], bold=True)

        # A call already old when it arrived says so first: the crew must not take it for a fresh one.
        stale = f"{c('call.stale_tag')} · " if call.stale else ""

        def layout(end: int) -> tuple[Flow, Flow | None]:
            nature = nature_flow(stale + (call.nature or "—"), end)
            if nature.pages > 1 and call.code:
                # The dispatcher's short form reads in one glance where the full nature needs pages.
                nature = nature_flow(stale + call.code, end, [20, 18])
            address = p.flow(call.address, (0, top + 1, end, mid), ADDRESS_SIZES, bold=True,
                             max_lines=1) if call.address else None
            if address is not None and address.pages > 1 and call.address_short:
                # The dispatcher's short address, where the full one would need pages.
                address = p.flow(call.address_short, (0, top + 1, end, mid), ADDRESS_SIZES, bold=True, max_lines=1)
            return nature, address

        nature, address = layout(w)
        pages = max(nature.pages, address.pages if address else 1)
        end = w
        if pages > 1:  # the text gives up a column to the page mark
            end = w - MARK_W - 1
            nature, address = layout(end)
            pages = max(nature.pages, address.pages if address else 1)
            p.page_mark((0, 0, w, mid), page, pages)
        p.draw_flow("nature", p.box(38, 0, end, top), nature, page)
        if address is not None:
            p.draw_flow("address", p.box(0, top + 1, end, mid), address, page)
        # The last pixel row stays dark: nothing may touch the display's edge.
        row = (0, mid + 1, w, h - 1)
        if view.waiting:
            row = self._waiting(p, view.waiting, row)
        if not call.age_verified:
            row = self._age_unverified(p, c, row)
        self._guidance(p, call, c, row, view.gnss_lost)
        return pages

    @staticmethod
    def _waiting(p: Painter, count: int, row: Box) -> Box:
        """"+N" in an inverted box at the row's end: calls waiting behind this one. Returns the row left."""
        font = p.fonts.get(14, True)
        text = f"+{count}" if count < 100 else "+99"
        width = math.ceil(p.draw.textlength(text, font=font)) + 6
        badge = p.box(row[2] - width, row[1] + 1, row[2], row[3])
        p.draw.rectangle((badge[0], badge[1], badge[2] - 1, badge[3] - 1), fill=WHITE)
        inner = (badge[0] + 1, badge[1], badge[2] - 1, badge[3])
        p.text("waiting", inner, text, [14, 13, 12], bold=True, align="center", fill=BLACK)
        return (row[0], row[1], row[2] - width - 2, row[3])

    @staticmethod
    def _age_unverified(p: Painter, c: Catalog, row: Box) -> Box:
        """A boxed "?" at the row's end: the unit has no trusted time, so this call may be older than
        it looks (docs/safety.md, docs/rider-panel.md). One glyph, so the distance keeps its room.
        Returns the row left."""
        font = p.fonts.get(14, True)
        text = c("call.age_unverified")
        width = math.ceil(p.draw.textlength(text, font=font)) + 6
        badge = p.box(row[2] - width, row[1] + 1, row[2], row[3])
        p.draw.rectangle((badge[0], badge[1], badge[2] - 1, badge[3] - 1), outline=WHITE, width=1)
        inner = (badge[0] + 1, badge[1], badge[2] - 1, badge[3])
        p.text("age-unverified", inner, text, [14, 13, 12], bold=True, align="center")
        return (row[0], row[1], row[2] - width - 2, row[3])

    def _guidance(self, p: Painter, call: CallSummary, c: Catalog, row: Box, gnss_lost: bool = False) -> None:
        """The bottom row (``row`` in left-to-right terms): arrow (or target) and distance, or why not."""
        size = row[3] - row[1]
        icon = p.box(row[0], row[1], row[0] + size, row[3])
        text_box = p.box(row[0] + size + 4, row[1], row[2], row[3])
        whole = p.box(*row)
        cx, cy = (icon[0] + icon[2] - 1) / 2, (icon[1] + icon[3] - 1) / 2
        if call.distance_m is None:
            # Whose position is missing, in words across the whole row: the call's place (dispatch
            # sent none) or this unit's own (no fix, or the receiver unplugged).
            key = "call.no_location" if not call.has_location else "gnss.lost" if gnss_lost else "gnss.no_fix"
            p.text("distance", whole, c(key), [16, 14, 13, 12, 11, 10], bold=True, align="center")
            return
        if call.near:  # a target: the unit is there
            p.draw.ellipse((icon[0] + 1, icon[1] + 1, icon[2] - 2, icon[3] - 2), outline=WHITE, width=2)
            p.draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=WHITE)
            p.shape("target", icon)
            p.text("distance", text_box, c("call.near"), [18, 16, 14], bold=True)
            return
        distance = geo.format_distance(call.distance_m, c.lang)
        if call.relative_bearing_deg is not None:
            # The arrow is as long as the row is high, the digits' own height: read at a glance.
            self._arrow(p, icon, call.relative_bearing_deg)
            p.text("distance", text_box, distance, [20, 18, 16, 14], bold=True)
            return
        # Heading unknown (stopped): an arrow would lie. Write the compass
        # direction instead, on the whole row: Arabic names are long ("شمال غرب").
        if call.compass:
            distance = f"{distance} {c.compass(call.compass)}"
        if call.position_age_s is not None:
            # From where the unit was last known (the fix went, or a restart without one): how long ago.
            distance = f"{distance} · {format_age(call.position_age_s, c)}"
        p.text("distance", whole, distance, [20, 18, 16, 14, 13, 12, 11, 10], bold=True)

    @staticmethod
    def _arrow(p: Painter, icon: Box, angle_deg: float) -> None:
        """The arrow, drawn 4× larger and scaled down to one bit per pixel.

        Pillow fills small polygons a little lopsided (one wing a pixel longer);
        supersampling keeps the arrow symmetric at every angle, which matters
        when the only thing it says is a direction.
        """
        scale = 4
        w, h = icon[2] - icon[0], icon[3] - icon[1]
        big = Image.new("L", (w * scale, h * scale), 0)
        radius = min(w, h) / 2 * scale
        ImageDraw.Draw(big).polygon(arrow_polygon(w * scale / 2, h * scale / 2, radius, angle_deg), fill=255)
        mask = big.resize((w, h), Image.Resampling.BOX).point(lambda v: 255 if v >= 128 else 0, mode="1")
        p.image.paste(WHITE, (icon[0], icon[1]), mask)
        p.shape("arrow", icon)

    def _crash(self, p: Painter, seconds: int, c: Catalog) -> None:
        """A crash found: "Chute détectée – appuyez ACK pour annuler (N s)", framed as a pending alarm."""
        w, h = p.width, p.height
        p.draw.rectangle((0, 0, w - 1, h - 1), outline=WHITE, width=3)
        split = round(h * 0.40)
        p.text("crash-title", (5, 3, w - 5, split), c("crash.title"), [20, 18, 16, 15, 14, 13], bold=True,
               align="center")
        box = p.box(6, split + 1, w - 6, h - 4)
        flow = p.flow(c("crash.cancel", seconds=seconds), box, [14, 13, 12, 11, 10], bold=True, max_lines=2)
        p.draw_flow("crash-cancel", box, flow, 0)

    def _emergency(self, p: Painter, view: PanelView, c: Catalog) -> None:
        w, h = p.width, p.height
        state = view.emergency
        if state == "pending":  # still cancellable: a frame, not yet the full white screen
            ink = WHITE
            p.draw.rectangle((0, 0, w - 1, h - 1), outline=WHITE, width=3)
        else:
            ink = BLACK
            p.draw.rectangle((0, 0, w - 1, h - 1), fill=WHITE)
        if state == "pending" and view.cancel_left_s is not None:
            # Which button withdraws it, and for how long still: the rider's one chance to undo.
            split = round(h * 0.42)
            p.text("emergency-title", (5, 3, w - 5, split), c("emergency.title"), [24, 22, 20, 18], bold=True,
                   align="center", fill=ink)
            seconds = c("emergency.seconds_left", seconds=view.cancel_left_s)
            count = p.text("cancel-countdown", p.box(w - 46, split, w - 5, h - 4), seconds, [24, 22, 20, 18, 16],
                           bold=True, align="end", fill=ink)
            used = (count.ink[2] - count.ink[0]) if count else 0
            box = p.box(6, split + 1, w - 8 - used, h - 4)
            flow = p.flow(c("emergency.cancel_with"), box, [13, 12, 11, 10], bold=True, max_lines=2)
            p.draw_flow("cancel-button", box, flow, 0, fill=ink)
            return
        split = round(h * 0.58)
        p.text("emergency-title", (5, 3, w - 5, split), c("emergency.title"), [28, 26, 24, 22, 20], bold=True,
               align="center", fill=ink)
        message = {"pending": "emergency.pending", "active": "emergency.active",
                   "acknowledged": "emergency.acknowledged"}[state]
        sizes = [15, 14, 13, 12, 11, 10]
        if state == "acknowledged":  # help knows: a black band with a check mark
            p.draw.rectangle((0, split, w - 1, h - 1), fill=BLACK)
            mark = p.box(4, split + 2, 22, h - 2)
            mx, my = mark[0], (mark[1] + mark[3]) / 2
            p.draw.line((mx + 1, my, mx + 6, my + 6, mx + 16, my - 6), fill=WHITE, width=3)
            p.shape("check", mark)
            p.text("emergency-state", p.box(24, split + 1, w - 2, h - 1), c(message), sizes, bold=True, fill=WHITE)
        else:
            p.text("emergency-state", (5, split, w - 5, h - 4), c(message), sizes, bold=True,
                   align="center", fill=ink)

    @staticmethod
    def _hold(p: Painter, progress: float, c: Catalog) -> None:
        """The emergency button held: a bar over the bottom row fills until the alarm goes out.

        The text reads white on black and black on white where the bar has passed (XOR).
        """
        w, h = p.width, p.height
        band = (0, h - HOLD_BAR_H, w, h - 1)
        p.draw.rectangle((band[0], band[1] - 1, band[2] - 1, band[3]), fill=BLACK)  # clear what was there
        bar = Image.new("1", (w, band[3] - band[1]), 0)
        bar_draw = ImageDraw.Draw(bar)
        bar_draw.rectangle((0, 0, w - 1, bar.height - 1), outline=1, width=1)
        filled = round((w - 2) * progress)
        x0, _, x1, _ = p.box(1, 0, 1 + filled, 1)  # it fills from the start side: right in Arabic
        if filled:
            bar_draw.rectangle((x0, 1, x1 - 1, bar.height - 2), fill=1)
        text = Image.new("1", bar.size, 0)
        shadow = Painter(text, p.fonts, p.rtl)
        placed = shadow.text("hold", (2, 1, w - 2, bar.height - 1), c("emergency.holding"), [14, 13, 12, 11, 10],
                             bold=True, align="center", fill=WHITE)
        p.image.paste(WHITE, (0, band[1]), ImageChops.logical_xor(bar, text))
        p.shape("hold-bar", (x0, band[1], x1, band[3]))
        if placed:
            p.placed.append(Placed("hold", placed.text, band, placed.ink and (
                placed.ink[0], placed.ink[1] + band[1], placed.ink[2], placed.ink[3] + band[1])))

    def _link_icon(self, p: Painter, box: Box, up: bool) -> None:
        """Three rising bars: filled when the link is up, hollow and crossed out when down."""
        x0, y0, x1, y1 = box
        bw = max(2, (x1 - x0 - 2) // 3)
        for i in range(3):
            bx = x0 + i * (bw + 1)
            top = y1 - 1 - round((y1 - y0 - 1) * (i + 1) / 3)
            rect = (bx, top, bx + bw - 1, y1 - 1)
            if up:
                p.draw.rectangle(rect, fill=WHITE)
            else:
                p.draw.rectangle(rect, outline=WHITE)
        if not up:
            p.draw.line((x0, y0, x1 - 1, y1 - 1), fill=WHITE, width=2)
        p.shape("link", box)

