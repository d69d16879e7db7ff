"""Drawing primitives for the rider panel's 128×64 one-bit screens (pure: an image in, pixels out).

A ``Painter`` draws into one Pillow image and records what it placed where
(``Placed``), so tests check a layout by its boxes and ink as well as by its
pixels. Its boxes are given in left-to-right terms and mirrored for an Arabic
UI. Text is fitted, never cut mid-word: ``flow`` lays a text out at the
largest size that fits one line, else wraps it, else pages it, and
``draw_flow`` draws one page of it; ``page_mark`` shows which page is up.
Arrows (``arrow_polygon``) are never mirrored: they point at a real place.

The screens themselves are in :mod:`agent.adapters.panel_layout`; the
fonts and the Arabic shaping in :mod:`agent.adapters.display_text`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

from agent.adapters.display_text import FontSet, fit_line, ink_width, paragraph_direction, visual, wrap_lines, wrap_words

WHITE, BLACK = "white", "black"
GAP = 1  # blank pixel rows between two lines of text
MARK_W = 3  # the page mark's column at the end edge

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 with x1/y1 exclusive
Align = Literal["start", "end", "center"]


@dataclass(frozen=True)
class Placed:
    """One thing drawn: its role, its text in display order ("" for shapes), its box and ink bbox."""

    role: str
    text: str
    box: Box
    ink: Box | None


class Painter:
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
    """A navigation arrow centred on (cx, cy) pointing ``angle_deg`` clockwise from screen-up.

    A wide head on a straight shaft, every point within ``radius``: its tip and tail cannot
    be taken for each other (a notched "cursor" shape can), and it stays inside its square
    at every angle.
    """
    # Tip, right barb, shaft right, tail right, tail left, shaft left, left barb; y grows downwards.
    shape = [(0.0, -1.0), (0.86, -0.08), (0.3, -0.08), (0.3, 0.95), (-0.3, 0.95), (-0.3, -0.08), (-0.86, -0.08)]
    a = math.radians(angle_deg)
    cos_a, sin_a = math.cos(a), math.sin(a)
    return [(cx + radius * (x * cos_a - y * sin_a), cy + radius * (x * sin_a + y * cos_a)) for x, y in shape]
