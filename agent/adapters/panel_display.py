"""The rider panel display: a small monochrome OLED (128×64 SSD1306/SH1106 on I2C).

What a rider in a helmet can take in at a glance, and nothing more:

- idle: the unit status in big letters, link and GNSS indicators, the clock;
- a call: the priority in a big box ("P1" inverted), the nature and the
  address, and on the bottom row an arrow to the incident relative to the
  motorcycle's heading with the distance. Nature and address are never cut
  mid-word: each takes the largest size that fits on one line, else wraps,
  else its lines are shown a page at a time, the pages turning every
  ``PAGE_S`` seconds, with a page mark at the edge. The dispatcher's short
  nature (the call's ``code``) is shown instead of a nature that would need
  pages, and its short address (``address_short``) for an address that would.
  Lines keep a blank pixel row between them and the last row of the
  display stays dark (Arabic descenders included);
- an emergency: "ALARME" and whether dispatch has acknowledged it.

How it draws. ``render(view)`` is pure drawing: a ``PanelView`` in, a Pillow
image of the device's size and mode out, through ``luma.core``'s canvas rules
(the same image goes to a real OLED or to ``luma.core.device.dummy`` in tests).
``show(view)`` sends it to the device, skipping an unchanged view, and never
raises: a loose I2C connector is logged and counted, not a crash.

Text (fonts, Arabic shaping and order, fitting) is in
``agent.adapters.display_text``. The screen layout is mirrored for an Arabic
UI (priority box on the right, text aligned right); arrows are never
mirrored: they point at a real place.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from PIL import Image, ImageDraw, ImageFont

from agent.adapters.display_text import (
    DisplayError, FontSet, fit_line, has_rtl, ink_width, paragraph_direction, visual, wrap_lines, wrap_words,
)
from agent.core import geo
from agent.core.i18n import Catalog
from agent.core.panel_view import CallSummary, PanelView

if TYPE_CHECKING:
    from agent.adapters.char_lcd import CharLcdDisplay

__all__ = ["DisplayError", "DisplayWorker", "PanelDisplay", "Placed", "arrow_polygon", "open_display"]

log = logging.getLogger(__name__)

MIN_SIZE = (128, 64)
WHITE, BLACK = "white", "black"
PAGE_S = 3.0  # how long each page of a long nature or address stays up
GAP = 1  # blank pixel rows between two lines of text
MARK_W = 3  # the page mark's column at the end edge
NATURE_SIZES = [16, 15, 14, 13, 12]
ADDRESS_SIZES = [13, 12, 11]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 with x1/y1 exclusive
Align = Literal["start", "end", "center"]


# ------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Placed:
    """One thing drawn: its role, its text in display order ("" for shapes), its box and ink bbox."""

    role: str
    text: str
    box: Box
    ink: Box | None


class _Painter:
    """Draws into one image, mirroring boxes for a right-to-left UI, and records what it drew."""

    def __init__(self, image: Image.Image, fonts: FontSet, rtl: bool) -> None:
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.fonts = fonts
        self.rtl = rtl
        self.width, self.height = image.size
        self.placed: list[Placed] = []

    def box(self, x0: int, y0: int, x1: int, y1: int) -> Box:
        """A box given in left-to-right terms, mirrored for an Arabic UI."""
        if self.rtl:
            return (self.width - x1, y0, self.width - x0, y1)
        return (x0, y0, x1, y1)

    def text(self, role: str, box: Box, text: str, sizes: Sequence[int], *, bold: bool | Sequence[bool] = False,
             align: Align = "start", fill: str = WHITE) -> Placed | None:
        """Draw ``text`` at the largest of ``sizes`` that fits ``box``, else cut at the smallest.

        ``bold`` may list one weight per size, so a long label can step down
        from bold to regular before it is cut.
        """
        if not text:
            return None
        weights = [bold] * len(sizes) if isinstance(bold, bool) else list(bold)
        for size, weight in zip(sizes, weights):
            font = self.fonts.get(size, weight)
            line, cut = fit_line(text, ink_width(self.draw, font), box[2] - box[0])
            if not cut and self._fits_height(line, font, box):
                break
        return self._line(role, box, line, font, align, fill)

    def paragraph(self, role: str, box: Box, text: str, sizes: Sequence[int], wrap_size: int, lines: int, *,
                  bold: bool = False, align: Align = "start", fill: str = WHITE) -> list[Placed]:
        """One line at the largest size that fits, else ``lines`` wrapped lines at ``wrap_size``."""
        width = box[2] - box[0]
        for size in sizes:
            font = self.fonts.get(size, bold)
            line, cut = fit_line(text, ink_width(self.draw, font), width)
            if not cut and self._fits_height(line, font, box):
                return [p for p in [self._line(role, box, line, font, align, fill)] if p]
        font = self.fonts.get(wrap_size, bold)
        wrapped = wrap_lines(text, ink_width(self.draw, font), width, lines)
        step = (box[3] - box[1]) / len(wrapped)
        out = []
        for i, line in enumerate(wrapped):
            row = (box[0], round(box[1] + i * step), box[2], round(box[1] + (i + 1) * step))
            placed = self._line(role, row, line, font, align, fill, clamp=box)
            if placed:
                out.append(placed)
        return out

    def _fits_height(self, line: str, font: ImageFont.FreeTypeFont, box: Box) -> bool:
        _, top, _, bottom = self.draw.textbbox((0, 0), line, font=font, anchor="lm")
        return bottom - top <= box[3] - box[1]

    def _line(self, role: str, box: Box, line: str, font: ImageFont.FreeTypeFont, align: Align, fill: str,
              clamp: Box | None = None) -> Placed | None:
        """Draw one visual line in ``box``: aligned, centred on the font's middle, ink kept inside ``clamp``."""
        if not line:
            return None
        # "start" follows the UI: left in French, right in Arabic.
        side = align if align == "center" else ("right" if (align == "end") != self.rtl else "left")
        anchor = {"left": "lm", "right": "rm", "center": "mm"}[side]
        x = {"left": box[0], "right": box[2], "center": (box[0] + box[2]) / 2}[side]
        y = (box[1] + box[3]) / 2
        # Centring on the font's middle keeps baselines steady between strings;
        # then nudge so accents and Arabic descenders stay within the area.
        limit = clamp or box
        left, top, right, bottom = self.draw.textbbox((x, y), line, font=font, anchor=anchor)
        if bottom > limit[3]:
            y -= bottom - limit[3]
        elif top < limit[1]:
            y += min(limit[1] - top, limit[3] - bottom)
        # Glyph side bearings can put ink a pixel outside the pen position.
        if right > limit[2]:
            x -= right - limit[2]
        elif left < limit[0]:
            x += min(limit[0] - left, limit[2] - right)
        self.draw.text((x, y), line, font=font, fill=fill, anchor=anchor)
        l, t, r, b = self.draw.textbbox((x, y), line, font=font, anchor=anchor)
        placed = Placed(role, line, box, (math.floor(l), math.floor(t), math.ceil(r), math.ceil(b)))
        self.placed.append(placed)
        return placed

    def shape(self, role: str, box: Box) -> None:
        self.placed.append(Placed(role, "", box, box))

    def ink_height(self, line: str, font: ImageFont.FreeTypeFont) -> int:
        _, top, _, bottom = self.draw.textbbox((0, 0), line, font=font, anchor="lm")
        return math.ceil(bottom) - math.floor(top)

    def flow(self, text: str, box: Box, sizes: Sequence[int], *, bold: bool | Sequence[bool] = False,
             max_lines: int = 2) -> Flow:
        """Lay ``text`` out for ``box`` without cutting a word: the largest of ``sizes`` on one line,
        else wrapped on up to ``max_lines`` lines, else in pages of as many lines as fit.

        Only a single word wider than the box at the smallest size is cut (with "…").
        """
        width, height = box[2] - box[0], box[3] - box[1]
        weights = [bold] * len(sizes) if isinstance(bold, bool) else list(bold)
        base = paragraph_direction(text)
        paged: Flow | None = None
        for size, weight in zip(sizes, weights):
            font = self.fonts.get(size, weight)
            measure = ink_width(self.draw, font)
            lines = [visual(line, base) for line in wrap_words(text, measure, width)]
            if not lines or any(measure(line) > width for line in lines):
                continue  # a word wider than the box at this size
            pitch = max(self.ink_height(line, font) for line in lines)
            per_page = min(max_lines, (height + GAP) // (pitch + GAP))
            if per_page < 1:
                continue
            candidate = Flow(font, tuple(lines), per_page, pitch)
            if len(lines) <= per_page:
                return candidate
            paged = candidate  # the smallest size that pages: the fewest pages
        if paged is not None:
            return paged
        font = self.fonts.get(sizes[-1], weights[-1])  # a word too long at any size: cut it
        line, _ = fit_line(text, ink_width(self.draw, font), width)
        return Flow(font, (line,), 1, min(height, self.ink_height(line, font)))

    def draw_flow(self, role: str, box: Box, flow: Flow, page: int, *, align: Align = "start",
                  fill: str = WHITE) -> list[Placed]:
        """Draw one page of ``flow`` in ``box``: rows ``flow.pitch`` high, ``GAP`` apart, centred as a block."""
        lines = flow.page(page)
        block = len(lines) * flow.pitch + (len(lines) - 1) * GAP
        y = box[1] + max(0, (box[3] - box[1] - block) // 2)
        out = []
        for line in lines:
            row = (box[0], y, box[2], y + flow.pitch)
            placed = self._line(role, row, line, flow.font, align, fill)
            if placed:
                out.append(placed)
            y += flow.pitch + GAP
        return out

    def page_mark(self, box: Box, page: int, pages: int) -> None:
        """A thin column at the end edge: ``pages`` segments, the current one lit."""
        x0, y0, x1, y1 = self.box(self.width - MARK_W, box[1], self.width, box[3])
        seg = (y1 - y0 + 1) / pages
        for i in range(pages):
            top, bottom = round(y0 + i * seg), round(y0 + (i + 1) * seg) - 2
            if i == page % pages:
                self.draw.rectangle((x0 + 1, top, x1 - 1, bottom), fill=WHITE)
            else:
                self.draw.point(((x0 + x1 - 1) // 2, (top + bottom) // 2), fill=WHITE)
        self.shape("page-mark", (x0, y0, x1, y1))


@dataclass(frozen=True)
class Flow:
    """Text laid out for one box: its font, its lines (display order), how many show per page."""

    font: ImageFont.FreeTypeFont
    lines: tuple[str, ...]
    per_page: int
    pitch: int  # the height of one row (the tallest line's ink)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(len(self.lines) / self.per_page))

    def page(self, page: int) -> tuple[str, ...]:
        start = (page % self.pages) * self.per_page
        return self.lines[start:start + self.per_page]


def arrow_polygon(cx: float, cy: float, radius: float, angle_deg: float) -> list[tuple[float, float]]:
    """A navigation arrow centred on (cx, cy) pointing ``angle_deg`` clockwise from screen-up."""
    # Tip, right wing, notch, left wing; y grows downwards on screen.
    shape = [(0.0, -1.0), (0.72, 0.85), (0.0, 0.42), (-0.72, 0.85)]
    a = math.radians(angle_deg)
    cos_a, sin_a = math.cos(a), math.sin(a)
    return [(cx + radius * (x * cos_a - y * sin_a), cy + radius * (x * sin_a + y * cos_a)) for x, y in shape]


class PanelDisplay:
    """Draws ``PanelView``s for one luma device (real OLED or ``dummy``)."""

    def __init__(self, device, *, labels: Mapping[str, Mapping[str, str]] | None = None,
                 fonts: FontSet | None = None) -> None:
        width, height = device.size
        if width < MIN_SIZE[0] or height < MIN_SIZE[1] or width < height:
            # The screens are laid out for the 128×64 panels; a portrait or
            # 128×32 panel would get cut-off text rather than a usable display.
            raise DisplayError(
                f"the panel layout needs a landscape display of at least {MIN_SIZE[0]}×{MIN_SIZE[1]} "
                f"(after rotation); this one is {width}×{height}"
            )
        self.device = device
        self.fonts = fonts or FontSet.default()
        # Overrides are keyed by full catalog key ({"fr": {"status.busy": "..."}}).
        self._catalogs = {lang: Catalog(lang, (labels or {}).get(lang)) for lang in ("fr", "ar")}
        self._last_view: PanelView | None = None
        self._page = 0
        self.pages = 1  # pages of the view on show (more than one: the worker turns them)
        self.errors = 0
        self.frames = 0

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.device.size)

    # ------------------------------------------------------------ public

    def render(self, view: PanelView, page: int = 0) -> Image.Image:
        """The picture of ``view`` (its page ``page``) at the device's size and colour mode (pure drawing)."""
        return self.render_layout(view, page)[0]

    def render_layout(self, view: PanelView, page: int = 0) -> tuple[Image.Image, list[Placed]]:
        """The picture and the list of what was placed where (for tests and diagnostics)."""
        return self._render(view, page)[:2]

    def page_count(self, view: PanelView) -> int:
        """How many pages ``view`` takes (1 unless a long nature or address is paged)."""
        return self._render(view, 0)[2]

    def _render(self, view: PanelView, page: int) -> tuple[Image.Image, list[Placed], int]:
        catalog = self._catalogs[view.lang]
        image = Image.new(self.device.mode, self.device.size, BLACK)
        painter = _Painter(image, self.fonts, catalog.direction == "rtl")
        pages = 1
        if view.emergency != "none":
            self._emergency(painter, view, catalog)
        elif view.call is not None:
            pages = self._call(painter, view.call, catalog, page, view.gnss_lost)
        else:
            self._idle(painter, view, catalog)
        return image, painter.placed, pages

    def turn_page(self) -> bool:
        """Show the next page of the view on show (the worker calls it every ``PAGE_S``)."""
        if self._last_view is None or self.pages < 2:
            return False
        self._page = (self._page + 1) % self.pages
        return self._draw(self._last_view)

    def show(self, view: PanelView, force: bool = False) -> bool:
        """Put ``view`` on the device unless it is already there; False if the device failed."""
        if view == self._last_view and not force:
            return True
        if view != self._last_view:
            self._page = 0  # a new call starts on its first page
        return self._draw(view)

    def _draw(self, view: PanelView) -> bool:
        try:
            image, _, self.pages = self._render(view, self._page)
            self.device.display(image)
        except (OSError, RuntimeError, ValueError) as exc:
            self.errors += 1
            if self.errors == 1 or self.errors % 100 == 0:
                log.warning("panel display write failed (%d so far): %s", self.errors, exc)
            self._last_view = None  # redraw everything once the bus is back
            return False
        self._last_view = view
        self.frames += 1
        return True

    def clear(self) -> None:
        try:
            self.device.clear()
        except (OSError, RuntimeError) as exc:
            log.warning("panel display clear failed: %s", exc)
        self._last_view = None

    # ----------------------------------------------------------- screens

    def _idle(self, p: _Painter, view: PanelView, c: Catalog) -> None:
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

    def _call(self, p: _Painter, call: CallSummary, c: Catalog, page: int = 0, gnss_lost: bool = False) -> int:
        """Draw page ``page`` of the call screen; returns how many pages it has."""
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
        def nature_flow(text: str, end: int, bigger: Sequence[int] = ()) -> Flow:
            sizes, weights = [*bigger, *NATURE_SIZES], [True] * (len(bigger) + len(NATURE_SIZES))
            if not has_rtl(text):  # Latin stays legible in regular weight: two more steps before pages
                sizes, weights = sizes + [12, 11], weights + [False, False]
            return p.flow(text, p.box(38, 0, end, top), sizes, bold=weights)

        def layout(end: int) -> tuple[Flow, Flow | None]:
            nature = nature_flow(call.nature or "—", end)
            if nature.pages > 1 and call.code:
                # The dispatcher's short form reads in one glance where the full nature needs pages.
                nature = nature_flow(call.code, end, [20, 18])
            # Arabic strokes are thin at this size in one bit per pixel: draw it bold.
            address = p.flow(call.address, (0, top + 1, end, mid), ADDRESS_SIZES, bold=has_rtl(call.address),
                             max_lines=1) if call.address else None
            if address is not None and address.pages > 1 and call.address_short:
                # The dispatcher's short address, where the full one would need pages.
                address = p.flow(call.address_short, (0, top + 1, end, mid), ADDRESS_SIZES,
                                 bold=has_rtl(call.address_short), max_lines=1)
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
        self._guidance(p, call, c, (0, mid + 1, w, h - 1), gnss_lost)
        return pages

    def _guidance(self, p: _Painter, call: CallSummary, c: Catalog, row: Box, gnss_lost: bool = False) -> None:
        """The bottom row: arrow (or target, or question mark) and distance."""
        w = p.width
        size = row[3] - row[1]
        icon = p.box(0, row[1], size, row[3])
        text_box = p.box(size + 4, row[1], w, row[3])
        cx, cy = (icon[0] + icon[2] - 1) / 2, (icon[1] + icon[3] - 1) / 2
        radius = size / 2 - 1
        if call.distance_m is None:
            # Whose position is missing, in words across the whole row: the call's place (dispatch
            # sent none) or this unit's own (no fix, or the receiver unplugged).
            key = "call.no_location" if not call.has_location else "gnss.lost" if gnss_lost else "gnss.no_fix"
            p.text("distance", row, c(key), [16, 14, 13, 12, 12, 11], bold=[True] * 4 + [False, False],
                   align="center")
            return
        if call.near:  # a target: the unit is there
            p.draw.ellipse((icon[0] + 1, icon[1] + 1, icon[2] - 2, icon[3] - 2), outline=WHITE, width=2)
            p.draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=WHITE)
            p.shape("target", icon)
            p.text("distance", text_box, c("call.near"), [18, 16, 14], bold=True)
            return
        distance = geo.format_distance(call.distance_m, c.lang)
        if call.relative_bearing_deg is not None:
            self._arrow(p, icon, call.relative_bearing_deg)
            p.text("distance", text_box, distance, [20, 18, 16, 14], bold=True)
            return
        # Heading unknown (stopped): an arrow would lie. Write the compass
        # direction instead, on the whole row: Arabic names are long ("شمال غرب").
        if call.compass:
            distance = f"{distance} {c.compass(call.compass)}"
        p.text("distance", (row[0], row[1], w, row[3]), distance, [20, 18, 16, 14, 13, 12, 12, 11],
               bold=[True] * 6 + [False, False])

    @staticmethod
    def _arrow(p: _Painter, icon: Box, angle_deg: float) -> None:
        """The arrow, drawn 4× larger and scaled down to one bit per pixel.

        Pillow fills small polygons a little lopsided (one wing a pixel longer);
        supersampling keeps the arrow symmetric at every angle, which matters
        when the only thing it says is a direction.
        """
        scale = 4
        w, h = icon[2] - icon[0], icon[3] - icon[1]
        big = Image.new("L", (w * scale, h * scale), 0)
        radius = (min(w, h) / 2 - 0.5) * scale
        ImageDraw.Draw(big).polygon(arrow_polygon(w * scale / 2, h * scale / 2, radius, angle_deg), fill=255)
        mask = big.resize((w, h), Image.Resampling.BOX).point(lambda v: 255 if v >= 128 else 0, mode="1")
        p.image.paste(WHITE, (icon[0], icon[1]), mask)
        p.shape("arrow", icon)

    def _emergency(self, p: _Painter, view: PanelView, c: Catalog) -> None:
        w, h = p.width, p.height
        state = view.emergency
        if state == "pending":  # still cancellable: a frame, not yet the full white screen
            ink = WHITE
            p.draw.rectangle((0, 0, w - 1, h - 1), outline=WHITE, width=3)
        else:
            ink = BLACK
            p.draw.rectangle((0, 0, w - 1, h - 1), fill=WHITE)
        split = round(h * 0.58)
        p.text("emergency-title", (5, 3, w - 5, split), c("emergency.title"), [28, 26, 24, 22, 20], bold=True,
               align="center", fill=ink)
        message = {"pending": "emergency.pending", "active": "emergency.active",
                   "acknowledged": "emergency.acknowledged"}[state]
        sizes, weights = [15, 14, 13, 12, 12, 11], [True, True, True, True, False, False]
        if state == "acknowledged":  # help knows: a black band with a check mark
            p.draw.rectangle((0, split, w - 1, h - 1), fill=BLACK)
            mark = p.box(4, split + 2, 22, h - 2)
            mx, my = mark[0], (mark[1] + mark[3]) / 2
            p.draw.line((mx + 1, my, mx + 6, my + 6, mx + 16, my - 6), fill=WHITE, width=3)
            p.shape("check", mark)
            p.text("emergency-state", p.box(24, split + 1, w - 2, h - 1), c(message), sizes, bold=weights, fill=WHITE)
        else:
            p.text("emergency-state", (5, split, w - 5, h - 4), c(message), sizes, bold=weights,
                   align="center", fill=ink)

    def _link_icon(self, p: _Painter, box: Box, up: bool) -> None:
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


# ------------------------------------------------------------------- worker


class DisplayWorker:
    """Draws on its own thread so a slow bus never holds up the caller.

    A full 128×64 frame is about 1 KiB over I2C: 25 ms at 400 kHz, 100 ms at
    the default 100 kHz. ``post(view)`` only leaves the view in a one-slot
    mailbox and returns; the worker draws the latest view (intermediate ones
    are skipped: only the newest matters on a display). Works for the OLED and
    the character LCD alike (anything with ``show(view) -> bool``). When the
    view on show has several pages (``display.pages``), the worker turns them
    every ``page_s`` seconds (``display.turn_page()``) until a new view comes.
    """

    def __init__(self, display, name: str = "panel-display", page_s: float = PAGE_S) -> None:
        self.display = display
        self.page_s = page_s
        self._wake = threading.Condition()
        self._pending: PanelView | None = None
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def post(self, view: PanelView) -> None:
        with self._wake:
            self._pending = view
            self._wake.notify_all()

    def wait_drawn(self, timeout: float) -> bool:
        """Wait until the last posted view has been handed to the display; False on timeout."""
        with self._wake:
            return self._wake.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("panel display worker did not stop")

    def _run(self) -> None:
        while True:
            with self._wake:
                paging = getattr(self.display, "pages", 1) > 1
                woken = self._wake.wait_for(lambda: self._pending is not None or self._stopping,
                                            self.page_s if paging else None)
                if self._stopping:
                    return
                view, self._pending, self._busy = self._pending, None, True
            try:
                if woken:
                    self.display.show(view)
                else:
                    self.display.turn_page()
            except Exception:  # show() is not supposed to raise; never let the worker die
                log.exception("panel display worker: drawing failed")
            finally:
                with self._wake:
                    self._busy = False
                    self._wake.notify_all()


# ------------------------------------------------------------------ factory


class _Mirrored:
    """A luma device that also writes each frame to a PNG file, replaced atomically (demo, bench)."""

    def __init__(self, device, path: str) -> None:
        self._device = device
        self._path = path

    def __getattr__(self, name):
        return getattr(self._device, name)

    def display(self, image: Image.Image) -> None:
        self._device.display(image)
        tmp = f"{self._path}.tmp"
        image.convert("1").save(tmp, format="PNG")
        os.replace(tmp, self._path)


def open_display(kind: str, i2c_port: int = 1, i2c_address: int = 0x3C, width: int = 128, height: int = 64,
                 rotate: int = 0, *, labels: Mapping[str, Mapping[str, str]] | None = None,
                 fonts: FontSet | None = None, mirror_png: str | None = None) -> PanelDisplay | CharLcdDisplay | None:
    """Build the panel display the config asks for; None for ``kind="none"``.

    ``hd44780`` is the 20×4 character LCD option (``agent.adapters.char_lcd``):
    its PCF8574 backpack usually sits at I2C address 0x27, and ``width`` and
    ``height`` count characters when they are not the OLED's 128×64.

    Raises ``DisplayError`` with the reason when the device or the font is not
    there (the caller decides whether the unit runs on without a display).
    """
    if kind == "none":
        return None
    fonts = fonts or FontSet.default()
    if kind == "dummy":
        from luma.core.device import dummy

        # Mode "1" like the real OLEDs, so tests see what the rider sees.
        device = dummy(width=width, height=height, rotate=rotate, mode="1")
        return PanelDisplay(_Mirrored(device, mirror_png) if mirror_png else device, labels=labels, fonts=fonts)
    if kind in ("ssd1306", "sh1106"):
        from luma.core.error import Error as LumaError
        from luma.core.interface.serial import i2c
        from luma.oled.device import sh1106, ssd1306

        driver = ssd1306 if kind == "ssd1306" else sh1106
        try:
            serial = i2c(port=i2c_port, address=i2c_address)
            device = driver(serial, width=width, height=height, rotate=rotate)
        except (LumaError, OSError) as exc:
            raise DisplayError(
                f"{kind} display at I2C port {i2c_port} address 0x{i2c_address:02X} cannot be opened: {exc}"
            ) from exc
        device.persist = False  # blank the panel when the agent stops, rather than freeze a stale call
        return PanelDisplay(_Mirrored(device, mirror_png) if mirror_png else device, labels=labels, fonts=fonts)
    if kind == "hd44780":
        from agent.adapters.char_lcd import open_char_lcd

        # width/height are in characters here (20×4); French only, see char_lcd.
        cols, rows = (20, 4) if (width, height) == (128, 64) else (width, height)
        return open_char_lcd(i2c_port, i2c_address, cols=cols, rows=rows,
                             labels=dict((labels or {}).get("fr", {})))
    raise DisplayError(f"unknown display kind {kind!r}; expected ssd1306, sh1106, hd44780, dummy or none")
