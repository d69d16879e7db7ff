"""The panel display's own thread: draws the newest view and turns its pages.

A full 128×64 frame is about 1 KiB over I2C: 25 ms at 400 kHz, 100 ms at the
default 100 kHz, so the unit's core never draws itself. ``post(view)`` only
leaves the view in a one-slot mailbox and returns; the worker draws the latest
view (intermediate ones are skipped: only the newest matters on a display).
Works for the OLED and the character LCD alike (anything with
``show(view) -> bool``, and ``pages`` / ``turn_page()`` for a display whose
views may take several pages).
"""

from __future__ import annotations

import logging
import threading

from agent.core.panel_view import PanelView

log = logging.getLogger(__name__)

PAGE_S = 3.0  # how long each page of a long nature or address stays up


class DisplayWorker:
    """Draws on its own thread so a slow bus never holds up the caller.

    When the view on show has several pages (``display.pages``), the worker
    turns them every ``page_s`` seconds (``display.turn_page()``) until a new
    view comes.
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

