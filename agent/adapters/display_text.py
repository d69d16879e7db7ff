"""Text on the small displays: the DejaVu fonts, Arabic shaping and order, fitting.

Pillow's built-in font has no Arabic glyphs (it draws empty boxes: "tofu"),
so the panel draws with DejaVu Sans from Debian's ``fonts-dejavu-core``, which
covers Latin with French accents and the Arabic presentation forms. Fonts are
opened with Pillow's BASIC layout engine, so the result does not depend on
whether the unit's Pillow has libraqm: Arabic is shaped into presentation
forms by ``arabic_reshaper`` and put in display order by ``python-bidi``'s
``get_display`` here, once per string (``visual``). Each string gets its
paragraph direction from its first strong letter (rules P2/P3 of the Unicode
bidi algorithm): an Arabic nature reads right to left, a Latin street name
left to right, and digits keep their order in both.

Text too long for its box is cut in logical order, so an Arabic string loses
its end (drawn on the left) and gets the ellipsis there (``fit_line``,
``wrap_lines``). Widths are measured on the drawing surface itself
(``ink_width``): on a one-bit image FreeType hints for monochrome and glyphs
come out wider than ``font.getlength`` says.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import arabic_reshaper
from bidi import get_display
from PIL import Image, ImageDraw, ImageFont

# Where Debian (fonts-dejavu-core) and a few other systems put DejaVu.
FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts"),
)
REGULAR_FONT = "DejaVuSans.ttf"
BOLD_FONT = "DejaVuSans-Bold.ttf"
ELLIPSIS = "…"


class DisplayError(RuntimeError):
    """A display cannot be used (no font, no I2C device, unknown kind)."""


# -------------------------------------------------------------------- fonts


def find_font(name: str, dirs: Sequence[Path] = FONT_DIRS) -> Path:
    """The path of a TrueType font by file name, looked up in ``dirs``."""
    for directory in dirs:
        path = directory / name
        if path.is_file():
            return path
    searched = ", ".join(str(d) for d in dirs)
    raise DisplayError(
        f"font {name} not found (searched {searched}); install the Debian package fonts-dejavu-core"
    )


@dataclass(frozen=True)
class FontSet:
    """The regular and bold TrueType faces the panel draws with."""

    regular: Path
    bold: Path

    @classmethod
    def default(cls, dirs: Sequence[Path] = FONT_DIRS) -> FontSet:
        return cls(find_font(REGULAR_FONT, dirs), find_font(BOLD_FONT, dirs))

    def get(self, size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
        return _load_font(str(self.bold if bold else self.regular), size)


@lru_cache(maxsize=64)
def _load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: shaping and ordering are done by arabic_reshaper/python-bidi,
    # whether or not this Pillow has libraqm (it would shape a second time).
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


def missing_glyphs(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> set[str]:
    """The characters of ``text`` that ``font`` draws as its "missing glyph" box (tofu).

    Each visible character is drawn alone and compared with what the font draws
    for a code point no font has (U+E0FFF, unassigned); the same bitmap means
    the font fell back to its .notdef glyph.
    """

    def bitmap(ch: str) -> bytes:
        image = Image.new("1", (48, 48))
        ImageDraw.Draw(image).text((8, 8), ch, font=font, fill=1)
        return image.tobytes()

    notdef = bitmap("\U000e0fff")
    return {
        ch for ch in set(text)
        if unicodedata.category(ch)[0] not in ("Z", "C") and bitmap(ch) == notdef
    }


# --------------------------------------------------------------------- text

# Lam-alef ligatures are mandatory in Arabic writing; the decorative word
# ligatures are left out (DejaVu lacks most, and they hurt legibility at 12 px).
_RESHAPER = arabic_reshaper.ArabicReshaper(
    configuration={"delete_harakat": True, "support_ligatures": True, "ARABIC LIGATURE ALLAH": False}
)


def paragraph_direction(text: str) -> Literal["L", "R"]:
    """The direction of the first strong character (rules P2/P3 of the bidi algorithm); L if none."""
    for ch in text:
        kind = unicodedata.bidirectional(ch)
        if kind == "L":
            return "L"
        if kind in ("R", "AL"):
            return "R"
    return "L"


def has_rtl(text: str) -> bool:
    return any(unicodedata.bidirectional(ch) in ("R", "AL", "AN") for ch in text)


def visual(text: str, base: Literal["L", "R"] | None = None) -> str:
    """``text`` in display order with Arabic letters in their joined forms.

    Text without right-to-left characters is returned unchanged. ``base``
    forces the paragraph direction (used for the lines of one wrapped
    paragraph); by default it is taken from the text itself.
    """
    if not has_rtl(text):
        return text
    return get_display(_RESHAPER.reshape(text), base_dir=base or paragraph_direction(text))


def _cut_points(text: str) -> list[int]:
    """Positions where ``text`` may be cut without separating a letter from its marks."""
    return [i for i in range(1, len(text)) if not unicodedata.combining(text[i])]


Measure = Callable[[str], float]


def fit_line(text: str, measure: Measure, width: float, base: Literal["L", "R"] | None = None) -> tuple[str, bool]:
    """(visual text, truncated?) of the longest logical prefix whose width fits, with "…" if cut.

    ``measure`` gives the drawn width of a visual string (see ``ink_width``).
    """
    base = base or paragraph_direction(text)
    full = visual(text, base)
    if measure(full) <= width:
        return full, False
    points = _cut_points(text)
    best = visual(ELLIPSIS, base) if measure(ELLIPSIS) <= width else ""
    lo, hi = 0, len(points) - 1
    while lo <= hi:  # widths grow with the prefix length: binary search
        mid = (lo + hi) // 2
        candidate = visual(text[: points[mid]].rstrip() + ELLIPSIS, base)
        if measure(candidate) <= width:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return best, True


def wrap_lines(text: str, measure: Measure, width: float, max_lines: int) -> list[str]:
    """Break ``text`` at spaces into at most ``max_lines`` visual lines; the last one may be cut."""
    base = paragraph_direction(text)
    if max_lines <= 1:
        return [fit_line(" ".join(text.split()), measure, width, base)[0]]
    words = text.split()
    lines: list[str] = []
    current = ""
    while words:
        trial = f"{current} {words[0]}".strip()
        if measure(visual(trial, base)) <= width or not current:
            current = trial
            words.pop(0)
        else:
            lines.append(current)
            current = ""
            if len(lines) == max_lines - 1:
                current = " ".join(words)  # the last line takes the rest and is cut below
                words = []
    if current:
        lines.append(current)
    return [fit_line(line, measure, width, base)[0] for line in lines[:max_lines]]


def wrap_words(text: str, measure: Measure, width: float) -> list[str]:
    """Break ``text`` at spaces into logical lines that each fit ``width``, however many it takes.

    Nothing is cut: a single word wider than ``width`` gets a line of its own
    (the caller decides whether to take a smaller size or to cut it).
    """
    base = paragraph_direction(text)
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if not current or measure(visual(trial, base)) <= width:
            current = trial
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def ink_width(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont) -> Measure:
    """The width of the ink a string leaves when drawn by ``draw`` (its colour mode's hinting included).

    Measured on the drawing itself rather than with ``font.getlength``: on a
    1-bit image FreeType hints for monochrome and glyphs come out wider.
    """

    def measure(line: str) -> float:
        if not line:
            return 0.0
        left, _, right, _ = draw.textbbox((0, 0), line, font=font, anchor="ls")
        return right - left

    return measure
