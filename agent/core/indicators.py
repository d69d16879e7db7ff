"""What the panel's LEDs and buzzer show, derived from the unit's state (pure).

``indicator_plan(view, patterns)`` turns a small :class:`IndicatorView` into one command per
logical output; ``feedback(kind, patterns)`` gives the one-shot overlay for a press
(``accepted``, ``refused``). The GPIO adapter plays both; the same plan could drive a
touchscreen mock-up or a test.

Logical outputs (keys of a plan) and what they show:

    status  RGB colour of the current status (table STATUS_COLOURS); a white flash on a
            refused press (white is no status colour, so it reads as "no").
    link    on: connected to the broker; slow blink (``link_offline``): offline.
    gnss    on: position fix; short blips (``gnss_no_fix``): no fix.
    call    off: no call; the call's priority pattern (``call_p1``..``call_p3``) until the
            crew acknowledges it, then steady on while the call is open. A pattern that
            ends (``call_p3`` repeats 3 times) leaves the LED on: the call is still there.
    alarm   off: no alarm; steady on while the emergency button is being held (the press
            registers); ``emergency_pending`` (fast) in the cancel window and while a crash
            prompt waits for ``ack`` (agent/core/officer_down.py);
            ``emergency_active`` (1 Hz) until dispatch acknowledges; then
            ``emergency_acknowledged`` (a short flash every 2 s: the blinking calms down,
            help knows).
    buzzer  ``emergency_pending`` in the cancel window and during a crash prompt (the
            officer must notice it is open); otherwise the call's priority pattern until acknowledged; otherwise
            silent. Once an alarm is out the buzzer stays silent, call or not: a beeping
            panel next to an aggressor helps nobody. One-shots: ``accepted`` chirp,
            ``refused`` long beep.

Status colours are full-on primaries and their mixes (each channel 0 or 1), readable in
sunlight and shown the same by a PWM or a plain on/off RGB LED:

    available green, en_route blue, on_scene yellow (amber on most RGB LEDs),
    busy red, out_of_service magenta (not "off", which would look like a dead panel).

Patterns: named in ``[panel] patterns`` (``steps`` alternate on/off seconds starting
with on, ``repeat`` 0 = until replaced). A name missing from the configured table falls
back to DEFAULT_PATTERNS, so a partial table never leaves an output dark. Anything with
``steps`` and ``repeat`` attributes will do (the config's PatternConfig does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, Union

from agent.config import DEFAULT_PATTERNS, STATUS_CODES, PatternSpec  # noqa: F401 (PatternSpec: the patterns' type)
from agent.core.emergency import EmergencyState

RGB = tuple[float, float, float]
Level = Union[bool, RGB]

OFF: RGB = (0.0, 0.0, 0.0)
WHITE: RGB = (1.0, 1.0, 1.0)

STATUS_COLOURS: dict[str, RGB] = {
    "available": (0.0, 1.0, 0.0),
    "en_route": (0.0, 0.0, 1.0),
    "on_scene": (1.0, 1.0, 0.0),
    "busy": (1.0, 0.0, 0.0),
    "out_of_service": (1.0, 0.0, 1.0),
}

OUTPUTS = ("status", "link", "gnss", "call", "alarm", "buzzer")

FEEDBACK_KINDS = ("accepted", "refused")


class PatternLike(Protocol):
    steps: Sequence[float]
    repeat: int




# ------------------------------------------------------------------ commands


@dataclass(frozen=True, slots=True)
class Steady:
    """Hold one level: ``True``/``False`` for a LED or the buzzer, an RGB triplet for status."""

    level: Level


@dataclass(frozen=True, slots=True)
class Pattern:
    """Play ``steps`` (alternating ``on``/``off`` levels, from ``on``) ``repeat`` times
    (0: until replaced), then hold ``then``.

    With an odd number of steps a cycle ends "on"; between repeats an "off" as long as
    that last "on" keeps the repeats apart.
    """

    name: str
    steps: tuple[float, ...]
    repeat: int
    on: Level = True
    off: Level = False
    then: Level = False


@dataclass(frozen=True, slots=True)
class Flash:
    """A one-shot overlay: play ``pattern`` once over whatever the output shows, then go back."""

    pattern: Pattern


OutputCommand = Union[Steady, Pattern]


@dataclass(frozen=True, slots=True)
class IndicatorView:
    """The part of the unit's state the panel shows. Validated on construction."""

    status: str
    link_up: bool
    gnss_fix: bool
    call_priority: int | None = None  # None: no open call; 1 most urgent .. 3
    call_acknowledged: bool = False
    emergency: EmergencyState = EmergencyState.NONE
    crash_prompt: bool = False  # a minor crash's prompt: sounds and blinks like a pending alarm

    def __post_init__(self) -> None:
        if self.status not in STATUS_COLOURS:
            raise ValueError(f"unknown status {self.status!r}; known: {list(STATUS_CODES)}")
        if self.call_priority is not None and self.call_priority not in (1, 2, 3):
            raise ValueError(f"call priority must be 1, 2 or 3, not {self.call_priority!r}")
        # Accept the plain string too ("active"), store the enum.
        object.__setattr__(self, "emergency", EmergencyState(self.emergency))


# --------------------------------------------------------------------- plans


def pattern(name: str, patterns: Mapping[str, PatternLike] | None = None, *,
            on: Level = True, off: Level = False, then: Level = False) -> Pattern:
    """The named pattern from ``patterns``, else from DEFAULT_PATTERNS (KeyError if neither)."""
    spec = (patterns or {}).get(name) or DEFAULT_PATTERNS[name]
    return Pattern(name, tuple(float(s) for s in spec.steps), int(spec.repeat), on, off, then)


def indicator_plan(view: IndicatorView, patterns: Mapping[str, PatternLike] | None = None) -> dict[str, OutputCommand]:
    """One command per logical output (see the module docstring)."""
    plan: dict[str, OutputCommand] = {
        "status": Steady(STATUS_COLOURS[view.status]),
        "link": Steady(True) if view.link_up else pattern("link_offline", patterns),
        "gnss": Steady(True) if view.gnss_fix else pattern("gnss_no_fix", patterns),
    }

    call_alert = view.call_priority is not None and not view.call_acknowledged
    if view.call_priority is None:
        plan["call"] = Steady(False)
    elif call_alert:
        plan["call"] = pattern(f"call_p{view.call_priority}", patterns, then=True)
    else:
        plan["call"] = Steady(True)

    state = view.emergency
    if state is EmergencyState.NONE and view.crash_prompt:
        plan["alarm"] = pattern("emergency_pending", patterns)
    elif state is EmergencyState.NONE:
        plan["alarm"] = Steady(False)
    elif state is EmergencyState.HOLDING:
        plan["alarm"] = Steady(True)
    else:
        plan["alarm"] = pattern(f"emergency_{state.value}", patterns, then=True)

    if state is EmergencyState.PENDING or (state is EmergencyState.NONE and view.crash_prompt):
        plan["buzzer"] = pattern("emergency_pending", patterns)
    elif state in (EmergencyState.ACTIVE, EmergencyState.ACKNOWLEDGED):
        plan["buzzer"] = Steady(False)
    elif call_alert:
        plan["buzzer"] = pattern(f"call_p{view.call_priority}", patterns)
    else:
        plan["buzzer"] = Steady(False)
    return plan


def feedback(kind: str, patterns: Mapping[str, PatternLike] | None = None) -> dict[str, Flash]:
    """The one-shot answer to a press: ``accepted`` (a chirp) or ``refused`` (a long beep
    and a white flash of the status LED)."""
    if kind == "accepted":
        return {"buzzer": Flash(pattern("accepted", patterns))}
    if kind == "refused":
        return {
            "buzzer": Flash(pattern("refused", patterns)),
            "status": Flash(pattern("refused", patterns, on=WHITE, off=OFF, then=OFF)),
        }
    raise ValueError(f"unknown feedback {kind!r}; known: {list(FEEDBACK_KINDS)}")
