"""The unit: every rule of the agent in one pure state machine.

:class:`Unit` takes one event at a time (a fix, a button, a message from the
broker, the passing of time) with the current time, updates its state and
returns what the shell must do: :class:`~agent.core.publish.Publish` records
and a few other effects. It opens nothing and starts nothing, so every rule
below is tested by feeding events and reading effects.

How the parts fit:

* status (:mod:`.status`): a status button, a touch or a call response asks
  for a status; a change is published on ``status`` (retained) at once and
  carried in every telemetry report.
* emergency (:mod:`.emergency`): holding ``emergency`` raises the alarm,
  published on ``alarm`` (retained, emergency lane) and flagged in status and
  telemetry; ``ack`` cancels it inside the cancel window; dispatch
  acknowledges and clears it on ``alarm/ack`` and ``alarm/clear``.
* calls (:mod:`.dispatch`): a call on ``call`` is validated, shown, and
  answered ``received`` at once; the crew's answers (``ack`` = accepted,
  ``decline``, status buttons, ``cleared``) go out on ``call/response`` and
  move the status where they should.
* telemetry (:mod:`.telemetry`): one report per slot at ``rate_hz``, built
  when a GNSS epoch completes if one does, with a contiguous ``seq``.
* remote config and commands (:mod:`.remote_config`) are judged by that
  module and carried out by the runtime; the unit takes a hot config change
  through :meth:`Unit.reconfigure`.
* the crash sensor and the silent emergency (:mod:`.officer_down`): a severe
  crash or a rider down raises the alarm with its own cancel window and
  ``"reason": "crash"``, a minor one shows a prompt; every finding stores a
  crash trace (``crash/trace``, backlog lane); the silent gesture raises an
  alarm nothing on the unit shows.

All "inputs" take the same path whatever their source (panel, touch,
remote): the panel is one input among several.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import STATUS_CODES, AgentConfig

from . import alarm_id, inbound_text
from .call import Call, CallAge, call_age
from .dispatch import (
    READ_FIRST, Alert, CallBook, Cancelled, Ignored, Rejected, Response, ResponseRefused, Updated, iso,
)
from .effects import Effect, Feedback, Shutdown, Speak
from .crash_watch import CrashTrace
from .effects import Announce, StoreCrashTrace
from .emergency import (
    AlarmAcknowledged, AlarmActivated, AlarmCancelled, AlarmCleared, AlarmRaised, AlarmRestored, CancelRefused,
    Emergency, EmergencyEvent, EmergencyState, HoldAborted,
)
from .messages import Alarm, AlarmRejected, CallRejected, CallResponse, CrashTraceMessage, Status, Telemetry, validate_alarm_ref
from .events import (
    ButtonPressed, ButtonReleased, DispatchRefused, Event, Fix, FixReceived, GnssLost, GnssRestored, IgnitionChanged,
    ImuSamples, ImuState, LinkDown, LinkUp,
    MessageReceived, SirenChanged, StorageChanged, Tick,
)
from .inbound import DISPATCH_TOPICS, SUBSCRIPTIONS  # noqa: F401 - SUBSCRIPTIONS: the unit's topics, named here too
from .officer_down import OfficerDown, Raise, Show, Store
from .power import Parking
from .publish import Lane, Publish
from .status import StatusMachine
from . import telemetry_cbor
from .telemetry import FIX_STALE_S, TRUSTED_TIME_SOURCES, ReportSchedule, TimeBase, fix_json

CALL_INPUTS = ("ack", "decline", "cleared")
# Samples in one crash/trace message: at most ~40 kB, well under the fleet broker's 64 KiB packets.
TRACE_PART_SAMPLES = 800
ENDED_ALARMS_KEPT = 16


@dataclass(frozen=True, slots=True)
class Now:
    """The time of an event: monotonic seconds, and the system's UTC clock."""

    mono: float
    wall: dt.datetime
    wall_synced: bool = True


@dataclass(frozen=True, slots=True)
class Notice:
    """A short message for the crew's screen (a refused press, a cancelled call)."""

    kind: str
    detail: str
    mono: float
    subject: str = ""  # what it is about (the cancelled call's nature)
    ref: str = ""  # the cancelled call's id
    place: str = ""  # and its address: another call of the same nature must not be mistaken for it


@dataclass
class Counters:
    reports: int = 0
    calls: int = 0
    calls_rejected: int = 0
    presses_refused: int = 0
    messages_ignored: int = 0
    dispatch_refused: int = 0  # signed dispatch: unsigned, badly signed, expired (answered)


@dataclass
class Unit:
    config: AgentConfig
    next_seq: int
    now: Now
    config_version: int = 0
    # A new alarm id at each raise (agent.core.alarm_id): random on a real unit, drawn by the shell.
    alarm_ids: Callable[[], str] = field(kw_only=True, repr=False)
    status: StatusMachine = field(init=False)
    emergency: Emergency = field(init=False)
    calls: CallBook = field(default_factory=CallBook)
    schedule: ReportSchedule = field(init=False)
    timebase: TimeBase = field(default_factory=TimeBase)
    siren: bool = False
    parking: Parking = field(default_factory=Parking)
    link_up: bool = False
    link_since: float | None = None  # monotonic time of the last link change (None: down since the start)
    # Whether what the unit keeps reaches its card, and why not (agent/storage_health.py): said in status.
    durable: bool = True
    durable_reason: str | None = None
    gnss_lost: bool = False
    last_epoch: Fix | None = None
    last_epoch_mono: float | None = None
    last_valid: Fix | None = None
    last_valid_mono: float | None = None
    notice: Notice | None = None
    status_since: dt.datetime | None = None  # when the current status was set (None: before this run)
    counters: Counters = field(default_factory=Counters)
    # The last alarms that ended in this run: an answer naming one is a late copy, not a stranger.
    ended_alarms: deque[str] = field(default_factory=lambda: deque(maxlen=ENDED_ALARMS_KEPT))
    revision: int = 0  # bumped on every change a screen or LED shows
    officer: OfficerDown = field(init=False)
    _status_sent: tuple[Any, ...] | None = field(default=None, init=False, repr=False)
    _fix_shown: bool = field(default=False, init=False, repr=False)
    started_mono: float = field(default=0.0, init=False)  # when this run began (monotonic)

    def __post_init__(self) -> None:
        self.started_mono = self.now.mono
        panel = self.config.panel
        self.status = StatusMachine(panel.default_status, self.config.status_buttons)
        self.emergency = Emergency(panel.emergency_hold_s, panel.emergency_cancel_s, new_id=self.alarm_ids)
        self.officer = OfficerDown(self.config, self.alarm_ids)
        self.schedule = ReportSchedule.start(self.config.telemetry.rate_hz, self.now.mono)
        self._status_sent = self._status_key()

    # ------------------------------------------------------------ restart

    def restore_fix(self, fix: Fix, age_s: float, now: Now) -> None:
        """The last valid fix a previous run stored, ``age_s`` old now (agent/core/last_fix.py).

        Reported as the last known position, its age growing, until a new fix comes; it is
        not the unit's fix now (``mode`` 1, ``receiver`` says why) and gives no time."""
        if self.last_valid is None and fix.valid:
            self.last_valid, self.last_valid_mono = fix, now.mono - max(0.0, age_s)
            self.revision += 1

    def last_fix_utc(self, now: Now) -> dt.datetime | None:
        """The UTC of the last valid fix: its own when the receiver gave a date, else the unit's best clock then."""
        if self.last_valid is None or self.last_valid_mono is None:
            return None
        return self.last_valid.timestamp or self.best_time(now)[0] - dt.timedelta(seconds=now.mono - self.last_valid_mono)

    def restore(self, state: dict[str, Any], now: Now) -> list[Any]:
        """Put back what a previous run stored; returns what must be re-published."""
        out: list[Any] = []
        if state.get("status") in STATUS_CODES:
            self.status.restore(state["status"])
            self.status_since = _parse_iso(state.get("status_since"))
        if "calls" in state:
            self.calls = CallBook.restore(state["calls"], now.mono)
            # A call stored before its receipt went out gets its receipt now.
            for call in list(self.calls.calls.values()):
                if call.state == "new":
                    self._respond("received", now, out, call.id)
        # Last, so the status republished with a live alarm carries the restored status and call
        # (and what it said: a silent alarm stays silent, a crash alarm keeps its summary).
        if "emergency" in state:
            self.officer.restore(state.get("alarm"))
            self._emergency_events(self.emergency.restore(state["emergency"], now.mono), now, out)
            if not self.emergency.alarm_out:
                self.officer.ended()
        self._status_sent = self._status_key()  # the broker keeps the last one; LinkUp republishes it
        self.revision += 1
        return out

    def persistent_state(self) -> dict[str, Any]:
        """What must survive a restart or a power cut (stored on every change)."""
        return {
            "status": self.status.state,
            "status_since": iso(self.status_since) if self.status_since else None,
            "emergency": self.emergency.snapshot(),
            "alarm": self.officer.snapshot(),
            "calls": self.calls.snapshot(),
        }

    def reconfigure(self, config: AgentConfig, now: Now) -> None:
        """Take a hot config change: report rate, status buttons, timings, labels, language.

        The status, an alarm in progress and the calls are kept; a status the
        vehicle no longer has a button for stays until the crew changes it.
        """
        old, self.config = self.config, config
        if (config.telemetry.rate_hz, config.power.parked_rate_hz) != (old.telemetry.rate_hz,
                                                                      old.power.parked_rate_hz):
            self.schedule.set_rate(self.report_rate_hz, now.mono)
        if config.status_buttons != old.status_buttons:
            self.status = StatusMachine(self.status.state, config.status_buttons)
        self.emergency.hold_s = config.panel.emergency_hold_s
        self.emergency.cancel_s = config.panel.emergency_cancel_s
        self.officer.reconfigure(config)
        self.revision += 1

    # ------------------------------------------------------------- events

    def handle(self, event: Event, now: Now) -> list[Effect]:
        self.now = now
        out: list[Effect] = []
        # The alarm is timed by the events' own times (a button's edge), not by when the core got to
        # them: a press and release queued while the core was busy (at start, the screens take
        # seconds) are a hold of their real length, and an ack inside the window cancels even if
        # handled after it. Deadlines first, up to the event's time, so it meets up-to-date state.
        at = min(getattr(event, "mono", now.mono), now.mono)
        self._emergency_events(self.emergency.tick(at), now, out)
        self._officer_tick(now, out)
        match event:
            case FixReceived(fix=fix, mono=mono):
                self._on_fix(fix, mono, now, out)
            case ImuSamples(samples=samples):
                self._on_imu(samples, now, out)
            case ImuState(state=sensor, detail=detail) if self.officer.watch is not None:
                self.officer.watch.sensor, self.officer.watch.sensor_detail = sensor, detail
                self.revision += 1
            case GnssLost():
                self.gnss_lost = True
                self.revision += 1
            case GnssRestored():
                self.gnss_lost = False
                self.revision += 1
            case ButtonPressed(name=name, source=source):
                self._on_press(name, source, now, out, at)
            case ButtonReleased(name="emergency"):
                self._emergency_events(self.emergency.release(at), now, out)
            case ButtonReleased(name="silent_emergency") if self.config.panel.silent_gesture == "input":
                self._emergency_events(self.emergency.release(at), now, out)
            case SirenChanged(on=on) if on != self.siren:
                self.siren = on
                out.append(self._status_message(now))
            case IgnitionChanged(on=on) if on != self.parking.ignition:
                self.parking.ignition = on
                if self.officer.watch is not None:
                    self.officer.watch.on_ignition(on)
                self.revision += 1
            case LinkUp():
                self.link_up = True
                self.link_since = now.mono
                self.revision += 1
                out.append(self._status_message(now))
                if self.emergency.alarm_out:
                    out.append(self._alarm_message(self.emergency.state.value, now))
            case LinkDown():
                self.link_up = False
                self.link_since = now.mono
                self.revision += 1
            case MessageReceived(topic=topic, verified=False) if (
                    topic in DISPATCH_TOPICS and self.config.security.dispatch_keys):
                # Signed dispatch is on: only what the remote-request worker verified gets here.
                self._refuse_dispatch(topic, None, "sig: not verified by this unit", now, out)
            case MessageReceived(topic=topic, payload=payload):
                self._on_message(topic, payload, now, out)
            case DispatchRefused(topic=topic, id=ref, error=error):
                self._refuse_dispatch(topic, ref, error, now, out)
            case StorageChanged(durable=durable, reason=reason):
                # The status message says it (its key below changes): dispatch knows what may not survive.
                self.durable, self.durable_reason = durable, (None if durable else reason)
                self.revision += 1
            case Tick():
                pass
        if self.has_fix(now.mono) != self._fix_shown:
            # The fix went stale with no event to say so: the GNSS LED and the screens change.
            self._fix_shown = not self._fix_shown
            self.revision += 1
        self._update_parking(now, out)
        if self._status_key() != self._status_sent:
            # Something the status message carries changed without one (the call: new, accepted,
            # cancelled...): the retained status must not go stale.
            out.append(self._status_message(now))
        if self.schedule.on_time(now.mono):
            out.append(self.report(now))
        return out

    def next_deadline(self) -> float:
        deadlines = [self.schedule.deadline()]
        if (parked := self.parking.shutdown_deadline(self.config.power.shutdown_after_s)) is not None:
            deadlines.append(parked)
        if (alarm := self.emergency.next_deadline()) is not None:
            deadlines.append(alarm)
        if (officer := self.officer.next_deadline()) is not None:
            deadlines.append(officer)
        return min(deadlines)

    # -------------------------------------------------------------- power

    @property
    def parked(self) -> bool:
        """Ignition off and nothing to do: reports at the parked rate (agent/core/power.py)."""
        return self.parking.parked_since is not None

    @property
    def report_rate_hz(self) -> float:
        return self.config.power.parked_rate_hz if self.parked else self.config.telemetry.rate_hz

    def _update_parking(self, now: Now, out: list[Any]) -> None:
        busy = self.calls.shown() is not None or self.emergency.state.value != "none" or self.officer.prompt is not None
        if self.parking.update(self.parking.is_parked(self.status.state, busy), now.mono):
            self.schedule.set_rate(self.report_rate_hz, now.mono)
            self.revision += 1
        if self.parking.shutdown_due(self.config.power.shutdown_after_s, now.mono):
            out.append(Shutdown("ignition"))

    # --------------------------------------------------------------- GNSS

    def _on_fix(self, fix: Fix, mono: float, now: Now, out: list[Any]) -> None:
        was_fix = self.has_fix(mono)
        self.last_epoch, self.last_epoch_mono = fix, mono
        self.gnss_lost = False
        if self.officer.watch is not None:
            self.officer.watch.on_fix(fix, mono)
        if fix.valid:
            self.last_valid, self.last_valid_mono = fix, mono
            self.timebase.on_fix(fix, mono)
        if was_fix != self.has_fix(mono) or fix.valid:
            self.revision += 1  # the screens show position and distance
        if self.schedule.on_fix(mono):
            out.append(self.report(now))

    def current_mode(self, mono: float) -> int:
        if self.gnss_lost or self.last_epoch is None or self.last_epoch_mono is None:
            return 1
        if mono - self.last_epoch_mono > FIX_STALE_S:
            return 1
        return max(1, self.last_epoch.mode) if self.last_epoch.valid else 1

    def has_fix(self, mono: float) -> bool:
        return self.current_mode(mono) >= 2

    # ------------------------------------------------------------- inputs

    def _on_press(self, name: str, source: str, now: Now, out: list[Any], at: float) -> None:
        gesture = self.config.panel.silent_gesture
        if name == "emergency":
            self._emergency_events(self.emergency.press(at), now, out)
        elif name == "silent_emergency" and gesture == "input":
            # The hidden switch: a hold like the emergency button's, silent from the first moment.
            if self.emergency.state is EmergencyState.NONE:
                self.officer.silent_hold = True
            self._emergency_events(self.emergency.press(at), now, out)
        elif name == "ack" and source != "touch" and gesture == "emergency+ack" and \
                self.emergency.state is EmergencyState.HOLDING:
            # ``ack`` joining a held ``emergency``: the silent emergency. No chirp, no beep, nothing shown.
            self.officer.silent_hold = True
            self.revision += 1
        elif name == "ack":
            # The panel's ``ack`` is also its alarm cancel. The touchscreen has a control of its
            # own for that ("emergency_cancel"): there ``ack`` is the "accept" button and only accepts.
            panel = source != "touch"
            if panel and self.emergency.cancellable:
                self._emergency_events(self.emergency.cancel(at), now, out)
            elif panel and self.officer.dismiss():
                self.revision += 1  # the crash prompt answered: the rider is conscious
                out.append(Feedback("accepted"))
            elif self._respond("accepted", now, out):
                out.append(Feedback("accepted"))
            elif self.calls.unread(now.mono):
                # The call took the screen a moment ago: this press began before it could be read.
                self._refuse("not_read", now, out)
            elif panel and self.emergency.alarm_out:
                # Nothing to accept: the officer is trying to cancel after the window (refused, and why).
                self._emergency_events(self.emergency.cancel(at), now, out)
            else:
                self._refuse("no_call", now, out)
        elif name == "emergency_cancel":
            # The touchscreen's alarm control during the cancel window ("touch to cancel"): the
            # same rule as ``ack`` but never anything else, so a tap that lands after the window
            # closed is refused and cannot accept a call instead.
            if self.emergency.alarm_out:
                self._emergency_events(self.emergency.cancel(at), now, out)
            elif self.officer.dismiss():
                self.revision += 1
                out.append(Feedback("accepted"))
            else:
                self._refuse("no_alarm", now, out)
        elif name == "decline":
            self._answer("declined", now, out)
        elif name == "cleared":
            # Clears the call being worked, not a new one waiting on the screen.
            working = self.calls.working()
            self._answer("cleared", now, out, working.id if working else None)
        elif name in STATUS_CODES:
            self._set_status(name, now, out, from_crew=True)
        else:
            self._refuse("unknown_input", now, out)

    def _set_status(self, target: str, now: Now, out: list[Any], *, from_crew: bool) -> bool:
        result = self.status.request(target)
        if not result.accepted:
            if from_crew:
                self._refuse(result.reason or "not_allowed", now, out)
            return False
        self.status_since = now.wall
        if from_crew:
            # The crew's status also answers the call they are working (not one waiting to be accepted).
            # Answered first, so the status message shows the call as it now is.
            call = self.calls.working()
            if call is not None:
                response = {"en_route": "en_route", "on_scene": "on_scene", "available": "cleared"}.get(target)
                if response:
                    self._respond(response, now, out, call.id, set_status=False)
        out.append(self._status_message(now))
        if from_crew:
            out.append(Feedback("accepted"))  # one answer to one press
        return True

    def _answer(self, response: str, now: Now, out: list[Any], call_id: str | None = None) -> None:
        """A press that answers a call (ack, decline, cleared): accepted, or refused when there is none."""
        if self._respond(response, now, out, call_id):
            out.append(Feedback("accepted"))
        elif response in READ_FIRST and self.calls.unread(now.mono, call_id):
            self._refuse("not_read", now, out)  # the call took the screen a moment ago
        else:
            self._refuse("no_call", now, out)

    def _refuse(self, reason: str, now: Now, out: list[Any]) -> None:
        self.counters.presses_refused += 1
        self.notice = Notice("refused", reason, now.mono)
        self.revision += 1
        out.append(Feedback("refused"))

    # -------------------------------------------------------------- calls

    def _respond(self, response: str, now: Now, out: list[Any], call_id: str | None = None, *, set_status: bool = True) -> bool:
        result = self.calls.respond(response, call_id, now.mono)
        if isinstance(result, ResponseRefused):
            return False
        assert isinstance(result, Response)
        extra: dict[str, Any] = {}
        if response == "received":
            # How old the call was on arrival, on trusted time only (null: unverified).
            age = self.call_age(result.call, now)
            extra = {"age_s": age.age_s, "stale": age.stale}
        out.append(self._message("call/response", CallResponse(
            id=result.call.id, response=response, ts=self._ts(now), fix=self.fix(now), time_source=self.time_source(now),
            **extra,
        ).to_json(), Lane.STATUS))
        if set_status and result.status is not None:
            self._set_status(result.status, now, out, from_crew=False)
        self.revision += 1
        return True

    def _on_call(self, payload: bytes, now: Now, out: list[Any]) -> None:
        outcome = self.calls.receive(payload, now.wall, now.mono)
        match outcome:
            case Rejected(id=call_id, error=error):
                self.counters.calls_rejected += 1
                out.append(self._rejected(CallRejected, call_id, error, now))
            case Alert(call=call):
                self.counters.calls += 1
                self._respond("received", now, out, call.id)
                if self.config.display.speech:
                    out.append(Speak(call.id))
            case Updated():
                self.revision += 1
            case Cancelled(call=call, reason=reason) if call is not None:
                self.notice = Notice("cancelled", reason or "", now.mono, call.nature, call.id, call.address)
                self.revision += 1
            case Cancelled():
                pass  # cancelled before it arrived: the crew never saw it, nothing to tell them
            case Ignored():
                self.counters.messages_ignored += 1

    # ----------------------------------------------------------- messages

    def _refuse_dispatch(self, topic: str, ref: str | None, error: str, now: Now, out: list[Any]) -> None:
        """A dispatch message that failed the signed-dispatch checks: answered, never acted on."""
        self.counters.dispatch_refused += 1
        if topic == "call":
            self.counters.calls_rejected += 1
            out.append(self._rejected(CallRejected, ref, error, now))
        else:
            # The alarm stays as it was: an unauthenticated clear must never clear it.
            out.append(self._rejected(AlarmRejected, alarm_id.normalise(ref), error, now))

    def _rejected(self, model: type[CallRejected] | type[AlarmRejected], ref: Any, error: str, now: Now) -> Publish:
        topic = "call/rejected" if model is CallRejected else "alarm/rejected"
        body = model(id=ref, error=error, ts=self._ts(now), time_source=self.time_source(now))
        return self._message(topic, body.to_json(), Lane.STATUS)

    def _on_message(self, topic: str, payload: bytes, now: Now, out: list[Any]) -> None:
        if topic == "call":
            self._on_call(payload, now, out)
        elif topic in ("alarm/ack", "alarm/clear"):
            try:
                alarm_id = _alarm_id(payload)
            except ValueError:
                self.counters.messages_ignored += 1  # a garbled clear must never clear anything
                return
            if alarm_id is None and self.config.security.dispatch_keys:
                # Signed dispatch names its alarm (signed_dispatch refuses one that does not): "the current
                # alarm" is an unsigned unit's shorthand, and a replayed one could end a later alarm.
                self.counters.messages_ignored += 1
                return
            method = self.emergency.dispatch_ack if topic == "alarm/ack" else self.emergency.dispatch_clear
            events = method(now.mono, alarm_id)
            self._emergency_events(events, now, out)
            if (not events and self.config.security.dispatch_keys and alarm_id != self.emergency.alarm_id
                    and alarm_id not in self.ended_alarms):
                # A signed answer naming an alarm that is not out (an earlier one, replayed or late): it
                # touched nothing, and dispatch is told why. A copy of the answer that just ended an
                # alarm is not: that answer took effect (a QoS 1 re-delivery says nothing new).
                current = self.emergency.alarm_id
                self.counters.dispatch_refused += 1
                out.append(self._rejected(AlarmRejected, alarm_id, (
                    f"id: names alarm {alarm_id}, which is not out on this unit; "
                    + (f"the alarm out is {current}" if current else "no alarm is out")), now))
        else:
            self.counters.messages_ignored += 1

    # ---------------------------------------------------------- emergency

    def _emergency_events(self, events: list[EmergencyEvent], now: Now, out: list[Any]) -> None:
        for ev in events:
            self.revision += 1
            match ev:
                case AlarmRaised() | AlarmActivated() | AlarmAcknowledged() | AlarmRestored():
                    if isinstance(ev, AlarmRaised) and self.officer.info is None:
                        self.officer.raised(ev.alarm_id, None, None, None)  # the button (or the silent gesture)
                    cancel_until = ev.cancel_until if isinstance(ev, AlarmRaised) else None
                    out.append(self._alarm_message(ev.state.value, now, cancel_until=cancel_until))
                    if isinstance(ev, (AlarmRaised, AlarmRestored)):
                        out.append(self._status_message(now))
                case AlarmCancelled() | AlarmCleared():
                    how = "cancelled" if isinstance(ev, AlarmCancelled) else "cleared"
                    if ev.alarm_id is not None:
                        self.ended_alarms.append(ev.alarm_id)
                    out.append(self._alarm_message(how, now, alarm_id=ev.alarm_id))
                    out.append(self._status_message(now))
                    self.officer.ended()
                case HoldAborted():
                    self.officer.silent_hold = False
                case CancelRefused() if not self.officer.hidden:
                    self._refuse("alarm_not_cancellable", now, out)
                case CancelRefused():
                    self.counters.presses_refused += 1  # silent: refused without a sound

    # ------------------------------------------------------- crash sensor

    def _on_imu(self, samples: Any, now: Now, out: list[Any]) -> None:
        for decision in self.officer.samples(samples, alarm_out=self.emergency.alarm_out, now=now.mono):
            match decision:
                case Raise(finding=finding, trace=trace):
                    events = self.emergency.raise_now(now.mono, self.config.imu.crash_cancel_s)
                    self.officer.raised(self.emergency.alarm_id, finding, trace, self._ts_at(finding.at, now))
                    self._emergency_events(events, now, out)
                    if self.config.display.speech:
                        out.append(Announce(round(self.config.imu.crash_cancel_s)))
                case Store(trace=trace):
                    self._store_trace(trace, now, out)
                case Show():
                    self.revision += 1
                    if self.config.display.speech:
                        out.append(Announce(round(self.config.imu.minor_prompt_s)))

    def _officer_tick(self, now: Now, out: list[Any]) -> None:
        done, prompt_ended = self.officer.tick(now.mono)
        if prompt_ended:
            self.revision += 1
        for decision in done:
            self._store_trace(decision.trace, now, out)  # type: ignore[union-attr]

    def _store_trace(self, trace: CrashTrace, now: Now, out: list[Any]) -> None:
        """A crash trace on the card at once; complete, also on ``crash/trace`` (backlog lane), in parts
        small enough for the fleet broker's packet limit (``TRACE_PART_SAMPLES`` samples each)."""
        f = trace.finding
        head = {
            "unit": self.config.unit.id, "id": trace.id, "alarm": self.officer.alarm_of(trace.id),
            "complete": trace.complete, "cause": f.cause, "severity": f.severity, "impact_ts": self._ts_at(f.at, now),
            **{k: v for k, v in trace.summary().items() if k in ("peak_g", "speed_before", "roll_deg")},
        }
        body = trace.body()
        rows = body["imu"]["samples"]
        count = max(1, -(-len(rows) // TRACE_PART_SAMPLES))
        parts = []
        for k in range(count):
            part = {**body, "imu": {**body["imu"], "samples": rows[k * TRACE_PART_SAMPLES:(k + 1) * TRACE_PART_SAMPLES]}}
            parts.append(_json(CrashTraceMessage(**head, part=k + 1, parts=count, **part, ts=self._ts(now),
                                                 time_source=self.time_source(now)).to_json()))
        out.append(StoreCrashTrace(trace.id, tuple(parts), trace.complete))
        if trace.complete:
            out += [Publish("crash/trace", payload, Lane.BACKLOG, qos=1, retain=False) for payload in parts]

    def _alarm_message(self, state: str, now: Now, alarm_id: str | None = None,
                       cancel_until: float | None = None) -> Publish:
        active = state in ("pending", "active", "acknowledged")
        body: dict[str, Any] = {
            "unit": self.config.unit.id,
            "active": active,
            "state": state,
            "id": alarm_id if alarm_id is not None else self.emergency.alarm_id,
            "ts": self._ts(now),
            "fix": self.fix(now),
            "status": self.status.state,
            "time_source": self.time_source(now),
            **(self.officer.info.fields() if self.officer.info is not None else {"reason": "button", "silent": False}),
        }
        if state == "pending":
            # From the event when there is one: a late wake-up may already have closed the window.
            deadline = cancel_until if cancel_until is not None else self.emergency.next_deadline()
            if deadline is not None:
                body["cancel_until"] = self._ts_at(deadline, now)
        return self._message("alarm", Alarm(**body).to_json(), Lane.EMERGENCY, retain=True)

    # ----------------------------------------------------------- outbound

    def report(self, now: Now) -> Publish:
        """A telemetry report, taking the next ``seq``."""
        seq = self.next_seq
        self.next_seq += 1
        self.counters.reports += 1
        ts, source = self.timebase.now(now.mono, now.wall, now.wall_synced)
        body = Telemetry(
            unit=self.config.unit.id,
            seq=seq,
            ts=iso(ts),
            time_source=source,
            fix=self.fix(now),
            status=self.status.state,
            siren=self.siren,
            emergency=self.emergency.alarm_out,
            call=self._call_ref(),
            ignition=self.parking.ignition_json,
        ).to_json()
        cbor = self.config.telemetry.encoding == "cbor"
        payload = telemetry_cbor.encode_report(body) if cbor else _json(body)
        return Publish("telemetry", payload, Lane.LIVE, qos=1, retain=False, seq=seq)

    def _status_key(self) -> tuple[Any, ...]:
        return (self.status.state, self.siren, self._call_ref(), self.emergency.alarm_out,
                self.parking.ignition_json, self.receiver, self.durable, self.durable_reason)

    def _status_message(self, now: Now) -> Publish:
        self.revision += 1
        self._status_sent = self._status_key()
        body = Status(
            status=self.status.state,
            siren=self.siren,
            call=self._call_ref(),
            emergency=self.emergency.alarm_out,
            ignition=self.parking.ignition_json,
            fix={"receiver": self.receiver},
            ts=self._ts(now),
            time_source=self.time_source(now),
            durable=self.durable,
            durable_reason=self.durable_reason,
        )
        return self._message("status", body.to_json(), Lane.STATUS, retain=True)

    def _call_ref(self) -> dict[str, str] | None:
        call = self.calls.shown()
        return {"id": call.id, "state": call.state} if call else None

    def _message(self, topic: str, body: dict[str, Any], lane: Lane, *, retain: bool = False) -> Publish:
        if "ts" in body and "time_source" not in body:
            body["time_source"] = self.time_source(self.now)
        return Publish(topic, _json(body), lane, qos=1, retain=retain)

    def best_time(self, now: Now) -> tuple[dt.datetime, str]:
        """UTC from the unit's best clock, and which one (``time_source``); see :class:`TimeBase`."""
        return self.timebase.now(now.mono, now.wall, now.wall_synced)

    def call_age(self, call: Call, now: Now) -> CallAge:
        """How old ``call`` was when it reached the unit, on trusted time only (``dispatch.call_age``)."""
        when, source = self.best_time(now)
        return call_age(call, when, source in TRUSTED_TIME_SOURCES, now.mono, self.config.panel.stale_call_after_s)

    def time_source(self, now: Now) -> str:
        return self.best_time(now)[1]

    def fix(self, now: Now) -> dict[str, Any]:
        """The ``fix`` object the unit's messages carry, as of ``now``."""
        return {**fix_json(self.last_valid, self.last_valid_mono, self.current_mode(now.mono), now.mono),
                "receiver": self.receiver}

    @property
    def receiver(self) -> str:
        """``fix.receiver`` now (at the last event handled)."""
        return self.receiver_at(self.now.mono)

    def receiver_at(self, mono: float) -> str:
        """``lost`` (the receiver silent or unplugged), ``no_fix`` (talking, no position: a tunnel,
        a garage) or ``ok``."""
        if self.gnss_lost:
            return "lost"
        return "ok" if self.has_fix(mono) else "no_fix"

    def _ts(self, now: Now) -> str:
        return iso(self.timebase.now(now.mono, now.wall, now.wall_synced)[0])

    def _ts_at(self, mono: float, now: Now) -> str:
        stamp = self.timebase.now(now.mono, now.wall, now.wall_synced)[0]
        return iso(stamp + dt.timedelta(seconds=mono - now.mono))

    # --------------------------------------------------------------- views

    @property
    def emergency_state(self) -> EmergencyState:
        return self.emergency.state


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _alarm_id(payload: bytes) -> str | None:
    """``alarm/ack`` and ``alarm/clear`` name the alarm: ``{"id": "<uuid>"}``; empty means the current one
    (only a unit without dispatch keys gets that far: a signed answer must name its alarm).

    Raises ValueError for anything else.
    """
    if not payload.strip():
        return None
    try:
        data = inbound_text.loads(payload)  # ValueError (JSONDecodeError, UnicodeDecodeError, BadText)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    ref = validate_alarm_ref(data)
    if isinstance(ref, list):
        raise ValueError("; ".join(ref))
    return ref.id


def _parse_iso(value: Any) -> dt.datetime | None:
    """A stored ISO 8601 UTC time, or None when absent or unreadable (an older state file)."""
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
