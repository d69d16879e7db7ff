"""The crew's outputs: the panel's LEDs and buzzer, the rider display, the touchscreen, speech.

None of them is an effect of the core: each shows the unit's state as
:mod:`agent.core.views` derives it, refreshed after every visible change (the
unit's ``revision``) and at every tick (the clocks and countdowns move): the
screens (:meth:`Outputs.refresh_screens`) before the event's messages go out, so
a call is on them before its ``received``; the LEDs
(:meth:`Outputs.refresh_panel`) after, as pin writes are slow. Speech and the panel's one-shot answer to a press are the
core's effects (``Speak``, ``Announce``, ``Feedback``), carried out here.

Each output runs behind its own guard (:mod:`agent.output_guard`): one that fails
is counted and logged once, and never keeps the others, or the event that
changed them, from running.

The screens and speech are made by their rows of the lifecycle table
(:mod:`agent.lifecycle`), after the core runs: the touchscreen's server takes
seconds to start. Any of them may be missing (a motorcycle has no touchscreen,
a car no rider display, speech is off by default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.config import AgentConfig
from agent.core import views
from agent.core.events import Event
from agent.core.indicators import feedback, indicator_plan
from agent.core.unit import Now, Unit
from agent.output_guard import OutputGuard

if TYPE_CHECKING:
    from agent.adapters.display_worker import DisplayWorker
    from agent.adapters.gpio import PanelIO
    from agent.adapters.speech import Speaker
    from agent.adapters.web_ui import WebUi

log = logging.getLogger("agent.runtime")


class Outputs:
    """The screens and speech (made and dropped by their lifecycle rows), refreshed from views."""

    def __init__(self, guards: dict[str, OutputGuard], *, post: Callable[[Event], None]) -> None:
        self.guards = guards
        self._post = post
        self.web: WebUi | None = None
        self.display: DisplayWorker | None = None
        self.speaker: Speaker | None = None

    # ------------------------------------------------------------ refreshing

    def refresh(self, unit: Unit, now: Now, *, panel: PanelIO | None, config: AgentConfig,
                backlog: Callable[[], int]) -> None:
        """Every output shows the unit as it is now, each behind its own guard."""
        self.refresh_screens(unit, now, backlog=backlog)
        self.refresh_panel(unit, now, panel=panel, config=config)

    def refresh_panel(self, unit: Unit, now: Now, *, panel: PanelIO | None, config: AgentConfig) -> None:
        """The panel's LEDs and buzzer show the unit as it is now.

        The runtime calls this after the event's messages are handed to the uplink: pin writes
        are synchronous (a round trip each to a pigpio daemon), and a status or a call's
        receipt must not wait for an LED (docs/performance-notes.md).
        """
        if panel is not None:
            self.guards["leds"].run(lambda: panel.apply(indicator_plan(views.indicator_view(unit, now),
                                                                       config.panel.patterns)))

    def refresh_screens(self, unit: Unit, now: Now, *, backlog: Callable[[], int]) -> None:
        """The rider display and the touchscreen show the unit as it is now: handed to their own threads."""
        display = self.display
        if display is not None:
            self.guards["display"].run(lambda: display.post(views.rider_view(unit, now, views.clock_text(now.wall))))
        web = self.web
        if web is not None:
            def show() -> None:
                if web.update(views.screen_snapshot(unit, now, backlog=backlog())) is False:
                    raise ValueError("the touchscreen refused the snapshot")

            self.guards["touchscreen"].run(show)

    def next_redraw(self, unit: Unit, mono: float) -> float | None:
        """When the rider display must be drawn again with no event (its hold bar and cancel countdown move)."""
        return views.next_redraw(unit, mono) if self.display is not None else None

    def feedback(self, kind: str, panel: PanelIO | None, config: AgentConfig) -> None:
        """The panel's one-shot answer to a press (``accepted``, ``refused``)."""
        if panel is not None:
            self.guards["leds"].run(lambda: panel.apply(feedback(kind, config.panel.patterns)))

    def speak(self, unit: Unit, call_id: str, now: Now, language: str) -> None:
        """A new call read out on the helmet intercom."""
        speaker = self.speaker
        if speaker is not None:
            def say() -> None:
                text = views.spoken_text(unit, call_id, now)
                if text:
                    speaker.speak(text, language)

            self.guards["speech"].run(say)

    def announce(self, unit: Unit, seconds: int, language: str) -> None:
        """The crash prompt on the helmet intercom: ``seconds`` to cancel."""
        speaker = self.speaker
        if speaker is not None:
            text = views.spoken_prompt(unit, seconds)
            self.guards["speech"].run(lambda: speaker.speak(text, language))

    # --------------------------------------------- made and dropped by the table

    def new_touchscreen(self, config: AgentConfig) -> WebUi | None:
        if not config.ui_enabled:
            return None
        from agent.adapters.web_ui import WebUi

        return WebUi(config.ui.host, config.ui.http_port, post=self._post)

    def stop_touchscreen(self) -> None:
        if self.web is not None:
            self.web.stop()

    def start_display(self, config: AgentConfig, unit: Unit) -> None:
        kind = config.display_kind
        if kind == "none":
            return
        from agent.adapters.panel_display import DisplayError, DisplayWorker, open_display

        d = config.display
        try:
            device = open_display(kind, d.i2c_port, d.i2c_address, d.width, d.height, d.rotate,
                                  labels=views.display_labels(unit), mirror_png=d.mirror_png or None)
        except (DisplayError, OSError) as exc:
            log.error("rider display unavailable: %s", exc)
            return
        if device is not None:
            self.display = DisplayWorker(device)

    def stop_display(self) -> None:
        if self.display is not None:
            self.display.close()
            self.display = None

    def start_speech(self, config: AgentConfig) -> None:
        if config.display.speech:
            from agent.adapters.speech import Speaker

            self.speaker = Speaker(enabled=True)

    def stop_speech(self) -> None:
        if self.speaker is not None:
            self.speaker.close()
            self.speaker = None
