"""The rider panel on a 20×4 character LCD (HD44780 behind a PCF8574 I2C backpack).

An alternative to the OLED for fleets that already mount these cheap,
sunlight-readable modules, driven with RPLCD. Its limits are the chip's:

- The HD44780 draws characters from a ROM (A00: ASCII + Japanese kana, the
  usual one; A02: Western European). Neither has Arabic letters and only 8
  user-defined characters exist, so Arabic cannot be shown: this display
  always speaks French, and call text in Arabic is replaced by "(texte en
  arabe)". Fleets whose calls arrive in Arabic should fit the OLED. Accented
  letters the ROM lacks are written without their accent (é → e).
- The 8 user characters hold 8 arrows (N, NE, ... NW), so the direction to
  the incident is rounded to 45°.
- A nature or address too long for the glass is shown in the dispatcher's
  short form when the call carries one (``code``, ``address_short``), else
  cut with ">".
- As on the OLED: "+N" at the end of the bottom row counts the calls
  waiting behind the one shown; a pending alarm names the button that
  cancels it and the seconds left; a hold of the emergency button fills a
  bar of "#" on the bottom row.

``char_lines(view)`` is the layout (pure: view in, rows of text out, arrows as
private-use characters U+E000..U+E007); ``CharLcdDisplay.show(view)`` writes
the rows through RPLCD, which only sends the characters that changed. The
SMBus can be injected (``bus=``), as gpiozero takes a pin factory, so tests
run the real RPLCD protocol against an emulated controller.
"""

from __future__ import annotations

import logging
import unicodedata

from agent.adapters.display_text import DisplayError
from agent.core import geo
from agent.core.i18n import Catalog
from agent.core.panel_view import CallSummary, PanelView

log = logging.getLogger(__name__)

ARROW_BASE = 0xE000  # U+E000 + index of the arrow in ARROW_CODES
ARROW_CODES = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
MORE = ">"  # the ROMs have no ellipsis
HOLD_FILL = "#"  # the hold bar's fill (in both ROMs)
SIZES = ((20, 4), (16, 4), (20, 2), (16, 2))  # (columns, rows) the layout is written for

# 5×8 bitmaps, one row per byte, leftmost pixel in bit 4.
ARROW_GLYPHS: dict[str, tuple[int, ...]] = {
    "N": (0b00100, 0b01110, 0b10101, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000),
    "NE": (0b00000, 0b01111, 0b00011, 0b00101, 0b01001, 0b10000, 0b00000, 0b00000),
    "E": (0b00000, 0b00100, 0b00010, 0b11111, 0b00010, 0b00100, 0b00000, 0b00000),
    "SE": (0b00000, 0b10000, 0b01001, 0b00101, 0b00011, 0b01111, 0b00000, 0b00000),
    "S": (0b00100, 0b00100, 0b00100, 0b00100, 0b10101, 0b01110, 0b00100, 0b00000),
    "SW": (0b00000, 0b00001, 0b10010, 0b10100, 0b11000, 0b11110, 0b00000, 0b00000),
    "W": (0b00000, 0b00100, 0b01000, 0b11111, 0b01000, 0b00100, 0b00000, 0b00000),
    "NW": (0b00000, 0b11110, 0b11000, 0b10100, 0b10010, 0b00001, 0b00000, 0b00000),
}


def arrow_char(relative_bearing: float) -> str:
    """The private-use character standing for the arrow nearest a relative bearing."""
    return chr(ARROW_BASE + ARROW_CODES.index(geo.compass_point(relative_bearing, 8)))


def _has_arabic(text: str) -> bool:
    return any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in text)


def _clip(text: str, cols: int) -> str:
    return text if len(text) <= cols else text[: cols - 1].rstrip() + MORE


def _wrap(text: str, cols: int, lines: int) -> list[str]:
    """Word-wrap into at most ``lines`` rows; the last row is cut with ``MORE``."""
    out: list[str] = []
    words = text.split()
    while words and len(out) < lines:
        row = words.pop(0)
        while words and len(row) + 1 + len(words[0]) <= cols:
            row += " " + words.pop(0)
        if len(out) == lines - 1 and words:
            row = _clip(row + " " + " ".join(words), cols)
            words = []
        out.append(_clip(row, cols))
    return out


def _centre(text: str, cols: int) -> str:
    return _clip(text, cols).center(cols)


def char_lines(view: PanelView, catalog: Catalog | None = None, cols: int = 20, rows: int = 4) -> list[str]:
    """The LCD's rows for ``view``: exactly ``rows`` strings of ``cols`` characters.

    Always in French (the ROM has no Arabic); ``catalog`` may carry the
    fleet's French label overrides.
    """
    c = catalog if catalog is not None and catalog.lang == "fr" else Catalog("fr")
    if view.emergency != "none":
        state = {"pending": "emergency.pending", "active": "emergency.active",
                 "acknowledged": "emergency.acknowledged"}[view.emergency]
        title = f"!! {c('emergency.title')} !!"
        lines = [_centre(title, cols), _centre(c(state), cols)]
        if view.emergency == "pending" and view.cancel_left_s is not None:
            # Which button withdraws it, and for how long still.
            seconds = c("emergency.seconds_left", seconds=view.cancel_left_s)
            cancel = c("emergency.cancel_with")
            lines = [_centre(title, cols), _clip(f"{cancel} {seconds}", cols)]
            if rows > 2:
                lines = [_centre(title, cols), "", _centre(cancel, cols), _centre(seconds, cols)]
        elif rows > 2:
            lines = [_centre(title, cols), "", _centre(c(state), cols)]
    elif view.call is not None:
        lines = _call_lines(view.call, c, cols, rows, view.waiting)
    else:
        clock = view.clock or ""
        link = c("link.online") if view.link_up else c("link.offline")
        gnss = c("gnss.lost" if view.gnss_lost else "gnss.fix_3d" if view.gnss_fix == 3
                 else "gnss.fix_2d" if view.gnss_fix == 2 else "gnss.no_fix")
        status = _centre(c.status(view.status), cols)
        if rows > 2:
            lines = [status, "", _clip(link, cols), _clip(gnss, cols - len(clock) - 1).ljust(cols - len(clock)) + clock]
        else:
            lines = [status, _clip(f"{link} {gnss}", cols - len(clock) - 1).ljust(cols - len(clock)) + clock]
    lines = lines[:rows] + [""] * (rows - len(lines))
    if view.emergency == "none" and view.hold_progress is not None:
        # The emergency button held: the bottom rows say so and fill until the alarm goes out.
        filled = round((cols - 2) * view.hold_progress)
        bar = "[" + HOLD_FILL * filled + " " * (cols - 2 - filled) + "]"
        lines[-1] = bar
        if rows > 2:
            lines[-2] = _centre(c("emergency.holding"), cols)
    return [line.ljust(cols)[:cols] for line in lines]


def _call_lines(call: CallSummary, c: Catalog, cols: int, rows: int, waiting: int = 0) -> list[str]:
    arabic = c("call.text_unavailable")
    nature = arabic if _has_arabic(call.nature) else call.nature
    if call.stale:  # old when it arrived: said before anything else
        nature = f"{c('call.stale_tag')} {nature}"
    address = arabic if _has_arabic(call.address) else call.address
    head = f"{c.priority_short(call.priority)} "
    if call.distance_m is None:
        guide = c("gnss.no_fix" if call.has_location else "call.no_location")
    elif call.near:
        guide = c("call.near")
    else:
        distance = geo.format_distance(call.distance_m, "fr").replace("\u202f", " ")
        if call.relative_bearing_deg is not None:
            guide = f"{arrow_char(call.relative_bearing_deg)} {distance}"
        else:
            guide = f"{distance} {c.compass(call.compass)}" if call.compass else distance
    # Calls waiting behind this one, at the end of the bottom row.
    more = f" +{min(waiting, 99)}" if waiting else ""
    if not call.age_verified:  # no trusted time: the call may be older than it looks (docs/safety.md)
        more = " age?" + more
    guide = _clip(guide, cols - len(more)).ljust(cols - len(more)) + more if more else _clip(guide, cols)
    if rows <= 2:
        if len(head + nature) > cols and call.code and not _has_arabic(call.code):
            nature = call.code
        return [_clip(head + nature, cols), guide]
    nature_rows = _wrap(nature, cols - len(head), 2 if rows >= 4 else 1)
    if nature_rows and nature_rows[-1].endswith(MORE) and call.code and not _has_arabic(call.code):
        # Cut: the dispatcher's short form reads whole.
        nature_rows = _wrap(call.code, cols - len(head), 2 if rows >= 4 else 1)
    if len(address) > cols and call.address_short and not _has_arabic(call.address_short):
        address = call.address_short
    lines = [head + nature_rows[0]] + [" " * len(head) + row for row in nature_rows[1:]]
    if rows >= 4 and len(lines) == 1:
        lines.append("")
    if address:
        lines.append(_clip(address, cols))
    return lines[: rows - 1] + [""] * (rows - 1 - len(lines)) + [guide]


class CharLcdDisplay:
    """Writes ``PanelView``s to an HD44780 through RPLCD (a ``CharLCD`` or anything alike)."""

    def __init__(self, lcd, *, cols: int = 20, rows: int = 4, labels: dict[str, str] | None = None) -> None:
        self.lcd = lcd
        self.cols, self.rows = cols, rows
        self.catalog = Catalog("fr", labels)
        self.errors = 0
        self.frames = 0
        self._last_view: PanelView | None = None
        self._glyphs_loaded = False
        self._shown: list[list[int]] = []  # character codes on the glass, per row

    def render(self, view: PanelView) -> list[str]:
        return char_lines(view, self.catalog, self.cols, self.rows)

    def show(self, view: PanelView, force: bool = False) -> bool:
        """Put ``view`` on the LCD unless it is already there; False if the bus failed."""
        if view == self._last_view and not force:
            return True
        try:
            if not self._glyphs_loaded:  # first frame, or the module may have been power-cycled
                self.lcd.clear()  # also resets RPLCD's cache of what is on the glass
                for index, code in enumerate(ARROW_CODES):
                    self.lcd.create_char(index, ARROW_GLYPHS[code])
                self._glyphs_loaded = True
                self._shown = [[0x20] * self.cols for _ in range(self.rows)]
            for row, line in enumerate(self.render(view)):
                self._write_row(row, [self._encode(ch) for ch in line])
        except OSError as exc:
            self.errors += 1
            if self.errors == 1 or self.errors % 100 == 0:
                log.warning("character LCD write failed (%d so far): %s", self.errors, exc)
            self._last_view = None
            self._glyphs_loaded = False
            return False
        self._last_view = view
        self.frames += 1
        return True

    def _write_row(self, row: int, codes: list[int]) -> None:
        """Send only the runs of characters that differ from what is on the glass.

        Each cursor move is an I2C command; RPLCD would move the cursor over
        every unchanged character, so the runs are found here.
        """
        shown = self._shown[row]
        col = 0
        while col < self.cols:
            if codes[col] == shown[col]:
                col += 1
                continue
            self.lcd.cursor_pos = (row, col)
            while col < self.cols and codes[col] != shown[col]:
                self.lcd.write(codes[col])
                shown[col] = codes[col]
                col += 1

    def _encode(self, ch: str) -> int:
        if ARROW_BASE <= ord(ch) < ARROW_BASE + len(ARROW_CODES):
            return ord(ch) - ARROW_BASE  # user-defined character slot
        codec = self.lcd.codec  # RPLCD maps what the ROM lacks to a space
        space = codec.encode(" ")
        for candidate in (ch, unicodedata.normalize("NFKD", ch)[:1]):  # é -> e if the ROM has no é
            code = codec.encode(candidate)
            if code and (code != space or candidate.isspace()):
                return code[0]
        return codec.encode("?")[0]

    def close(self, clear: bool = True) -> None:
        try:
            self.lcd.close(clear=clear)
        except OSError as exc:
            log.warning("character LCD close failed: %s", exc)


def open_char_lcd(i2c_port: int = 1, i2c_address: int = 0x27, *, cols: int = 20, rows: int = 4,
                  charmap: str = "A00", expander: str = "PCF8574", bus=None,
                  labels: dict[str, str] | None = None) -> CharLcdDisplay:
    """An HD44780 on an I2C backpack; ``bus`` replaces the SMBus (tests, the rig)."""
    if (cols, rows) not in SIZES:
        raise DisplayError(f"character LCD size {cols}×{rows} not supported; use one of {SIZES}")
    try:
        from RPLCD.i2c import CharLCD
    except ImportError as exc:
        raise DisplayError("the character LCD needs the RPLCD and smbus2 packages") from exc

    class _CharLCD(CharLCD):
        def _init_connection(self) -> None:
            if bus is None:
                super()._init_connection()
            else:
                self.bus = bus

    try:
        lcd = _CharLCD(expander, i2c_address, port=i2c_port, cols=cols, rows=rows, charmap=charmap,
                       auto_linebreaks=False)
    except OSError as exc:
        raise DisplayError(
            f"HD44780 display at I2C port {i2c_port} address 0x{i2c_address:02X} cannot be opened: {exc}"
        ) from exc
    return CharLcdDisplay(lcd, cols=cols, rows=rows, labels=labels)
