"""What the unit raises for a crash, a fall, a rider down, and the silent emergency (pure).

:class:`OfficerDown` is the unit's part between the crash sensor (:mod:`.crash_watch`) and the
alarm (:mod:`.emergency`). The unit (:mod:`.unit`) calls it and carries out its decisions.

The rules
=========

    finding (crash_watch)         alarm out?   prompt?   decision
    severe, man_down              no           any       RAISE: the pre-alarm, cancel window crash_cancel_s,
                                                         reason "crash" (man_down: "man_down"), the summary
    severe, man_down              yes          -         nothing more (the alarm is out; the trace is stored)
    minor                         no           no        PROMPT for minor_prompt_s: "Chute détectée –
                                                         appuyez ACK pour annuler (N s)", the buzzer
    minor                         otherwise              nothing more
    (every finding)                                      STORE its trace at once, and complete later

    input                         state                  decision
    ack (panel) or the screen's   prompt shown,          DISMISS: the prompt goes, the crew answered
    cancel                        no alarm cancellable   (the man-down watch ends); an accepted chirp
    minor_prompt_s passed         prompt shown           the prompt goes; man-down still watches

The pre-alarm is the emergency's own cancel window (same buttons, screens, buzzer), only longer
and announced on the intercom. Why the crash alarm goes out as ``pending`` at once rather than
after its window: as for the emergency button (see :mod:`.emergency`), the window is exactly
when the unit may be smashed or out of coverage.

The silent emergency (``[panel] silent_gesture``): ``"emergency+ack"``, the ``ack`` button
pressed while ``emergency`` is held; ``"input"``, the hidden ``[gpio] inputs.silent_emergency``
switch held for ``emergency_hold_s``. The alarm it raises is ``silent``: dispatch sees
``"silent": true``; on the unit no buzzer, no LED, no speech, no screen shows it, the whole hold
included from the moment the gesture is recognised (the views ask :attr:`OfficerDown.hidden`).
It is cancelled (``ack`` in the window, without a sound) and cleared like any alarm.

What the alarm says (``reason``, ``silent``, the crash summary) lives here while it is out and
survives a restart with it (:meth:`snapshot`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.config import AgentConfig

from .crash_detect import Finding
from .crash_watch import CrashTrace, CrashWatch
from .imu_frames import Mounting

Reason = Literal["button", "crash", "man_down"]
SNAPSHOT_VERSION = 1


@dataclass
class AlarmInfo:
    """What the unit says about the alarm that is out, besides its state."""

    reason: Reason = "button"
    silent: bool = False
    crash: dict[str, Any] | None = None  # CrashTrace.summary() plus impact_ts

    def fields(self) -> dict[str, Any]:
        """The alarm message's members for it."""
        out: dict[str, Any] = {"reason": self.reason, "silent": self.silent}
        if self.crash is not None:
            out["crash"] = self.crash
        return out


@dataclass(frozen=True, slots=True)
class Prompt:
    """The minor prompt on the panel: until when, and the trace of what caused it."""

    trace_id: str
    until: float
    cause: str


@dataclass(frozen=True, slots=True)
class Raise:
    finding: Finding
    trace: CrashTrace


@dataclass(frozen=True, slots=True)
class Store:
    trace: CrashTrace


@dataclass(frozen=True, slots=True)
class Show:
    prompt: Prompt


Decision = Raise | Store | Show


@dataclass
class OfficerDown:
    """See the module docstring."""

    config: AgentConfig
    new_id: Callable[[], str] = field(repr=False)
    watch: CrashWatch | None = field(init=False, default=None)
    info: AlarmInfo | None = None  # while an alarm is out
    prompt: Prompt | None = None
    silent_hold: bool = False  # the hold in progress is the silent gesture
    _alarms: dict[str, Any] = field(default_factory=dict, repr=False)  # trace id -> the alarm it raised (a few)

    def __post_init__(self) -> None:
        imu = self.config.imu
        if imu.enabled:
            self.watch = CrashWatch(imu, Mounting.from_axes(imu.forward_axis, imu.up_axis), self.new_id)

    def reconfigure(self, config: AgentConfig) -> None:
        self.config = config
        if self.watch is not None:
            self.watch.reconfigure(config.imu)

    # ------------------------------------------------------------ sensor

    def samples(self, batch: Any, *, alarm_out: bool, now: float) -> list[Decision]:
        if self.watch is None:
            return []
        found, done = self.watch.on_samples(batch)
        out: list[Decision] = []
        for finding, trace in found:
            if finding.severity == "severe" or finding.cause == "man_down":
                if not alarm_out:
                    self.prompt = None
                    out.append(Raise(finding, trace))  # first: its trace then names the alarm
                    alarm_out = True
                out.append(Store(trace))
            else:
                out.append(Store(trace))
                if not alarm_out and self.prompt is None:
                    self.prompt = Prompt(trace.id, now + self.config.imu.minor_prompt_s, finding.cause)
                    out.append(Show(self.prompt))
        out += [Store(trace) for trace in done]
        return out

    def tick(self, now: float) -> tuple[list[Decision], bool]:
        """Time passed: traces the sensor's silence left open, and the prompt's end (True: it ended)."""
        ended = self.prompt is not None and now >= self.prompt.until
        if ended:
            self.prompt = None
        done = self.watch.tick(now) if self.watch is not None else []
        return [Store(t) for t in done], ended

    def next_deadline(self) -> float | None:
        times = [t for t in (self.prompt.until if self.prompt else None,
                             self.watch.next_deadline() if self.watch else None) if t is not None]
        return min(times) if times else None

    def dismiss(self) -> bool:
        """The crew answered the prompt (``ack``); False when none was shown."""
        if self.prompt is None:
            return False
        self.prompt = None
        if self.watch is not None:
            self.watch.detector.crew_answered()
        return True

    # ------------------------------------------------------------- alarm

    def raised(self, alarm_id: Any, finding: Finding | None, trace: CrashTrace | None, impact_ts: str | None) -> None:
        """An alarm went out: by the button (both None), or for a finding."""
        if finding is not None and trace is not None:
            reason: Reason = "man_down" if finding.cause == "man_down" else "crash"
            self.info = AlarmInfo(reason, False, {**trace.summary(), "impact_ts": impact_ts})
            self._alarms[trace.id] = alarm_id
            while len(self._alarms) > 8:  # only the traces still being collected need it
                del self._alarms[next(iter(self._alarms))]
        else:
            self.info = AlarmInfo("button", self.silent_hold)
        self.silent_hold = False

    def alarm_of(self, trace_id: str) -> Any:
        """The alarm a trace's finding raised, or None."""
        return self._alarms.get(trace_id)

    def ended(self) -> None:
        """The alarm was cancelled or cleared."""
        self.info = None

    @property
    def hidden(self) -> bool:
        """Nothing on the unit may show the alarm or its hold: the silent emergency."""
        return self.silent_hold or (self.info is not None and self.info.silent)

    def snapshot(self) -> dict[str, Any] | None:
        if self.info is None:
            return None
        return {"version": SNAPSHOT_VERSION, "reason": self.info.reason, "silent": self.info.silent,
                "crash": self.info.crash}

    def restore(self, data: Any) -> None:
        """Put back what a live alarm said (a malformed record: a button alarm, not silent)."""
        if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
            self.info = AlarmInfo() if data is not None else None
            return
        reason = data.get("reason") if data.get("reason") in ("button", "crash", "man_down") else "button"
        crash = data.get("crash") if isinstance(data.get("crash"), dict) else None
        self.info = AlarmInfo(reason, data.get("silent") is True, crash)  # type: ignore[arg-type]
