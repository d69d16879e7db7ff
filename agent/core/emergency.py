"""Officer in danger: the emergency alarm raised from the panel, as a pure state machine.

The rules
=========

States: NONE, HOLDING (the button is down, not yet long enough), PENDING (raised, the
officer may still cancel), ACTIVE (only dispatch can clear it), ACKNOWLEDGED (dispatch
has seen it: help knows). Inputs: the button's press and release, the officer's cancel
(the ``ack`` button), dispatch's ack and clear, and the state's deadline passing (the hold
complete, the cancel window closed).

The machine is the table :data:`TRANSITIONS` below: for every state, what every input does
(the next state, the event, the deadline and the alarm id) and why, written beside it. Every
(state, input) pair is listed, so nothing is decided by omission. In short:

    state         input                          next          event
    NONE          press                          HOLDING       HoldStarted
    NONE, HOLDING raise_now (a crash detected)    PENDING       AlarmRaised
    HOLDING       release before hold_s          NONE          HoldAborted
    HOLDING       deadline (held for hold_s)     PENDING       AlarmRaised
    PENDING       cancel (the ``ack`` button)    NONE          AlarmCancelled
    PENDING       deadline (cancel_s elapsed)    ACTIVE        AlarmActivated
    PENDING       dispatch ack                   ACKNOWLEDGED  AlarmAcknowledged
    ACTIVE        dispatch ack                   ACKNOWLEDGED  AlarmAcknowledged
    PENDING, ACTIVE, ACKNOWLEDGED
                  dispatch clear                 NONE          AlarmCleared
    ACTIVE, ACKNOWLEDGED
                  cancel                         (unchanged)   CancelRefused
    anything else                                (unchanged)   none

To add a state or an input (a crash pre-alarm, a silent alarm): a member of
:class:`EmergencyState` or :class:`Input`, a row for it in every state's table (the table
check in ``tests/test_emergency.py`` fails on a missing pair), a method that feeds the input
(:meth:`Emergency._apply`), and an event class when something new must be published.

Why these choices
-----------------

The hold is the guard against bumps: a knee, a glove or a dropped helmet does not keep
the button down for ``hold_s`` (default 2 s), so releasing earlier does nothing at all
(HoldAborted is for the log and the touchscreen's progress ring; nothing is published).

The alarm is published at once when the hold completes (PENDING), not after the cancel
window. An officer in danger needs help seconds earlier, and the window is exactly when
the unit may be smashed, unplugged or out of coverage: an alarm that waited for the
window to close could be lost. The alarm message says ``pending`` with the end of the
window, so dispatch can start moving and knows a cancel may still follow. A cancel is
then published too: dispatch sees "raised, then cancelled by the unit" rather than
nothing, which matters when an officer is forced to cancel; they can call the unit back.
So ``alarm_out`` (PENDING, ACTIVE, ACKNOWLEDGED) is what sets ``emergency: true`` in the
status message and telemetry.

Cancelling takes the ``ack`` button (on the touchscreen, a touch on the alarm control while it
reads "cancel", posted as ``emergency_cancel``), not a second press of ``emergency``. An officer in
trouble who is unsure the alarm went out presses the red button again, and again: that
must never withdraw it, so presses of ``emergency`` while an alarm is out do nothing.
``ack`` is the other big button a gloved hand finds without looking; the pending pattern
(fast blink and beeps) tells the officer the window is open. While the window is open,
an ``ack`` press cancels the alarm and does nothing else (the caller must not also treat
it as accepting a call).

Dispatch acknowledging during the window ends the window: once a dispatcher has acted
on the alarm, only dispatch may clear it. Dispatch may clear at any point (including a
pending alarm it has resolved by radio).

Alarm ids: each raise takes a new id from ``new_id`` (a random UUID on a real unit, see
:mod:`agent.core.alarm_id`), kept in the snapshot while the alarm is out. No two alarms
share an id, across restarts, units and reinstalls. ``dispatch_ack``/``dispatch_clear``
name the alarm they mean; one naming another alarm is ignored, so a stale or replayed
answer can never touch a new alarm, with or without a clock. ``None`` means the current
alarm: only an unsigned unit takes that (:mod:`agent.core.signed_dispatch` refuses a signed
answer that does not name its alarm).

Time: every method takes ``now``, monotonic seconds. Deadlines are processed lazily
and exactly: each call first applies every deadline that has passed by ``now``, stamping
the event with the deadline's time, so a late ``tick`` neither lengthens the hold nor
the window. The caller wakes up at ``next_deadline()`` and calls ``tick(now)``.

Restarts and power loss: ``snapshot()`` is a small JSON-able dict the caller stores on
every change; ``restore(data, now)`` puts it back. A live alarm survives. A PENDING alarm
restored after a restart comes back ACTIVE: the power went during the window, maybe
pulled by someone else, and the officer had the chance to cancel before. A hold in
progress does not survive (the finger is not on the button after a reboot). A snapshot of
the first version (numbered ids, before an update) is still read: its live alarm comes back
with a new id, since a number can no longer name it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

SNAPSHOT_VERSION = 2


class EmergencyState(StrEnum):
    NONE = "none"
    HOLDING = "holding"
    PENDING = "pending"
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"


# States in which the alarm has gone out (published, ``emergency: true``).
ALARM_OUT = frozenset({EmergencyState.PENDING, EmergencyState.ACTIVE, EmergencyState.ACKNOWLEDGED})


@dataclass(frozen=True, slots=True)
class EmergencyEvent:
    """Something that happened to the alarm. ``state`` is the state after it; ``at`` when
    it happened (monotonic seconds; for a deadline, the deadline itself)."""

    at: float
    state: EmergencyState
    alarm_id: str | None


@dataclass(frozen=True, slots=True)
class HoldStarted(EmergencyEvent):
    raise_at: float  # when the alarm goes out if the button stays down


@dataclass(frozen=True, slots=True)
class HoldAborted(EmergencyEvent):
    held_s: float


@dataclass(frozen=True, slots=True)
class AlarmRaised(EmergencyEvent):
    cancel_until: float  # end of the cancel window (== at when there is none)


@dataclass(frozen=True, slots=True)
class AlarmCancelled(EmergencyEvent):
    pass


@dataclass(frozen=True, slots=True)
class AlarmActivated(EmergencyEvent):
    pass


@dataclass(frozen=True, slots=True)
class AlarmAcknowledged(EmergencyEvent):
    pass


@dataclass(frozen=True, slots=True)
class AlarmCleared(EmergencyEvent):
    pass


@dataclass(frozen=True, slots=True)
class AlarmRestored(EmergencyEvent):
    """A live alarm put back after a restart: publish it again."""


@dataclass(frozen=True, slots=True)
class CancelRefused(EmergencyEvent):
    """The officer tried to cancel after the window: play the refused pattern."""


# ------------------------------------------------------------------ the table


class Input(StrEnum):
    PRESS = "press"  # the emergency button went down (panel or touch)
    RELEASE = "release"  # it came up
    CANCEL = "cancel"  # the officer's cancel: the ``ack`` button, the touchscreen's alarm control
    DISPATCH_ACK = "dispatch_ack"  # ``alarm/ack``, naming the alarm (or none, on an unsigned unit)
    DISPATCH_CLEAR = "dispatch_clear"  # ``alarm/clear``, likewise
    DEADLINE = "deadline"  # the state's deadline passed: the hold complete, the cancel window closed


@dataclass(frozen=True, slots=True)
class Rule:
    """What an input does in a state, and why.

    ``to``: the next state (None: unchanged). ``event``: what is reported (None: nothing).
    ``deadline``: ``"hold"`` starts the hold (``hold_s`` from now), ``"window"`` the cancel
    window (``cancel_s`` from the input's time), ``"clear"`` stops the running one, ``"keep"``
    leaves it. ``new_alarm``: the alarm gets a new id. ``ends``: the alarm (or the hold) is over;
    everything is reset. ``named``: a dispatch answer, applied only when it names this alarm
    (an answer naming another alarm is ignored, whatever the rule says).
    """

    to: EmergencyState | None
    event: type[EmergencyEvent] | None
    why: str
    deadline: str = "keep"
    new_alarm: bool = False
    ends: bool = False
    named: bool = False


def _stay(why: str, event: type[EmergencyEvent] | None = None, **effects: Any) -> Rule:
    return Rule(None, event, why, **effects)


S, I = EmergencyState, Input
_NO_DEADLINE = "no deadline runs in this state"

TRANSITIONS: dict[EmergencyState, dict[Input, Rule]] = {
    S.NONE: {
        I.PRESS: Rule(S.HOLDING, HoldStarted, deadline="hold", why=(
            "the hold starts; nothing is published yet: a bump must never become an alarm")),
        I.RELEASE: _stay("no hold in progress"),
        I.CANCEL: _stay("no alarm to cancel (the caller refuses the press and says why)"),
        I.DISPATCH_ACK: _stay("no alarm out: an answer to an alarm that is over changes nothing"),
        I.DISPATCH_CLEAR: _stay("no alarm out: an answer to an alarm that is over changes nothing"),
        I.DEADLINE: _stay(_NO_DEADLINE, deadline="clear"),
    },
    S.HOLDING: {
        I.PRESS: _stay("a second press while holding (touch and panel at once) does not restart the hold"),
        I.RELEASE: Rule(S.NONE, HoldAborted, ends=True, why=(
            "let go before hold_s: a knee, a glove or a dropped helmet does not keep the button down that "
            "long; nothing is published (HoldAborted is for the log and the screens' progress ring)")),
        I.CANCEL: _stay("nothing is out yet: letting go of the button is how a hold is given up"),
        I.DISPATCH_ACK: _stay("nothing is out yet: there is no alarm for dispatch to answer"),
        I.DISPATCH_CLEAR: _stay("nothing is out yet: there is no alarm for dispatch to answer"),
        I.DEADLINE: Rule(S.PENDING, AlarmRaised, deadline="window", new_alarm=True, why=(
            "held for hold_s: the alarm goes out at once, before the cancel window, since the window is "
            "exactly when the unit may be smashed, unplugged or out of coverage; it says pending with the "
            "window's end, so dispatch can start moving and knows a cancel may follow")),
    },
    S.PENDING: {
        I.PRESS: _stay("the alarm is out: another press must never change it, least of all withdraw it"),
        I.RELEASE: _stay("letting go after the alarm went out changes nothing"),
        I.CANCEL: Rule(S.NONE, AlarmCancelled, ends=True, why=(
            "the officer cancels inside the window (the ack button a gloved hand finds without looking); "
            "the cancel is published too, so dispatch sees 'raised, then cancelled by the unit' and can call "
            "back an officer forced to cancel")),
        I.DISPATCH_ACK: Rule(S.ACKNOWLEDGED, AlarmAcknowledged, deadline="clear", named=True, why=(
            "dispatch has acted on the alarm: the window is over, from now on only dispatch may end it")),
        I.DISPATCH_CLEAR: Rule(S.NONE, AlarmCleared, ends=True, named=True, why=(
            "dispatch may clear at any point, including a pending alarm it resolved by radio")),
        I.DEADLINE: Rule(S.ACTIVE, AlarmActivated, deadline="clear", why=(
            "the window closed without a cancel: only dispatch can end the alarm now")),
    },
    S.ACTIVE: {
        I.PRESS: _stay("the alarm is out: another press must never change it, least of all withdraw it"),
        I.RELEASE: _stay("letting go changes nothing"),
        I.CANCEL: _stay("after the window the officer cannot cancel (someone may be forcing them): "
                        "refused, with the refused pattern", CancelRefused),
        I.DISPATCH_ACK: Rule(S.ACKNOWLEDGED, AlarmAcknowledged, named=True, why=(
            "dispatch has seen the alarm: the officer's panel shows that help knows")),
        I.DISPATCH_CLEAR: Rule(S.NONE, AlarmCleared, ends=True, named=True, why=(
            "dispatch ends the alarm; emergency goes false in status and telemetry")),
        I.DEADLINE: _stay(_NO_DEADLINE, deadline="clear"),
    },
    S.ACKNOWLEDGED: {
        I.PRESS: _stay("the alarm is out: another press must never change it, least of all withdraw it"),
        I.RELEASE: _stay("letting go changes nothing"),
        I.CANCEL: _stay("only dispatch may end an alarm it has acknowledged: refused", CancelRefused),
        I.DISPATCH_ACK: _stay("acknowledged twice is acknowledged once: a copy or a re-delivery changes nothing"),
        I.DISPATCH_CLEAR: Rule(S.NONE, AlarmCleared, ends=True, named=True, why=(
            "dispatch ends the alarm it acknowledged")),
        I.DEADLINE: _stay(_NO_DEADLINE, deadline="clear"),
    },
}
del S, I


# ----------------------------------------------------------------- the machine


class Emergency:
    """The alarm of one unit: :data:`TRANSITIONS` applied to its inputs. See the module docstring."""

    def __init__(self, hold_s: float = 2.0, cancel_s: float = 5.0, *, new_id: Callable[[], str]):
        if not hold_s > 0:
            raise ValueError(f"hold_s must be > 0, not {hold_s!r}")
        if not cancel_s >= 0:
            raise ValueError(f"cancel_s must be >= 0, not {cancel_s!r}")
        self.hold_s = float(hold_s)
        self.cancel_s = float(cancel_s)
        self._state = EmergencyState.NONE
        self._pressed_at: float | None = None
        self._deadline: float | None = None
        self._alarm_id: str | None = None
        self._new_id = new_id

    # ------------------------------------------------------------- reading

    @property
    def state(self) -> EmergencyState:
        return self._state

    @property
    def alarm_id(self) -> str | None:
        """The id of the alarm that is out, else None."""
        return self._alarm_id

    @property
    def alarm_out(self) -> bool:
        """The alarm has been published and not cleared or cancelled."""
        return self._state in ALARM_OUT

    @property
    def cancellable(self) -> bool:
        """An ``ack`` press now would cancel the alarm (the caller checks this first)."""
        return TRANSITIONS[self._state][Input.CANCEL].ends

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do (monotonic seconds), or None."""
        return self._deadline

    # -------------------------------------------------------------- inputs

    def press(self, now: float) -> list[EmergencyEvent]:
        """The emergency button went down (panel or touch)."""
        return self._advance(now) + self._apply(Input.PRESS, now)

    def raise_now(self, now: float, cancel_s: float) -> list[EmergencyEvent]:
        """Raise the alarm without a hold (a crash detected, agent/core/officer_down.py), with its own
        cancel window ``cancel_s``. From NONE, or HOLDING (a hold in progress ends in this alarm);
        an alarm already out stays as it is."""
        events = self._advance(now)
        if self._state in (EmergencyState.NONE, EmergencyState.HOLDING):
            self._alarm_id = self._new_id()
            self._state = EmergencyState.PENDING
            self._pressed_at = None
            self._deadline = now + max(0.0, cancel_s)
            events.append(AlarmRaised(now, self._state, self._alarm_id, self._deadline))
        return events

    def release(self, now: float) -> list[EmergencyEvent]:
        """The emergency button came up."""
        return self._advance(now) + self._apply(Input.RELEASE, now)

    def cancel(self, now: float) -> list[EmergencyEvent]:
        """The officer's cancel (the ``ack`` button): only inside the window."""
        return self._advance(now) + self._apply(Input.CANCEL, now)

    def dispatch_ack(self, now: float, alarm_id: str | None = None) -> list[EmergencyEvent]:
        """Dispatch has seen the alarm (``alarm/ack``)."""
        return self._advance(now) + self._apply(Input.DISPATCH_ACK, now, alarm_id)

    def dispatch_clear(self, now: float, alarm_id: str | None = None) -> list[EmergencyEvent]:
        """Dispatch ends the alarm (``alarm/clear``)."""
        return self._advance(now) + self._apply(Input.DISPATCH_CLEAR, now, alarm_id)

    def tick(self, now: float) -> list[EmergencyEvent]:
        """Time passed: apply the deadlines due by ``now``."""
        return self._advance(now)

    # ---------------------------------------------------------- persistence

    def snapshot(self) -> dict[str, Any]:
        """What to store so the alarm survives a restart (JSON-able)."""
        state = self._state if self._state in ALARM_OUT else EmergencyState.NONE
        return {
            "version": SNAPSHOT_VERSION,
            "state": state.value,
            "alarm_id": self._alarm_id if state in ALARM_OUT else None,
        }

    def restore(self, data: dict[str, Any], now: float) -> list[EmergencyEvent]:
        """Put a snapshot back after a restart; raises ValueError on a malformed one.

        Returns ``[AlarmRestored]`` when an alarm is live (republish it), else ``[]``.
        """
        state, alarm_id = _parse_snapshot(data)
        self._reset()
        if state is EmergencyState.NONE or state is EmergencyState.HOLDING:
            return []  # a hold in progress does not survive: the finger is not on the button after a reboot
        # A pending alarm interrupted by a restart comes back active: the power went during the window,
        # maybe pulled by someone else, and the officer had the chance to cancel before.
        self._state = EmergencyState.ACTIVE if state is EmergencyState.PENDING else state
        self._alarm_id = alarm_id if alarm_id is not None else self._new_id()
        return [AlarmRestored(now, self._state, self._alarm_id)]

    # ------------------------------------------------------------ internals

    def _advance(self, now: float) -> list[EmergencyEvent]:
        """Every deadline due by ``now``, in order, each stamped with its own time (so a late tick
        neither lengthens the hold nor the window)."""
        events: list[EmergencyEvent] = []
        while self._deadline is not None and now >= self._deadline:
            events += self._apply(Input.DEADLINE, self._deadline)
        return events

    def _apply(self, given: Input, at: float, alarm_id: str | None = None) -> list[EmergencyEvent]:
        """The input ``given`` at ``at``, as the table says."""
        rule = TRANSITIONS[self._state][given]
        if rule.named and not (alarm_id is None or alarm_id == self._alarm_id):
            return []  # an answer naming another alarm: a stale or replayed one never touches this one
        held = at - self._pressed_at if self._pressed_at is not None else 0.0
        if rule.new_alarm:
            self._alarm_id = self._new_id()
        if rule.deadline == "hold":
            self._pressed_at, self._deadline = at, at + self.hold_s
        elif rule.deadline == "window":
            self._pressed_at, self._deadline = None, at + self.cancel_s
        elif rule.deadline == "clear":
            self._deadline = None
        if rule.to is not None:
            self._state = rule.to
        events = [] if rule.event is None else [self._event(rule.event, at, held)]
        if rule.ends:
            self._reset()
        return events

    def _event(self, kind: type[EmergencyEvent], at: float, held: float) -> EmergencyEvent:
        """The event ``kind`` after the transition (the alarm's id before a reset, as reported)."""
        if kind is HoldStarted:
            return HoldStarted(at, self._state, None, raise_at=self._deadline)  # type: ignore[arg-type]
        if kind is HoldAborted:
            return HoldAborted(at, self._state, None, held_s=held)
        if kind is AlarmRaised:
            return AlarmRaised(at, self._state, self._alarm_id, cancel_until=self._deadline)  # type: ignore[arg-type]
        return kind(at, self._state, self._alarm_id)

    def _reset(self) -> None:
        self._state = EmergencyState.NONE
        self._pressed_at = None
        self._deadline = None
        self._alarm_id = None


def _parse_snapshot(data: Any) -> tuple[EmergencyState, str | None]:
    """The state and the alarm id; a first-version snapshot's numbered id comes back as None
    (the caller gives the live alarm a new id)."""
    if not isinstance(data, dict):
        raise ValueError(f"emergency snapshot must be a dict, not {type(data).__name__}")
    version = data.get("version")
    if version not in (1, SNAPSHOT_VERSION):
        raise ValueError(f"emergency snapshot version {version!r} is not 1 or {SNAPSHOT_VERSION}")
    try:
        state = EmergencyState(data.get("state"))
    except ValueError:
        raise ValueError(f"emergency snapshot state {data.get('state')!r} is not one of "
                         f"{[s.value for s in EmergencyState]}") from None
    alarm_id = data.get("alarm_id")
    if version == 1:
        _check_numbered(state, alarm_id, data.get("last_id"))
        return state, None
    if state in ALARM_OUT:
        if not isinstance(alarm_id, str) or not 0 < len(alarm_id) <= 64:
            raise ValueError(f"emergency snapshot alarm_id {alarm_id!r} is not an alarm id")
    elif alarm_id is not None:
        raise ValueError(f"emergency snapshot has alarm_id {alarm_id!r} but no alarm")
    return state, alarm_id


def _check_numbered(state: EmergencyState, alarm_id: Any, last_id: Any) -> None:
    """The first version's rules: ids counted from 1 up to ``last_id``."""
    if type(last_id) is not int or last_id < 0:
        raise ValueError(f"emergency snapshot last_id {last_id!r} is not a non-negative integer")
    if state in ALARM_OUT:
        if type(alarm_id) is not int or not 0 < alarm_id <= last_id:
            raise ValueError(f"emergency snapshot alarm_id {alarm_id!r} is not an id up to last_id {last_id}")
    elif alarm_id is not None:
        raise ValueError(f"emergency snapshot has alarm_id {alarm_id!r} but no alarm")
