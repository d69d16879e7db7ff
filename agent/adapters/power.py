"""The vehicle's power lines: ignition sense and the hold-up supply's power-fail warning (gpiozero).

What it is for
--------------
A unit runs on the vehicle's 12 V. The ignition line says whether the vehicle
is in use (parked units report less often and power off after a while); a
hold-up supply (supercapacitor or UPS board, firmware-config/power.md) keeps
the unit alive for a few seconds after a cut and says so on a GPIO line, so
the agent can put everything on disk before the power goes.

How it works
------------
Each configured line is a gpiozero ``DigitalInputDevice`` on the pin factory
the panel uses (``pin_factory=`` always; the rig drives the lines through its
emulated board like the buttons). The pull is set from the active level: an
active-low line gets the pull-up, an active-high one the pull-down.

* Ignition: a change is reported once the line has held its new level for
  ``ignition_debounce_s`` (cranking dips the 12 V for a fraction of a second).
  The level read at start is reported at once.
* Power fail: the warning is acted on once the line has been active for
  ``power_fail_debounce_s`` (0: at the first edge), once per run; a line
  already active at start counts (the supply failed while the unit booted).
  ``on_power_fail`` is called on a thread of its own: it commits to disk
  (fsync) and must not wait behind gpiozero's callback thread.

Callbacks only read the pin and start or cancel a timer; nothing blocks
gpiozero's thread, and an exception in a consumer is logged, never raised
into gpiozero.

:func:`power_off` runs ``[power] poweroff_command`` once the agent has stopped
for a reason of the power's (the hold-up supply's warning, parked too long).
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from agent.config import PowerConfig

log = logging.getLogger(__name__)


class _Line:
    """One debounced input: ``on_level(active)`` once the line holds a level for ``hold_s``."""

    def __init__(self, name: str, pin: int, active_high: bool, hold_s: float, factory: Any,
                 on_level: Callable[[bool], None]) -> None:
        from gpiozero import DigitalInputDevice

        self.name = name
        self._hold_s = hold_s
        self._on_level = on_level
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False
        self.device = DigitalInputDevice(pin, pull_up=not active_high, pin_factory=factory)
        self.device.when_activated = self._edge
        self.device.when_deactivated = self._edge

    @property
    def active(self) -> bool:
        return bool(self.device.is_active)

    def _edge(self, *_: Any) -> None:
        try:
            with self._lock:
                if self._closed:
                    return
                if self._timer is not None:
                    self._timer.cancel()
                if self._hold_s <= 0:
                    self._timer = None
                    level = self.active
                else:
                    self._timer = threading.Timer(self._hold_s, self._settled)
                    self._timer.daemon = True
                    self._timer.name = f"power-{self.name}"
                    self._timer.start()
                    return
            self._deliver(level)
        except Exception:  # noqa: BLE001 - never into gpiozero's thread
            log.exception("power: %s edge", self.name)

    def _settled(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._timer = None
        self._deliver(self.active)

    def _deliver(self, level: bool) -> None:
        try:
            self._on_level(level)
        except Exception:  # noqa: BLE001 - a consumer's bug must not kill the line
            log.exception("power: %s handler failed", self.name)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self.device.close()


class PowerInputs:
    """The ignition and power-fail lines of ``[power]``; either may be unwired (pin unset)."""

    def __init__(self, cfg: PowerConfig, factory: Any, *, on_ignition: Callable[[bool], None],
                 on_power_fail: Callable[[], None]) -> None:
        self._on_ignition = on_ignition
        self._on_power_fail = on_power_fail
        self._ignition_reported: bool | None = None
        self._failed = threading.Event()
        self._lock = threading.Lock()
        self.ignition: _Line | None = None
        self.power_fail: _Line | None = None
        try:
            if cfg.ignition_pin is not None:
                self.ignition = _Line("ignition", cfg.ignition_pin, cfg.ignition_active_high,
                                      cfg.ignition_debounce_s, factory, self._ignition_level)
            if cfg.power_fail_pin is not None:
                self.power_fail = _Line("power_fail", cfg.power_fail_pin, cfg.power_fail_active_high,
                                        cfg.power_fail_debounce_s, factory, self._power_fail_level)
        except BaseException:
            self.close()
            raise

    @property
    def wired(self) -> bool:
        return self.ignition is not None or self.power_fail is not None

    @property
    def power_failing(self) -> bool:
        return self._failed.is_set()

    def start(self) -> None:
        """Report the levels the lines have now (ignition on or off; a warning already up)."""
        if self.ignition is not None:
            self._ignition_level(self.ignition.active)
        if self.power_fail is not None and self.power_fail.active:
            self._power_fail_level(True)

    def _ignition_level(self, on: bool) -> None:
        with self._lock:
            if on == self._ignition_reported:
                return
            self._ignition_reported = on
        log.info("power: ignition %s", "on" if on else "off")
        self._on_ignition(on)

    def _power_fail_level(self, active: bool) -> None:
        with self._lock:
            if not active or self._failed.is_set():
                return
            self._failed.set()
        log.warning("power: power-fail warning from the hold-up supply")
        threading.Thread(target=self._on_power_fail, name="power-fail", daemon=True).start()

    def close(self) -> None:
        for line in (self.ignition, self.power_fail):
            if line is not None:
                try:
                    line.close()
                except Exception:  # noqa: BLE001 - closing: the other line still closes
                    log.exception("power: closing %s", line.name)


def power_off(command: str) -> None:
    """Run ``[power] poweroff_command`` (empty: nothing). Bounded; a failure is logged."""
    if not command.strip():
        return
    log.warning("powering off: %s", command)
    try:
        done = subprocess.run(shlex.split(command), timeout=30, capture_output=True, text=True, check=False)
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        log.error("poweroff command %r failed: %s", command, exc)
        return
    if done.returncode != 0:
        log.error("poweroff command %r exited %d: %s", command, done.returncode, done.stderr.strip()[:200])
