"""The scenario file's schema: one pydantic model per table, per step action and per expectation kind.

``hil.scenario`` reads a file and validates it here, the way the agent's
configuration is validated by ``agent.config_validate``: strict types (a
number is not a string, ``true`` is not 1), unknown keys refused, and every
problem reported at once as ``(key path, message)`` in plain words, with the
nearest known key for a typo (:func:`problems`).

A step table is validated by the model of its ``action`` (:data:`STEP_MODELS`),
an ``[[expect]]`` table by the model of its ``kind`` (:data:`EXPECT_MODELS`);
each is validated on its own so that a bad step never hides the problems of
the next one. Checks that need the rest of the file read it from the
validation context: a step's ``at`` must fall within the scenario's
``duration_s``, an expectation's ``after`` must name a step.

To add an action: a model with ``action: Literal["name"]`` and its fields
(required ones without a default), listed in :data:`STEP_MODELS`; the rig
performs it in ``hil.engine.Rig.perform``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from agent.config import INPUT_NAMES, OUTPUT_NAMES
from hil.gnss_faults import ALIASES, FAULT_KINDS

LED_STATES = ("on", "off", "blinking")
COLOURS: dict[str, tuple[int, int, int]] = {
    "off": (0, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0),
    "red": (1, 0, 0), "magenta": (1, 0, 1), "white": (1, 1, 1), "cyan": (0, 1, 1),
}
LED_NAMES = ("status", *(n for n in OUTPUT_NAMES if not n.startswith("status_")))
MATCH_OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "exists", "contains", "null")
PROFILES = ("short", "long")
TABLES = ("scenario", "agent", "step", "expect")


def _one_of(known: Sequence[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in known:
            raise PydanticCustomError("unknown_name", f"unknown {what} {value!r}; known: {', '.join(known)}")
        return value
    return check


def _fault(value: str) -> str:
    _one_of((*FAULT_KINDS, *ALIASES), "fault")(value)
    if value == "unplug":
        raise PydanticCustomError("unplug_fault", 'use action = "unplug" for the receiver\'s plug')
    return value


def _topic(value: str) -> str:
    if not value or "#" in value or "+" in value:
        raise PydanticCustomError("topic", 'must be a topic under the unit (e.g. "call"), without wildcards')
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _payload(value: Any) -> Any:
    if not isinstance(value, (str, dict)):
        raise PydanticCustomError("payload", "must be a string (sent as is) or a table (sent as JSON)")
    return value


def _match(value: Any) -> Any:
    if isinstance(value, dict) and (len(value) != 1 or any(op not in MATCH_OPERATORS for op in value)):
        raise PydanticCustomError("operator", f"an operator table has exactly one of {', '.join(MATCH_OPERATORS)}")
    return value


Seconds = Annotated[float, Field(gt=0)]
Button = Annotated[str, AfterValidator(_one_of(INPUT_NAMES, "input"))]
FaultName = Annotated[str, AfterValidator(_fault)]
# Dotted payload keys to a value, or to a one-operator table: { status = "en_route", "fix.mode" = { gte = 2 } }.
Match = dict[str, Annotated[Any, AfterValidator(_match)]]
Overlay = dict[str, Any]  # a partial agent configuration, validated by the agent's own models with the rig's


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Head(_Table):
    """The ``[scenario]`` table."""

    name: str | None = None  # default: the file's stem
    description: str = ""
    duration_s: Seconds
    unit_kind: Literal["car", "motorcycle"] = "car"
    profile: Literal["short", "long"] = "short"
    gnss_rate_hz: Literal[1, 5, 10] = 1
    route_offset_s: float = 0.0
    # The unit lists a dispatch key of the rig's and the rig's dispatcher signs (docs/mqtt-api.md).
    signed_dispatch: bool = False
    # Start on the state directory the last run of this scenario left (default: an empty one).
    keep_state: bool = False
    # "unsynchronised": the agent takes its system clock as never synchronised (a unit booted without
    # NTP), whatever the host's is (agent.adapters.clock, UMPS_AGENT_CLOCK).
    clock: Literal["host", "unsynchronised"] = "host"
    # The receiver as the agent starts: "fix", or "fix_lost" (talking, no position: a garage, a
    # tunnel) or "unplugged" from before the agent's first read, until a step changes it.
    gnss_at_start: Literal["fix", "fix_lost", "unplugged"] = "fix"


class File(_Table):
    """The file's tables; steps and expectations are validated one by one (:data:`STEP_MODELS`)."""

    scenario: dict[str, Any]
    agent: Overlay = {}  # its [mqtt] and [storage] are the rig's (hil.scenario says so)
    step: list[dict[str, Any]] = []
    expect: list[dict[str, Any]] = []


# ------------------------------------------------------------------ steps


class Step(_Table):
    """What every step has: when (scenario seconds) and an id that expectations can name."""

    at: float
    id: Annotated[str, Field(min_length=1)] | None = None  # default "<action>@<at>"
    action: str

    @field_validator("at")
    @classmethod
    def _within_the_run(cls, at: float, info: ValidationInfo) -> float:
        duration = (info.context or {}).get("duration_s")
        if at < 0 or (duration and at > duration):
            raise PydanticCustomError("outside_run", f"must be within 0..duration_s ({duration:g}), not {at:g}")
        return at


class Tap(Step):
    action: Literal["tap"]
    button: Button
    ms: Seconds = 200.0  # how long the finger stays, in milliseconds


class Press(Step):
    action: Literal["press"]
    button: Button


class Release(Step):
    action: Literal["release"]
    button: Button


class Hold(Step):
    action: Literal["hold"]
    button: Button
    seconds: Seconds


class Bounce(Step):
    """A worn contact: ``n`` edges ``interval_ms`` apart before it settles pressed."""

    action: Literal["bounce"]
    button: Button
    n: Annotated[int, Field(gt=0)] = 6
    interval_ms: Seconds = 2.0


class Siren(Step):
    action: Literal["siren"]
    on: bool


class GnssFault(Step):
    action: Literal["gnss_fault"]
    fault: FaultName
    duration_s: Seconds | None = None
    ratio: Annotated[float, Field(gt=0, le=1)] = 1.0


class GnssClear(Step):
    action: Literal["gnss_clear"]
    fault: FaultName | None = None


class Unplug(Step):
    action: Literal["unplug"]
    duration_s: Seconds | None = None


class Replug(Step):
    action: Literal["replug"]


class LinkDown(Step):
    action: Literal["link_down"]
    mode: Literal["blackhole", "drop"] = "blackhole"  # the link stalls, or connections are cut


class LinkUp(Step):
    action: Literal["link_up"]


class BrokerStop(Step):
    action: Literal["broker_stop"]


class BrokerKill(Step):
    action: Literal["broker_kill"]


class BrokerStart(Step):
    action: Literal["broker_start"]


class Call(Step):
    action: Literal["call"]
    call_id: str
    priority: Literal[1, 2, 3] = 2
    nature: str = "Contrôle"
    address: str = "Av. Mohammed V, Kénitra"
    location: dict[str, float] | None = None
    details: str | None = None
    code: str | None = None


class CallUpdate(Step):
    action: Literal["call_update"]
    call_id: str
    details: str | None = None
    priority: Literal[1, 2, 3] | None = None
    address: str | None = None


class CallCancel(Step):
    action: Literal["call_cancel"]
    call_id: str
    reason: str | None = None


class AlarmAck(Step):
    action: Literal["alarm_ack"]
    alarm_id: str | None = None


class AlarmClear(Step):
    action: Literal["alarm_clear"]
    alarm_id: str | None = None


class ConfigPush(Step):
    action: Literal["config_push"]
    request_id: str
    version: int
    config: Overlay | None = None


class Cmd(Step):
    action: Literal["cmd"]
    command: Literal["report_position", "flush_backlog", "crash_trace"]
    request_id: str | None = None
    # crash_trace: the trace's id, or "latest": the crash.trace of the last alarm the unit sent
    trace: str | None = None


def _profile_name(value: str) -> str:
    from hil.imu_profiles import PROFILES

    if value not in PROFILES:
        raise PydanticCustomError("imu_profile", f"unknown profile {value!r}; known: {', '.join(sorted(PROFILES))}")
    return value


class Imu(Step):
    """The emulated crash sensor plays a motion profile (hil/imu_profiles.py); the rig then runs it."""

    action: Literal["imu"]
    profile: Annotated[str, AfterValidator(_profile_name)]
    seed: int | None = None


class ImuUnplug(Step):
    action: Literal["imu_unplug", "imu_replug"]


class Publish(Step):
    """Anything on a topic of the unit: a string as it is, a table as JSON (the inputs a unit must survive)."""

    action: Literal["publish"]
    topic: Annotated[str, AfterValidator(_topic)]
    payload: Annotated[Any, AfterValidator(_payload)]
    qos: Literal[0, 1, 2] = 1
    retain: bool = False


class Ignition(Step):
    action: Literal["ignition"]
    on: bool


class PowerFail(Step):
    """The hold-up supply's warning, then the cut after ``hold_up_s`` (the power back ``off_s`` later, if given)."""

    action: Literal["power_fail"]
    hold_up_s: Seconds = 2.0
    off_s: Seconds | None = None


class PowerCut(Step):
    """A cut without warning (kill -9), then the power back after ``off_s``: the agent restarts on the same state."""

    action: Literal["power_cut"]
    off_s: Seconds | None = 2.0


class PowerOn(Step):
    action: Literal["power_on"]


STEP_MODELS: dict[str, type[Step]] = {
    model.model_fields["action"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (Tap, Press, Release, Hold, Bounce, Siren, GnssFault, GnssClear, Unplug, Replug, LinkDown, LinkUp,
                  BrokerStop, BrokerKill, BrokerStart, Call, CallUpdate, CallCancel, AlarmAck, AlarmClear,
                  ConfigPush, Cmd, Publish, Ignition, PowerFail, PowerCut, PowerOn, Imu)}
STEP_MODELS.update({"imu_unplug": ImuUnplug, "imu_replug": ImuUnplug})  # one model, two actions


# ---------------------------------------------------------- expectations


class Expect(_Table):
    kind: str
    name: str | None = None  # default: built from the fields


class Anchored(Expect):
    """An expectation that starts at a step (``after``, its id) or at ``at`` seconds (default 0)."""

    after: str | None = None
    at: float | None = None

    @field_validator("after")
    @classmethod
    def _names_a_step(cls, after: str | None, info: ValidationInfo) -> str | None:
        steps = (info.context or {}).get("step_ids")
        if after is not None and steps is not None and after not in steps:
            raise PydanticCustomError("no_step", f"no step with id {after!r}; steps: {', '.join(steps) or '(none)'}")
        return after

    @model_validator(mode="after")
    def _one_anchor(self) -> Anchored:
        if self.after is not None and self.at is not None:
            raise PydanticCustomError("anchor", "give either after (a step id) or at (seconds), not both")
        return self


class Message(Anchored):
    """A message on ``topic`` matching ``match``, within ``within_ms`` of the anchor."""

    kind: Literal["message"]
    topic: str
    match: Match = {}
    within_ms: Seconds = 1000.0


class NoMessage(Anchored):
    """No message on ``topic`` matching ``match`` in the window [anchor, anchor + for_s]."""

    kind: Literal["no_message"]
    topic: str
    match: Match = {}
    for_s: Seconds | None = None


class Sequence_(Anchored):
    """Messages on ``topic`` matching ``matches``, in this order, each after the one before."""

    kind: Literal["sequence"]
    topic: str
    matches: Annotated[list[Match], Field(min_length=1)]
    within_ms: Seconds = 1000.0


class TelemetryComplete(Expect):
    """Every telemetry seq from the first to the last made in [from_s, to_s] was delivered (live or backlog)."""

    kind: Literal["telemetry_complete"]
    from_s: float = 0.0
    to_s: float | None = None
    settle_s: Seconds = 15.0


class Cadence(Expect):
    """Live telemetry every 1/rate_hz: the share of intervals within tolerance, none over max_interval_s."""

    kind: Literal["cadence"]
    rate_hz: Seconds = 1.0
    tolerance: float = 0.5
    min_share: float = 0.9
    from_s: float = 0.0
    to_s: float | None = None
    max_interval_s: Seconds | None = None  # default two periods


class Position(Expect):
    """Published positions stay within ``max_m`` of where the emulated vehicle was (p95)."""

    kind: Literal["position"]
    max_m: Seconds = 25.0
    from_s: float = 0.0
    to_s: float | None = None
    min_points: int = 5


class Led(Anchored):
    """An LED (or the status RGB colour, or the buzzer) shows ``state`` within ``within_ms``, held ``hold_ms``."""

    kind: Literal["led"]
    led: Annotated[str, AfterValidator(_one_of(LED_NAMES, "output"))]
    state: str
    within_ms: Seconds = 1000.0
    hold_ms: Seconds = 400.0

    @field_validator("state")
    @classmethod
    def _state_of_that_led(cls, state: str, info: ValidationInfo) -> str:
        led = info.data.get("led")
        if led == "status" and state not in COLOURS:
            raise PydanticCustomError("colour", f"the status LED takes a colour: {', '.join(COLOURS)}")
        if led not in (None, "status") and state not in LED_STATES:
            raise PydanticCustomError("led_state", f"must be one of {', '.join(LED_STATES)}")
        return state


class AgentAlive(Expect):
    """The agent process is still running at the end (no crash)."""

    kind: Literal["agent_alive"]


class SeqAccounted(Expect):
    """The consumer's seq account (hil/seq_ledger.py): every seq received or inside a gap a birth declared."""

    kind: Literal["seq_accounted"]
    lost_in_transit_max: int = 0
    declared_lost_min: int = 0
    declared_lost_max: int | None = None


EXPECT_MODELS: dict[str, type[Expect]] = {
    model.model_fields["kind"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (Message, NoMessage, Sequence_, TelemetryComplete, Cadence, Position, Led, AgentAlive, SeqAccounted)
}


def fields_of(model: type[BaseModel], common: type[BaseModel]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """(required fields, optional fields with defaults) of ``model``, beyond those of ``common``."""
    own = {name: f for name, f in model.model_fields.items() if name not in common.model_fields}
    return (tuple(name for name, f in own.items() if f.is_required()),
            {name: f.default for name, f in own.items() if not f.is_required()})
