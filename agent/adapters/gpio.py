"""The panel's GPIO: buttons and the siren input in, LEDs and the buzzer out (gpiozero).

How it works
============

Pin factory. ``make_pin_factory(cfg)`` builds the gpiozero factory named by
``[gpio] factory`` (``lgpio`` on the vehicle, ``mock`` in tests, ``pigpio`` for the rig's
emulated board, ``rpigpio``/``native`` otherwise), importing its library only then. Every
device gets it as ``pin_factory=``; gpiozero's process-global default is never touched.
``PanelIO`` does not own the factory: whoever made it closes it.

Inputs. Each button (``buttons``) and the ``siren`` input, when configured, is a
``DigitalInputDevice`` with the configured pull and active level. Not gpiozero's ``Button``:
it starts a hold-timing thread per button, and the one hold that matters (emergency) is
timed by the core, on the same clock as everything else. A change becomes
``ButtonPressed``/``ButtonReleased(name, mono, source="panel")`` or ``SirenChanged`` on
``post``, which must not block (the runtime's bounded inbox ``put_nowait``). The callback
runs on gpiozero's thread; it only builds the event and posts it, and catches everything.

Debouncing is done here, not by gpiozero's ``bounce_time``: the factories disagree on what
it means (lgpio and pigpio hold a change back until the level is steady, RPi.GPIO ignores
edges for a while after one, the native and mock pins ignore it; pigpio refuses more than
0.3 s), so one rule for all of them, tested on mock pins:

    The first edge that changes the reported level is reported at once (no added latency
    between a press and its publish). For ``bounce_s`` after it, further edges are not
    reported; at the end of that lockout the pin is read again and, if its level differs
    from the one reported (a press shorter than ``bounce_s``, or the last bounce landed the
    other way), that change is reported then, starting a new lockout.

So a bouncing contact gives one event per real change, presses and releases always pair
up, and the reported level always ends equal to the pin's.

Outputs. Logical outputs (the keys of ``agent.core.indicators`` plans): ``status`` is an
``RGBLED`` on ``status_red/green/blue`` (on/off channels, no PWM: the status colours are
primaries and their mixes) when all three are wired with the same polarity, else single
LEDs for whichever channels exist; ``link``, ``gnss``, ``call``, ``alarm`` are ``LED``s;
``buzzer`` is an active ``Buzzer`` (it sounds when powered, as rugged panel buzzers do).
An output with no pin is skipped: a panel without a GNSS LED still works.

``apply(plan)`` sets each output's base command (``Steady`` or ``Pattern``; the same
command again does not restart a pattern) and plays ``Flash`` one-shots over it. One
thread plays every pattern and runs the debounce lockouts: it sleeps until the next step
or lockout end, or until ``apply``/an edge wakes it. ``close()`` stops it (bounded join),
switches the outputs off and closes every device.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agent.config import INPUT_NAMES, GpioConfig, InputPin, OutputPin
from agent.core.events import ButtonPressed, ButtonReleased, SirenChanged
from agent.core.indicators import OFF, OUTPUTS, RGB, WHITE, Flash, Level, Pattern, Steady

log = logging.getLogger(__name__)

BUTTON_NAMES = tuple(name for name in INPUT_NAMES if name != "siren")  # the siren is a line, not a button
OPTIONAL_BUTTONS = ("decline", "cleared", "silent_emergency")  # when [gpio] wires them

# Packages each factory needs, for a clear error when one is missing.
_FACTORY_PACKAGES = {"lgpio": "lgpio", "rpigpio": "RPi.GPIO", "pigpio": "pigpio", "native": None, "mock": None}

# The worker never sleeps longer than this, so a stuck deadline cannot hide forever.
_MAX_WAIT_S = 1.0
# A pattern step this late (the machine stalled) restarts its timing from now
# instead of racing through every missed step.
_RESYNC_S = 1.0


class PinFactoryError(RuntimeError):
    """The configured pin factory cannot be used (library missing, no GPIO chip, no daemon)."""


def make_pin_factory(cfg: GpioConfig, *, connect_timeout_s: float = 5.0) -> Any:
    """The gpiozero pin factory ``[gpio] factory`` names; raises PinFactoryError if unusable."""
    kind = cfg.factory
    try:
        if kind == "mock":
            from gpiozero.pins.mock import MockFactory

            return MockFactory()
        if kind == "pigpio":
            # pigpio's own connect has no timeout; probe first so an unreachable daemon is
            # a bounded, clear error rather than a hang or a printed banner.
            _probe_tcp(cfg.pigpio_host, cfg.pigpio_port, connect_timeout_s)
            from gpiozero.pins.pigpio import PiGPIOFactory

            return PiGPIOFactory(host=cfg.pigpio_host, port=cfg.pigpio_port)
        if kind == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        if kind == "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory

            return RPiGPIOFactory()
        if kind == "native":
            from gpiozero.pins.native import NativeFactory

            return NativeFactory()
    except ImportError as exc:
        package = _FACTORY_PACKAGES.get(kind)
        raise PinFactoryError(
            f"gpio factory {kind!r} needs the Python package {package!r}, which cannot be imported: {exc}"
        ) from exc
    except PinFactoryError:
        raise
    except Exception as exc:  # gpiozero raises several unrelated types (PinUnknownPi, OSError...)
        raise PinFactoryError(f"gpio factory {kind!r} could not start: {type(exc).__name__}: {exc}") from exc
    raise PinFactoryError(f"unknown gpio factory {kind!r}")


def _probe_tcp(host: str, port: int, timeout_s: float) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise PinFactoryError(f"gpio factory 'pigpio': no pigpio daemon at {host}:{port}: {exc}") from exc


def panel_buttons(cfg: GpioConfig, status_buttons: Iterable[str]) -> list[str]:
    """The buttons a panel has: this vehicle's status buttons, ``ack``, ``emergency``, and
    ``decline``/``cleared`` when they have a pin."""
    names = [*status_buttons, "ack", "emergency"]
    names += [name for name in OPTIONAL_BUTTONS if name in cfg.inputs]
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------ inputs


@dataclass(slots=True)
class _Input:
    name: str
    device: Any
    bounce_s: float
    reported: bool
    lockout_until: float = float("-inf")
    settle_at: float | None = None  # when to read the pin again (end of the lockout)


def _input_kwargs(spec: InputPin) -> dict[str, Any]:
    if spec.pull_up is None:
        return {"pull_up": None, "active_state": bool(spec.active_high)}
    return {"pull_up": spec.pull_up}


# ----------------------------------------------------------------- outputs


def _segments(p: Pattern) -> Iterator[tuple[Level, float]]:
    """(level, seconds) steps of a pattern; endless when ``repeat`` is 0."""
    cycle = 0
    odd = len(p.steps) % 2 == 1
    while p.repeat == 0 or cycle < p.repeat:
        if cycle and odd:
            yield p.off, p.steps[-1]  # keep repeats of an odd pattern apart
        for index, seconds in enumerate(p.steps):
            yield (p.on if index % 2 == 0 else p.off), seconds
        cycle += 1


class _Track:
    """What one logical output plays: a base command and maybe a one-shot over it."""

    def __init__(self, name: str, write: Callable[[Level], None]):
        self.name = name
        self.write = write
        self.base: Steady | Pattern | None = None
        self.flash: Pattern | None = None
        self.due: float | None = None
        self._steps: Iterator[tuple[Level, float]] | None = None
        self._end: Level = False

    def set_base(self, command: Steady | Pattern, now: float) -> bool:
        """Play ``command`` from now on; False if it was already the base (nothing to do)."""
        if command == self.base:
            return False  # same command: a running pattern keeps its rhythm
        self.base = command
        if self.flash is None:
            self._start(command, now)
        return True

    def set_flash(self, p: Pattern, now: float) -> None:
        self.flash = p
        self._start(p, now)

    def advance(self, now: float) -> None:
        while self.due is not None and now >= self.due:
            due = self.due
            step = next(self._steps, None) if self._steps is not None else None
            if step is None:
                self._finished(now)
                return
            level, seconds = step
            self.write(level)
            self.due = now + seconds if now - due > _RESYNC_S else due + seconds

    def _finished(self, now: float) -> None:
        self._steps = None
        self.due = None
        if self.flash is not None:
            self.flash = None
            if self.base is not None:
                self._start(self.base, now)
            else:
                self.write(False)
        else:
            self.write(self._end)

    def _start(self, command: Steady | Pattern, now: float) -> None:
        if isinstance(command, Steady):
            self._steps = None
            self.due = None
            self.write(command.level)
            return
        self._steps = _segments(command)
        self._end = command.then
        self.due = now  # the first step plays at once
        self.advance(now)


def _as_rgb(level: Level) -> RGB:
    if isinstance(level, tuple):
        return level
    return WHITE if level else OFF


def _as_bool(level: Level) -> bool:
    if isinstance(level, tuple):
        return any(channel >= 0.5 for channel in level)
    return bool(level)


# ------------------------------------------------------------------- panel


class PanelIO:
    """The panel's buttons, siren input, LEDs and buzzer, on an injected pin factory.

    ``buttons``: the button names to wire (see ``panel_buttons``); each needs a pin in
    ``cfg.inputs``. ``post`` receives the events and must not block. ``clock`` stamps
    them (monotonic seconds) and times patterns and lockouts.

    The siren's level at start is posted once as ``SirenChanged`` so the core knows it.
    An emergency button already held when the panel starts (a rider holding it through
    a reboot after a crash) is posted as pressed at that moment, so the hold counts from
    then; other buttons held at start (resting or stuck keys) wait for their next press.
    """

    def __init__(
        self,
        cfg: GpioConfig,
        factory: Any,
        *,
        buttons: list[str],
        post: Callable[[object], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        unknown = [name for name in buttons if name not in BUTTON_NAMES]
        if unknown:
            raise ValueError(f"not a panel button: {unknown}; buttons are {list(BUTTON_NAMES)}")
        missing = [name for name in buttons if name not in cfg.inputs]
        if missing:
            raise ValueError(f"button(s) {missing} have no pin in [gpio.inputs]")
        self._cfg = cfg
        self._factory = factory
        self._post = post
        self._clock = clock
        self._cond = threading.Condition()
        self._closed = False
        self._devices: list[Any] = []
        self._inputs: dict[str, _Input] = {}
        self._tracks: dict[str, _Track] = {}
        self.dropped_events = 0  # posts that raised (inbox full): counted, logged
        self.write_errors = 0
        try:
            for name in dict.fromkeys(buttons):
                self._add_input(name, cfg.inputs[name])
            if "siren" in cfg.inputs:
                self._add_input("siren", cfg.inputs["siren"])
            self._build_outputs(cfg.outputs)
        except BaseException:
            self._close_devices()
            raise
        self._thread = threading.Thread(target=self._run, name="panel-io", daemon=True)
        self._thread.start()
        with self._cond:
            if "siren" in self._inputs:
                self._emit(self._inputs["siren"], self._inputs["siren"].reported, self._clock())
            emergency = self._inputs.get("emergency")
            if emergency is not None and emergency.reported:
                log.warning("panel: the emergency button is held at start; its hold counts from now")
                self._emit(emergency, True, self._clock())

    # ------------------------------------------------------------ reading

    @property
    def buttons(self) -> tuple[str, ...]:
        return tuple(name for name in self._inputs if name != "siren")

    @property
    def outputs(self) -> tuple[str, ...]:
        """The logical outputs this panel has (keys of a plan it will show)."""
        return tuple(self._tracks)

    @property
    def siren_on(self) -> bool | None:
        siren = self._inputs.get("siren")
        return None if siren is None else siren.reported

    def wait_settled(self, timeout: float) -> bool:
        """Wait until no debounce lockout is pending (every input's level reported)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(i.settle_at is not None for i in self._inputs.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # ------------------------------------------------------------ driving

    def apply(self, plan: Mapping[str, Steady | Pattern | Flash]) -> None:
        """Show a plan from ``agent.core.indicators`` (base commands and/or one-shots)."""
        bad = [name for name in plan if name not in OUTPUTS]
        if bad:
            raise ValueError(f"unknown output(s) {bad}; outputs are {list(OUTPUTS)}")
        for name, command in plan.items():
            if not isinstance(command, (Flash, Steady, Pattern)):
                raise TypeError(f"output {name!r}: not an output command: {command!r}")
        with self._cond:
            if self._closed:
                raise RuntimeError("panel is closed")
            now = self._clock()
            changed = False
            for name, command in plan.items():
                track = self._tracks.get(name)
                if track is None:
                    continue  # this panel has no such LED
                try:
                    if isinstance(command, Flash):
                        track.set_flash(command.pattern, now)
                        changed = True
                    else:
                        changed = track.set_base(command, now) or changed
                except Exception:
                    # A failing pin write is logged and counted; the other outputs still follow.
                    self.write_errors += 1
                    changed = True
                    log.exception("panel: output %s failed", name)
            if changed:
                # The player's next step may be sooner now. The same plan again (every fix, at up
                # to 10 Hz) changes nothing, and waking the thread for it cost CPU.
                self._cond.notify_all()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the player, switch the outputs off, release every pin. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"panel-io thread did not stop within {timeout} s")
        with self._cond:
            for track in self._tracks.values():
                try:
                    track.write(False)
                except Exception:
                    log.exception("panel: could not switch %s off", track.name)
            self._close_devices()

    def __enter__(self) -> "PanelIO":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ building

    def _add_input(self, name: str, spec: InputPin) -> None:
        from gpiozero import DigitalInputDevice

        device = DigitalInputDevice(spec.pin, bounce_time=None, pin_factory=self._factory, **_input_kwargs(spec))
        self._devices.append(device)
        self._inputs[name] = _Input(name, device, spec.bounce_s, bool(device.value))
        device.when_activated = lambda: self._edge(name, True)
        device.when_deactivated = lambda: self._edge(name, False)

    def _build_outputs(self, outputs: Mapping[str, OutputPin]) -> None:
        from gpiozero import LED, RGBLED, Buzzer

        channels = [outputs.get(f"status_{c}") for c in ("red", "green", "blue")]
        wired = [spec for spec in channels if spec is not None]
        if len(wired) == 3 and len({spec.active_high for spec in wired}) == 1:
            rgb = RGBLED(*(spec.pin for spec in wired), active_high=wired[0].active_high, pwm=False,
                         pin_factory=self._factory)
            self._devices.append(rgb)
            self._tracks["status"] = _Track("status", self._rgb_writer(rgb))
        elif wired:
            leds = [None if spec is None else LED(spec.pin, active_high=spec.active_high, pin_factory=self._factory)
                    for spec in channels]
            self._devices.extend(led for led in leds if led is not None)
            self._tracks["status"] = _Track("status", self._channels_writer(leds))
        for name in ("link", "gnss", "call", "alarm", "buzzer"):
            spec = outputs.get(name)
            if spec is None:
                continue
            cls = Buzzer if name == "buzzer" else LED
            device = cls(spec.pin, active_high=spec.active_high, pin_factory=self._factory)
            self._devices.append(device)
            self._tracks[name] = _Track(name, self._bool_writer(device))

    def _rgb_writer(self, rgb: Any) -> Callable[[Level], None]:
        def write(level: Level) -> None:
            rgb.value = tuple([1 if channel >= 0.5 else 0 for channel in _as_rgb(level)])  # of a list: see nmea._gsa
        return write

    def _channels_writer(self, leds: list[Any]) -> Callable[[Level], None]:
        def write(level: Level) -> None:
            for led, channel in zip(leds, _as_rgb(level)):
                if led is not None:
                    led.value = 1 if channel >= 0.5 else 0
        return write

    def _bool_writer(self, device: Any) -> Callable[[Level], None]:
        def write(level: Level) -> None:
            device.value = 1 if _as_bool(level) else 0
        return write

    def _close_devices(self) -> None:
        for device in reversed(self._devices):
            try:
                device.close()
            except Exception:
                log.exception("panel: closing %r failed", device)
        self._devices.clear()

    # ------------------------------------------------------------- inputs

    def _edge(self, name: str, active: bool) -> None:
        """gpiozero's callback: report or absorb one edge. Never raises."""
        try:
            with self._cond:
                if self._closed:
                    return
                now = self._clock()
                inp = self._inputs[name]
                if now < inp.lockout_until:
                    return  # a bounce; the lockout's end reads the pin again
                if active != inp.reported:
                    self._report(inp, active, now)
        except Exception:
            log.exception("panel: edge on %s could not be handled", name)

    def _report(self, inp: _Input, active: bool, now: float) -> None:
        inp.reported = active
        if inp.bounce_s > 0:
            inp.lockout_until = now + inp.bounce_s
            inp.settle_at = inp.lockout_until
            self._cond.notify_all()
        self._emit(inp, active, now)

    def _emit(self, inp: _Input, active: bool, now: float) -> None:
        if inp.name == "siren":
            event: object = SirenChanged(on=active, mono=now)
        elif active:
            event = ButtonPressed(inp.name, now, source="panel")
        else:
            event = ButtonReleased(inp.name, now, source="panel")
        try:
            self._post(event)  # under the lock, so events leave in the order they happened
        except Exception:
            self.dropped_events += 1
            log.exception("panel: could not post %r", event)

    def _settle(self, inp: _Input, now: float) -> None:
        inp.settle_at = None
        level = bool(inp.device.value)
        if level != inp.reported:
            self._report(inp, level, now)

    # ------------------------------------------------------------- worker

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = self._clock()
                try:
                    self._service(now)
                except Exception:
                    self.write_errors += 1
                    log.exception("panel: output or input service failed")
                due = self._next_due()
                wait = _MAX_WAIT_S if due is None else min(_MAX_WAIT_S, max(0.0, due - self._clock()))
                if wait > 0:
                    self._cond.wait(wait)

    def _service(self, now: float) -> None:
        settled = False
        for inp in self._inputs.values():
            if inp.settle_at is not None and now >= inp.settle_at:
                self._settle(inp, now)
                settled = True
        for track in self._tracks.values():
            try:
                track.advance(now)
            except Exception:
                # One broken output (a pin write failing) must not stop the others.
                self.write_errors += 1
                track.due = None
                log.exception("panel: output %s failed", track.name)
        if settled:
            self._cond.notify_all()  # wake wait_settled

    def _next_due(self) -> float | None:
        times = [i.settle_at for i in self._inputs.values() if i.settle_at is not None]
        times += [t.due for t in self._tracks.values() if t.due is not None]
        return min(times, default=None)
