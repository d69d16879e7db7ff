"""The rider panel display: a small monochrome OLED (128×64 SSD1306/SH1106 on I2C).

This module holds the device side: ``PanelDisplay`` sends the pictures of
:mod:`agent.adapters.panel_layout` (pure drawing) to one luma device, real
OLED or ``luma.core.device.dummy`` in tests, skipping an unchanged view and
keeping track of the page on show; ``open_display`` builds the device the
config asks for (or the 20×4 character LCD of :mod:`agent.adapters.char_lcd`).
The thread that draws without holding up the unit is
:mod:`agent.adapters.display_worker`.

``show(view)`` never raises: a loose I2C connector is logged and counted, not
a crash.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from PIL import Image

from agent.adapters.display_text import DisplayError, FontSet
from agent.adapters.display_worker import PAGE_S, DisplayWorker
from agent.adapters.panel_layout import MIN_SIZE, PanelLayout
from agent.adapters.panel_paint import Painter as _Painter, Placed, arrow_polygon
from agent.core.panel_view import PanelView

if TYPE_CHECKING:
    from agent.adapters.char_lcd import CharLcdDisplay

__all__ = ["DisplayError", "DisplayWorker", "MIN_SIZE", "PAGE_S", "PanelDisplay", "Placed", "arrow_polygon",
           "open_display", "_Painter"]

log = logging.getLogger(__name__)


class PanelDisplay:
    """Draws ``PanelView``s for one luma device (real OLED or ``dummy``)."""

    def __init__(self, device, *, labels: Mapping[str, Mapping[str, str]] | None = None,
                 fonts: FontSet | None = None) -> None:
        self.layout = PanelLayout(tuple(device.size), device.mode, fonts=fonts, labels=labels)
        self.device = device
        self.fonts = self.layout.fonts
        self._last_view: PanelView | None = None
        self._page = 0
        self.pages = 1  # pages of the view on show (more than one: the worker turns them)
        self.page_key: tuple | None = None  # what those pages are made of (PanelLayout.page_key)
        self.errors = 0
        self.frames = 0

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.device.size)

    # ------------------------------------------------------------ public

    def render(self, view: PanelView, page: int = 0) -> Image.Image:
        """The picture of ``view`` (its page ``page``) at the device's size and colour mode (pure drawing)."""
        return self.layout.render(view, page).image

    def render_layout(self, view: PanelView, page: int = 0) -> tuple[Image.Image, list[Placed]]:
        """The picture and the list of what was placed where (for tests and diagnostics)."""
        frame = self.layout.render(view, page)
        return frame.image, frame.placed

    def page_count(self, view: PanelView) -> int:
        """How many pages ``view`` takes (1 unless a long nature or address is paged)."""
        return self.layout.render(view, 0).pages

    @property
    def page(self) -> int:
        """The page of the view on show (0 is the first)."""
        return self._page

    def turn_page(self) -> bool:
        """Show the next page of the view on show (the worker calls it every ``PAGE_S``)."""
        if self._last_view is None or self.pages < 2:
            return False
        self._page = (self._page + 1) % self.pages
        return self._draw(self._last_view)

    def show(self, view: PanelView, force: bool = False) -> bool:
        """Put ``view`` on the device unless it is already there; False if the device failed.

        The page on show stays while the paged text does (``page_key``): the distance
        changes every second and must not send the rider back to page 1.
        """
        if view == self._last_view and not force:
            return True
        key = self.layout.page_key(view)
        if key != self.page_key:
            self._page = 0  # another call, or another text: it starts on its first page
            self.page_key = key
        return self._draw(view)

    def _draw(self, view: PanelView) -> bool:
        try:
            frame = self.layout.render(view, self._page)
            if self._page >= frame.pages:  # the text now takes fewer pages
                self._page = 0
                frame = self.layout.render(view, 0)
            image, self.pages = frame.image, frame.pages
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
