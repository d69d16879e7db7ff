"""The unit status: what the crew tells dispatch it is doing, as a transition table.

The rules
=========

Five statuses, the codes of the MQTT contract:

    available       in service, free to take a call
    en_route        driving to an incident
    on_scene        at an incident
    busy            in service but occupied by something that is not a dispatched call
                    (a traffic stop, an escort, a detainee transport, paperwork)
    out_of_service  not available to dispatch at all (end of shift, fuel, breakdown)

A press asks for a target status; the table below says which targets are allowed from
each status. Every request gets an answer: accepted, or refused with a reason code, so the
panel can play its "refused" pattern (never a silent no-op).

Guiding principle: the panel reports what the crew is really doing. A transition is only
refused when it is far more likely a gloved mis-press than the truth, or when allowing it
would leave something open on the dispatcher's board. Refusing a true transition would
only force the crew through a false intermediate status that dispatch would act on.

    from \\ to       available  en_route  on_scene  busy  out_of_service
    available           -          yes       yes     yes       yes
    en_route           yes          -        yes     yes        no
    on_scene           yes         yes        -      yes        no
    busy               yes         yes       yes      -         no
    out_of_service     yes          no        no     no          -

Reasons, rule by rule:

- available -> en_route: the usual way to take a call. No data call is required: calls are
  often assigned by voice radio, or the data call has not arrived because the link is down;
  refusing would lose the one thing dispatch needs to know (see "calls" below).
- available -> on_scene: the crew comes upon an incident itself (flagged down, witnessed).
- available -> busy: a self-initiated task (traffic stop, escort, transport).
- available -> out_of_service: end of shift, refuelling, vehicle fault.
- en_route -> on_scene: arrived.
- en_route -> available: stood down (cancelled, another unit took it).
- en_route -> busy: diverted to a task on the way; saying so beats a false "available".
- on_scene -> en_route: moving on to a second scene, following a suspect, taking someone to
  hospital or the station.
- on_scene -> available: incident cleared.
- on_scene -> busy: the scene turned into a long task (custody, report).
- busy -> available / en_route / on_scene: task finished, or interrupted by a more urgent call,
  or the task itself became an incident.
- en_route / on_scene / busy -> out_of_service: refused ("must_clear_first"). A unit with work
  in hand must clear it (available) first, so the dispatcher's board never keeps an incident
  whose unit silently vanished, and an adjacent-button mis-press mid-call cannot drop the unit
  off the board. A crew whose vehicle breaks down en route presses available, then out of
  service (and speaks on the radio); an injured officer uses the emergency button.
- out_of_service -> available only ("return_via_available"). Coming back into service is a
  deliberate act (crew fit, vehicle working); a bump on a parked unit's panel must not put it
  on the board as responding to something.
- X -> X: refused ("same_status"): pressing the lit status again changes nothing, and the crew
  should know the press did nothing new.

Calls: the machine does not require an active dispatch call for en_route or on_scene (see
above); linking responses to calls is the dispatch module's job. An emergency does not block
status changes either: the alarm is a separate state (``agent.core.emergency``).

Buttons: ``allowed`` is the list of status buttons this vehicle carries (a motorcycle may have
no ``busy``). A target outside it is refused with "no_such_button", whatever the source (panel,
touch, remote), so every input takes the same path. Every vehicle needs ``available``: it is the
only way back from out of service.

Persistence: ``state`` is a plain status code the caller stores; ``restore`` puts it back after
a restart. A restored status need not be one of the buttons (the config may have changed while
the unit was busy); the crew can always leave it through the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.config import STATUS_CODES


# The table itself: from-status -> {to-status: None (allowed) or refusal reason}.
# Every (from, to) pair with from != to is listed, so nothing is decided by omission.
TRANSITIONS: dict[str, dict[str, str | None]] = {
    "available": {
        "en_route": None,
        "on_scene": None,
        "busy": None,
        "out_of_service": None,
    },
    "en_route": {
        "available": None,
        "on_scene": None,
        "busy": None,
        "out_of_service": "must_clear_first",
    },
    "on_scene": {
        "available": None,
        "en_route": None,
        "busy": None,
        "out_of_service": "must_clear_first",
    },
    "busy": {
        "available": None,
        "en_route": None,
        "on_scene": None,
        "out_of_service": "must_clear_first",
    },
    "out_of_service": {
        "available": None,
        "en_route": "return_via_available",
        "on_scene": "return_via_available",
        "busy": "return_via_available",
    },
}

# Reason codes a refusal can carry, with a sentence for logs and screens.
REASONS: dict[str, str] = {
    "same_status": "the unit already has this status",
    "not_allowed": "this change is not allowed",
    "must_clear_first": "clear the current task (available) before going out of service",
    "return_via_available": "return to service with 'available' first",
    "no_such_button": "this vehicle has no button for this status",
    "unknown_status": "not a status code",
}


@dataclass(frozen=True, slots=True)
class Transition:
    """The answer to one request: ``accepted``, or refused with ``reason`` (a REASONS key).

    ``previous`` is the status before the request; ``status`` the one after (equal to
    ``previous`` when refused).
    """

    previous: str
    target: str
    accepted: bool
    reason: str | None = None

    @property
    def status(self) -> str:
        return self.target if self.accepted else self.previous

    @property
    def explanation(self) -> str:
        return "accepted" if self.reason is None else REASONS[self.reason]


class StatusMachine:
    """The unit's current status and the rule that moves it.

    ``StatusMachine(initial, allowed)``: ``initial`` a status code (the restored one or the
    configured default), ``allowed`` the status buttons this vehicle carries.
    """

    def __init__(self, initial: str, allowed: Iterable[str]):
        buttons = tuple(dict.fromkeys(allowed))
        unknown = [name for name in buttons if name not in STATUS_CODES]
        if unknown:
            raise ValueError(f"unknown status button(s) {unknown}; known: {list(STATUS_CODES)}")
        if "available" not in buttons:
            raise ValueError("the status buttons must include 'available': it is the only way back into service")
        _check_status(initial)
        self._allowed = frozenset(buttons)
        self._buttons = buttons
        self._state = initial

    @property
    def state(self) -> str:
        return self._state

    @property
    def buttons(self) -> tuple[str, ...]:
        return self._buttons

    def check(self, target: str) -> Transition:
        """What ``request(target)`` would answer, without changing anything."""
        current = self._state
        if target not in STATUS_CODES:
            return Transition(current, target, False, "unknown_status")
        if target not in self._allowed:
            return Transition(current, target, False, "no_such_button")
        if target == current:
            return Transition(current, target, False, "same_status")
        reason = TRANSITIONS[current].get(target, "not_allowed")
        return Transition(current, target, reason is None, reason)

    def request(self, target: str) -> Transition:
        """Ask for ``target``; the status changes only when the answer is accepted."""
        result = self.check(target)
        if result.accepted:
            self._state = result.target
        return result

    def restore(self, state: str) -> None:
        """Put back a stored status after a restart (raises ValueError if not a status code)."""
        _check_status(state)
        self._state = state

    def targets(self) -> list[str]:
        """The buttons that would be accepted now (for a touchscreen to grey out the rest)."""
        return [name for name in self._buttons if self.check(name).accepted]


def _check_status(value: str) -> None:
    if value not in STATUS_CODES:
        raise ValueError(f"unknown status {value!r}; known: {list(STATUS_CODES)}")
