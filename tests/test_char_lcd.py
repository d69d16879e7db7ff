"""The rider panel on a 20×4 HD44780 character LCD (agent.adapters.char_lcd).

RPLCD talks to the LCD through a PCF8574 I2C expander, four data bits at a
time, latched by the falling edge of the E line. ``EmulatedBackpack`` stands in
for the SMBus and the LCD behind it: it decodes those writes like the
controller does and keeps its display RAM (DDRAM) and user-character RAM
(CGRAM), so the tests read what the rider would see, after RPLCD's real
protocol.
"""

import pytest

pytest.importorskip("RPLCD")

from agent.adapters.char_lcd import (  # noqa: E402
    ARROW_CODES, ARROW_GLYPHS, CharLcdDisplay, arrow_char, char_lines, open_char_lcd,
)
from agent.adapters.panel_display import DisplayError  # noqa: E402
from agent.core.panel_view import CallSummary, PanelView  # noqa: E402

# PCF8574 backpack wiring (the common one): D7..D4 | BL | E | RW | RS
E, RS = 0x04, 0x01
ROW_ADDRESS = (0x00, 0x40, 0x14, 0x54)  # DDRAM address of each row on a 20×4


class EmulatedBackpack:
    """An SMBus with a PCF8574 and an HD44780 (4-bit mode) behind it."""

    def __init__(self, cols=20, rows=4, address=0x27):
        self.cols, self.rows, self.address = cols, rows, address
        self.ddram = bytearray(b" " * 128)
        self.cgram = bytearray(64)
        self.address_counter, self.in_cgram = 0, False
        self._pins = 0
        self._nibble = None
        self.fail = False
        self.writes = 0

    def write_byte(self, address, value):
        if self.fail:
            raise OSError(121, "Remote I/O error")
        assert address == self.address
        self.writes += 1
        if self._pins & E and not value & E:  # falling edge of E: the controller latches D7..D4
            self._latch(self._pins >> 4, bool(self._pins & RS))
        self._pins = value

    def write_byte_data(self, address, register, value):  # MCP230xx only
        raise AssertionError("a PCF8574 backpack takes plain byte writes")

    def _latch(self, nibble, data):
        if self._nibble is None:
            self._nibble = nibble
            return
        byte, self._nibble = (self._nibble << 4) | nibble, None
        if data:
            ram = self.cgram if self.in_cgram else self.ddram
            ram[self.address_counter % len(ram)] = byte
            self.address_counter += 1
        elif byte == 0x01:  # clear display
            self.ddram[:] = b" " * 128
            self.address_counter, self.in_cgram = 0, False
        elif byte & 0x80:  # set DDRAM address
            self.address_counter, self.in_cgram = byte & 0x7F, False
        elif byte & 0x40:  # set CGRAM address
            self.address_counter, self.in_cgram = byte & 0x3F, True
        elif byte in (0x02, 0x03):  # return home
            self.address_counter, self.in_cgram = 0, False
        # entry mode, display control, shift and function set need no state here

    def codes(self, row):
        start = ROW_ADDRESS[row]
        return list(self.ddram[start:start + self.cols])

    def text(self, row):
        """The row as text: ROM characters as ASCII, user characters as their arrow code in brackets."""
        out = []
        for code in self.codes(row):
            out.append(f"[{ARROW_CODES[code]}]" if code < 8 else chr(code))
        return "".join(out)

    def glyph(self, slot):
        return tuple(self.cgram[slot * 8:slot * 8 + 8])


@pytest.fixture
def backpack():
    return EmulatedBackpack()


@pytest.fixture
def lcd(backpack):
    return open_char_lcd(bus=backpack)


def test_idle_screen_on_the_glass(lcd, backpack):
    assert lcd.show(PanelView(status="available", link_up=True, gnss_fix=3, clock="14:05"))
    assert [backpack.text(r) for r in range(4)] == [
        "     Disponible     ",
        " " * 20,
        "En ligne            ",
        "GPS 3D         14:05",
    ]


def test_call_with_arrow_and_distance(lcd, backpack):
    call = CallSummary("C-1", 1, "Accident de la circulation", "Avenue Mohammed V, Kénitra", 850, 40, 92, 120)
    assert lcd.show(PanelView(call=call))
    rows = [backpack.text(r) for r in range(4)]
    assert rows[0] == "P1 Accident de la   "
    assert rows[1] == "   circulation      "
    assert rows[2] == "Avenue Mohammed V,> "  # cut, with a sign that there is more
    assert rows[3].startswith("[E] 850 m")  # the target is to the right
    assert backpack.glyph(ARROW_CODES.index("E")) == ARROW_GLYPHS["E"]  # the arrow really is in CGRAM


def test_accents_are_folded_for_the_a00_rom(lcd, backpack):
    lcd.show(PanelView(status="busy"))
    assert backpack.text(0).strip() == "Occupe"  # the A00 ROM has no é


def test_arabic_text_is_replaced_not_garbled(lcd, backpack):
    call = CallSummary("C-2", 2, "سرقة بالخطف", "Rue Ibn Sina", 2_400, 200, -45)
    lcd.show(PanelView(lang="ar", call=call))
    rows = [backpack.text(r) for r in range(4)]
    assert rows[0].rstrip() == "P2 (texte en arabe)"
    assert rows[2].rstrip() == "Rue Ibn Sina"
    assert rows[3].startswith("[NW] 2,4 km")


def test_emergency_outranks_the_call(lcd, backpack):
    lcd.show(PanelView(emergency="acknowledged", call=CallSummary("C", 1, "Vol")))
    assert backpack.text(0).strip() == "!! ALARME !!"
    assert backpack.text(2).strip() == "Alarme recue"


def test_only_changes_are_sent(lcd, backpack):
    lcd.show(PanelView(status="available", clock="14:05"))
    before = backpack.writes
    lcd.show(PanelView(status="available", clock="14:06"))
    changed = backpack.writes - before
    assert backpack.text(3).endswith("14:06")
    assert changed <= 16  # one cursor move and one character byte (8 bus writes each with RPLCD's pulses)
    lcd.show(PanelView(status="available", clock="14:06"))
    assert backpack.writes - before == changed  # same view: nothing sent


def test_a_failing_bus_is_counted_then_the_screen_is_rebuilt(lcd, backpack):
    backpack.fail = True
    assert lcd.show(PanelView(status="busy")) is False and lcd.errors == 1
    backpack.fail = False
    backpack.ddram[:] = b"#" * 128  # the module was power-cycled meanwhile
    backpack.cgram[:] = bytes(64)
    assert lcd.show(PanelView(status="busy"))
    assert backpack.text(0).strip() == "Occupe" and "#" not in backpack.text(1)
    assert backpack.glyph(0) == ARROW_GLYPHS["N"]


@pytest.mark.parametrize("bearing, code", [(0, "N"), (44, "NE"), (91, "E"), (-170, "S"), (-95, "W"), (-30, "NW")])
def test_arrow_choice(bearing, code):
    assert arrow_char(bearing) == chr(0xE000 + ARROW_CODES.index(code))


@pytest.mark.parametrize("cols, rows", [(20, 4), (16, 4), (20, 2), (16, 2)])
def test_every_layout_fills_the_glass_exactly(cols, rows):
    views = [
        PanelView(status="out_of_service", link_up=False, gnss_fix=1, clock="09:41"),
        PanelView(call=CallSummary("C", 3, "Tapage nocturne répété dans un immeuble", "Bir Rami Est", 12_600, 300)),
        PanelView(call=CallSummary("C", 1, "Vol", has_location=False)),
        PanelView(emergency="pending"),
    ]
    for view in views:
        lines = char_lines(view, cols=cols, rows=rows)
        assert len(lines) == rows and all(len(line) == cols for line in lines), lines


def test_unsupported_size_and_missing_bus_are_clear_errors():
    with pytest.raises(DisplayError, match="not supported"):
        open_char_lcd(cols=40, rows=2, bus=EmulatedBackpack())
    with pytest.raises(DisplayError, match="I2C port 7 address 0x27"):
        open_char_lcd(i2c_port=7)


def test_open_display_offers_the_lcd():
    from agent.adapters.panel_display import open_display

    with pytest.raises(DisplayError, match="HD44780 display at I2C port 7 address 0x27"):
        open_display("hd44780", i2c_port=7, i2c_address=0x27)


def test_labels_from_config(backpack):
    lcd = open_char_lcd(bus=backpack, labels={"status.busy": "Indispo"})
    assert isinstance(lcd, CharLcdDisplay)
    lcd.show(PanelView(status="busy"))
    assert backpack.text(0).strip() == "Indispo"


def test_short_forms_stand_in_for_text_the_lcd_would_cut():
    long = CallSummary("C-1", 1, "Rixe sur la voie publique avec arme blanche, plusieurs blesses",
                       "Marche central, angle avenue Mohammed V", 850.0, 40.0, 35.0,
                       code="RIXE-AB", address_short="Marche central")
    lines = char_lines(PanelView(lang="fr", call=long), cols=20, rows=4)
    assert lines[0].startswith("P1 RIXE-AB") and lines[2].rstrip() == "Marche central"
    assert not any(">" in line for line in lines[:3])
    short = CallSummary("C-2", 2, "Vol", "Rue Fes", 850.0, 40.0, 35.0, code="V", address_short="F")
    lines = char_lines(PanelView(lang="fr", call=short), cols=20, rows=4)
    assert lines[0].startswith("P2 Vol") and lines[2].rstrip() == "Rue Fes"  # what fits stays whole
