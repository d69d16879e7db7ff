"""The MQTT payloads as models: each message contract written once.

Every payload the unit receives or sends that is modelled here is validated
(inbound) or built (outbound) by its model, and its JSON Schema in
``docs/asyncapi.json`` (``components.schemas``) is generated from the same
model: ``python -m agent.contract_tools --write docs/asyncapi.json`` rewrites
those schemas, and ``tests/test_messages.py`` fails when the document and the
models disagree. The compact CBOR telemetry's schemas come the same way from
the codec's own tables (:func:`.telemetry_cbor.schemas`): nothing in the
document's schemas is written by hand.

Inbound rules (what a dispatcher reads on ``call/rejected`` comes from here):

* Fields the contract does not name are ignored; ``null`` is the same as absent.
* Strings lose leading and trailing spaces; text shown to the crew is cleaned
  by :func:`.inbound_text.display_text` before its length is checked.
* Every problem is reported, as ``"<field>: <what is wrong>"`` (:func:`problems`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from agent.config import UNIT_ID_PATTERN
from agent.config import StatusCode as _StatusCodes

from . import alarm_id, inbound_text, telemetry_cbor
from .json_types import json_type

REF = "#/components/schemas/{model}"

CALL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$"
# The unit writes alarm ids in lower case; it reads them in either case.
INBOUND_ALARM_ID_PATTERN = r"^\s*[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\s*$"
_CALL_ID = re.compile(CALL_ID_PATTERN)
ACTIONS = ("new", "update", "cancel")
PRIORITIES = (1, 2, 3)
CommandName = Literal["report_position", "flush_backlog"]
# What an action "new" (or an update for a call the unit does not hold) must carry.
NEW_CALL_NEEDS = ("priority", "nature", "address", "created")


def _hand_written(name: str) -> WithJsonSchema:
    """A schema of the document not generated yet, referred to by name."""
    return WithJsonSchema({"$ref": REF.format(model=name)})


def _problem(text: str) -> PydanticCustomError:
    return PydanticCustomError("contract", text)


# ------------------------------------------------------------ field types


def _text(fewest: int, most: int, description: str | None = None, *, multiline: bool = False) -> Any:
    """Optional text: a string, cleaned for the screens, then ``fewest`` to ``most`` characters."""

    def clean(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise _problem(f"must be a string, not {json_type(value)}")
        value = inbound_text.display_text(value, multiline=multiline).strip()
        if not fewest <= len(value) <= most:
            raise _problem(f"must be {fewest} to {most} characters" if fewest else f"must be at most {most} characters")
        return value

    return Annotated[
        Annotated[str, Field(min_length=fewest or None, max_length=most)] | None,
        BeforeValidator(clean),
        Field(default=None, description=description),
    ]


def _required(value: Any) -> Any:
    if value is None:
        raise _problem("is required")
    return value


def _call_id(value: Any) -> str:
    _required(value)
    if not isinstance(value, str) or not _CALL_ID.match(value := value.strip()):
        raise _problem("must be 1 to 64 characters: letters, digits, _ . : / -, starting with a letter or digit")
    return value


def _action(value: Any) -> str:
    _required(value)
    if value not in ACTIONS:
        raise _problem("must be " + ", ".join(f'"{a}"' for a in ACTIONS[:-1]) + f' or "{ACTIONS[-1]}"')
    return value


def _priority(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in PRIORITIES:
        raise _problem("must be " + ", ".join(map(str, PRIORITIES[:-1])) + f" or {PRIORITIES[-1]} (1 = most urgent)")
    return int(value)


def _coordinate(limit: int) -> Any:
    def check(value: Any) -> float:
        _required(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -limit <= value <= limit:
            raise _problem(f"must be a number from -{limit} to {limit}")
        return float(value)

    return Annotated[float, Field(ge=-limit, le=limit), BeforeValidator(check)]


def _location(value: Any) -> Any:
    if value is not None and not isinstance(value, dict):
        raise _problem(f'must be an object {{"lat", "lon"}}, not {json_type(value)}')
    return value


def _created(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            return when.astimezone(dt.timezone.utc)
        if when is not None:
            raise _problem("must carry a time zone (UTC, e.g. 2024-03-01T10:20:30Z)")
    raise _problem("must be an ISO 8601 date and time with a time zone (e.g. 2024-03-01T10:20:30Z)")


# Members checked before the payload reaches its model (agent.core.signed_dispatch):
# documented with the message, ignored by its model.
_EXPIRES = Annotated[Any, WithJsonSchema({
    "type": "string", "format": "date-time",
    "description": "required when the unit has dispatch keys: in the future and at most 1 h ahead on the unit's clock; "
                   "without trusted time, refused only when before the latest time the unit has proof of",
}), Field(default=None, exclude=True)]
_ISSUED = Annotated[Any, WithJsonSchema({
    "type": "string", "format": "date-time",
    "description": "optional, signed: when the message was signed; not after expires nor more than its longest life "
                   "before it. Proof of the time for a unit that has no trusted clock yet (docs/safety.md)",
}), Field(default=None, exclude=True)]
_SIG = Annotated[Any, WithJsonSchema({
    "type": "string",
    "description": "base64 Ed25519 signature by one of the unit's [security] dispatch_keys over the message without sig, "
                   "plus unit and purpose (the topic), in RFC 8785 canonical JSON; required when the unit has dispatch keys",
}), Field(default=None, exclude=True)]


# ------------------------------------------------------- shared schemas

Timestamp = TypeAliasType("Timestamp", Annotated[str, Field(
    pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$", json_schema_extra={"format": "date-time"},
    description="UTC ISO 8601 with milliseconds and a Z.", examples=["2024-03-01T10:20:30.500Z"],
)])
TimeSource = TypeAliasType("TimeSource", Annotated[Literal["system", "gnss", "system_unsynced"], Field(
    description="Where the message's ts comes from: system, the synchronised system clock; gnss, the receiver's UTC "
                "carried forward on the monotonic clock; system_unsynced, a system clock not known to be right",
)])

UnitId = TypeAliasType("UnitId", Annotated[str, Field(pattern=UNIT_ID_PATTERN, examples=["KEN-M-07"])])
StatusCode = TypeAliasType("StatusCode", Annotated[_StatusCodes, Field(description="What the crew says the unit is doing.")])
Receiver = TypeAliasType("Receiver", Annotated[Literal["ok", "no_fix", "lost"], Field(
    description="the GNSS receiver: ok giving a position; no_fix talking without a position (tunnel, garage); "
                "lost silent (unplugged, dead)",
)])


# ------------------------------------------------------------------ inbound


class Inbound(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CallLocation(Inbound):
    """Where the call is (WGS 84 degrees)."""

    lat: _coordinate(90)  # type: ignore[valid-type]
    lon: _coordinate(180)  # type: ignore[valid-type]


def _needs_for_new(schema: dict[str, Any]) -> None:
    """A new call carries :data:`NEW_CALL_NEEDS`, none of them null."""
    def not_null(name: str) -> dict[str, Any]:
        types = schema["properties"][name]["type"]
        return {"type": [t for t in types if t != "null"][0] if isinstance(types, list) else types}

    schema["if"] = {"properties": {"action": {"const": "new"}}}
    schema["then"] = {"required": list(NEW_CALL_NEEDS), "properties": {name: not_null(name) for name in NEW_CALL_NEEDS}}


class CallMessage(Inbound):
    """Unknown fields are ignored; null is the same as absent. Strings are stripped of leading and trailing spaces. At most 16 KiB."""

    model_config = ConfigDict(json_schema_extra=lambda schema, _: _needs_for_new(schema))

    id: Annotated[str, Field(pattern=CALL_ID_PATTERN), BeforeValidator(_call_id)]
    action: Annotated[Literal["new", "update", "cancel"], BeforeValidator(_action)]
    priority: Annotated[Literal[1, 2, 3] | None, BeforeValidator(_priority), Field(default=None, description="1 = most urgent")]
    nature: _text(1, 200, "free text, French or Arabic")  # type: ignore[valid-type]
    code: _text(0, 24, "the dispatcher's short form of the nature; the rider panel prefers it to a nature too long "  # type: ignore[valid-type]
                       "to read at a glance")
    address: _text(1, 300)  # type: ignore[valid-type]
    address_short: _text(0, 60, "a short form of the address; the rider panel prefers it to an address that does not "  # type: ignore[valid-type]
                                "fit its line")
    details: _text(0, 4000, multiline=True)  # type: ignore[valid-type]
    caller: _text(0, 200)  # type: ignore[valid-type]
    reason: _text(0, 300, "why a cancel was sent")  # type: ignore[valid-type]
    location: Annotated[CallLocation | None, BeforeValidator(_location), Field(default=None)]
    created: Annotated[dt.datetime | None, BeforeValidator(_created), Field(default=None, description="ISO 8601 with a time zone")]
    expires: _EXPIRES
    issued: _ISSUED
    sig: _SIG

    def missing_for_new(self) -> list[str]:
        return [name for name in NEW_CALL_NEEDS if getattr(self, name) is None]


def _alarm_ref_id(value: Any) -> str | None:
    if value is None:
        return None
    normal = alarm_id.normalise(value)
    if normal is None:
        text = f"must be the id of the unit's alarm message, a UUID such as \"{alarm_id.EXAMPLE}\""
        if not isinstance(value, str):
            text += f", not {json_type(value)}"
        if isinstance(value, int) and not isinstance(value, bool):
            text += " (alarm ids are no longer numbers: docs/mqtt-api.md)"
        raise _problem(text)
    return normal


_ALARM_EXPIRES = Annotated[Any, WithJsonSchema({
    "type": "string", "format": "date-time",
    "description": "required when the unit has dispatch keys, but not judged: the alarm id, not the clock, makes an "
                   "answer fresh (docs/safety.md)",
}), Field(default=None, exclude=True)]


class AlarmRef(Inbound):
    """Names the alarm by the id of the unit's alarm message. With [security] dispatch_keys set, the id is required and the message must carry expires and sig. Without them, an empty MQTT payload, or id null, means the current alarm. A message naming another alarm, or not of this shape, is ignored."""

    id: Annotated[str | None, Field(default=None, pattern=INBOUND_ALARM_ID_PATTERN), BeforeValidator(_alarm_ref_id)]
    expires: _ALARM_EXPIRES
    issued: _ISSUED
    sig: _SIG


# Remote requests (config/set, cmd): their members. The payload stage before them
# (size, UTF-8, JSON, depth: agent.core.requests) and the stages after them
# (expires, signature, replay) are policy, not shape; expires and sig are documented here.

MAX_ID_CHARS = 128
MAX_VERSION = 2**53 - 1


def _request_id(value: Any) -> str:
    if value is None:
        raise _problem("required")
    if not isinstance(value, str):
        raise _problem(f"must be a string, not {json_type(value)}")
    if not 0 < len(value) <= MAX_ID_CHARS:
        raise _problem(f"must be 1 to {MAX_ID_CHARS} characters")
    return value


def _version(value: Any) -> int:
    if value is None:
        raise _problem("required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _problem(f"must be an integer, not {json_type(value)}")
    if not 1 <= value <= MAX_VERSION:
        raise _problem(f"must be between 1 and {MAX_VERSION}")
    return value


def _object(value: Any) -> dict[str, Any]:
    if value is None:
        raise _problem("required")
    if not isinstance(value, dict):
        raise _problem(f"must be an object, not {json_type(value)}")
    return value


def _command(value: Any) -> str:
    if value is None:
        raise _problem("required")
    if value not in get_args(CommandName):
        raise _problem(f"unknown command; known: {', '.join(get_args(CommandName))}")
    return value


_REQUEST_ID = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), BeforeValidator(_request_id)]


def _signature_members(lifetime: str, sig: str) -> tuple[Any, Any]:
    expires = Annotated[Any, WithJsonSchema({"type": "string", "format": "date-time", "description": lifetime}),
                        Field(default=None, exclude=True)]
    signature = Annotated[Any, WithJsonSchema({"type": "string", **({"description": sig} if sig else {})}),
                          Field(default=None, exclude=True)]
    return expires, signature


_REQUEST_ISSUED = Annotated[Any, WithJsonSchema({
    "type": "string", "format": "date-time",
    "description": "optional, signed: when the request was signed; not after expires nor more than its longest life "
                   "before it. Proof of the time for a unit without a trusted clock yet",
}), Field(default=None, exclude=True)]


class Request(BaseModel):
    """A remote request's members: unknown ones are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_CONFIG_EXPIRES, _CONFIG_SIG = _signature_members(
    "at most 8 days ahead; required when the unit has admin keys; without trusted time the push waits for it",
    "base64 Ed25519 signature; required when the unit has admin keys")
_COMMAND_EXPIRES, _COMMAND_SIG = _signature_members(
    "at most 24 h ahead; required when the unit has admin keys; without trusted time, refused only when before the "
    "latest time the unit has proof of", "")


class ConfigSet(Request):
    """At most 64 KiB; no duplicate keys; nested at most 32 levels. See docs/remote-config.md."""

    id: _REQUEST_ID
    version: Annotated[int, Field(ge=1, le=MAX_VERSION), BeforeValidator(_version)]
    config: Annotated[dict[str, Any], Field(description="partial config, same keys as the TOML file; null removes a pushed value"),
                      BeforeValidator(_object)]
    expires: _CONFIG_EXPIRES  # type: ignore[valid-type]
    issued: _REQUEST_ISSUED
    sig: _CONFIG_SIG  # type: ignore[valid-type]


class CommandRequest(Request):
    id: _REQUEST_ID
    command: Annotated[CommandName, BeforeValidator(_command)]
    expires: _COMMAND_EXPIRES  # type: ignore[valid-type]
    issued: _REQUEST_ISSUED
    sig: _COMMAND_SIG  # type: ignore[valid-type]


def request_problems(model: type[Request], data: dict[str, Any]) -> list[tuple[str, str]]:
    """``(loc, msg)`` for each member of ``data`` that ``model`` refuses: unknown keys first."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        known = ", ".join(model.model_fields)
        unknown, wrong = [], []
        for item in exc.errors(include_url=False):
            name = str(item["loc"][0]) if item["loc"] else ""
            if item["type"] == "extra_forbidden":
                unknown.append((name[:64], f"unknown key; known: {known}"))
            else:
                wrong.append((name, "required" if item["type"] == "missing" else item["msg"]))
        return unknown + wrong
    return []


def problems(error: ValidationError) -> list[str]:
    """Each problem as ``"<field>: <what is wrong>"``, in the order of the model's fields."""
    out = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"])
        text = "is required" if item["type"] == "missing" else item["msg"]
        out.append(f"{where}: {text}" if where else text)
    return out


def validate_call(data: dict[str, Any]) -> CallMessage | list[str]:
    """The message, or every problem for a dispatcher (see :func:`problems`)."""
    try:
        return CallMessage.model_validate(data)
    except ValidationError as exc:
        return problems(exc)


def validate_alarm_ref(data: Any) -> AlarmRef | list[str]:
    """An ``alarm/ack`` or ``alarm/clear`` body (a JSON value), or its problems."""
    if not isinstance(data, dict):
        return [f"must be a JSON object, not {json_type(data)}"]
    try:
        return AlarmRef.model_validate(data)
    except ValidationError as exc:
        return problems(exc)


# ------------------------------------------------------------------ outbound


class Outbound(BaseModel):
    """A payload the unit sends: built by its model, so it has the documented shape."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> dict[str, Any]:
        """The payload: every field set, in the model's order; a field with a default is absent until set."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


Response = Literal["received", "accepted", "declined", "en_route", "on_scene", "cleared"]

def _reading(description: str | None = None, **bounds: float) -> Any:
    return Annotated[Annotated[float, Field(**bounds)] | None, Field(description=description)]


class Fix(Outbound):
    """The unit's last valid position. mode is the receiver's current fix (1: none, or the receiver is silent, gone or its last epoch is over 3 s old); the position stays, and age says how old it is. Before the first valid fix every field but mode is null."""

    mode: Annotated[Literal[1, 2, 3], Field(description="1 no fix, 2 2D, 3 3D")]
    time: Annotated[str | None, Field(
        pattern=r"^(\d{4}-\d{2}-\d{2}T)?\d{2}:\d{2}:\d{2}\.\d{3}Z?$",
        description="UTC time of the last valid epoch: ISO 8601 with a Z, or the time of day (10:20:30.500) until the "
                    "receiver has sent a date",
    )]
    lat: _reading("degrees, WGS 84", ge=-90, le=90)  # type: ignore[valid-type]
    lon: _reading("degrees, WGS 84", ge=-180, le=180)  # type: ignore[valid-type]
    alt: _reading("metres above mean sea level")  # type: ignore[valid-type]
    speed: _reading("metres per second over ground", ge=0)  # type: ignore[valid-type]
    track: _reading("degrees true", ge=0, le=360)  # type: ignore[valid-type]
    hdop: _reading(ge=0)  # type: ignore[valid-type]
    sats: Annotated[Annotated[int, Field(ge=0)] | None, Field(description="satellites used in the solution")]
    age: _reading("seconds since the last valid epoch", ge=0)  # type: ignore[valid-type]
    receiver: Receiver = Field(default=None)  # type: ignore[assignment]


class CallRef(Outbound):
    """The call shown to the crew."""

    id: str
    state: Literal["new", "received", "accepted", "en_route", "on_scene"]


_IGNITION = Annotated[Literal["on", "off"] | None, Field(
    description="the vehicle's ignition ([power] ignition_pin); null: the unit has no ignition line",
)]
_CALL_SHOWN = Annotated[CallRef | None, Field(description="The call shown to the crew, or null.")]


class Telemetry(Outbound):
    unit: UnitId
    seq: Annotated[int, Field(ge=0, description="+1 per report, kept across restarts, never reused")]
    ts: Timestamp
    time_source: TimeSource
    fix: Fix
    status: StatusCode
    siren: bool
    emergency: Annotated[bool, Field(description="an alarm is out (pending, active or acknowledged)")]
    call: _CALL_SHOWN
    ignition: _IGNITION


class ReceiverState(Outbound):
    """The receiver's state; the position itself is on telemetry."""

    receiver: Receiver


_DURABLE_DESCRIPTION = ("true when everything the unit keeps (outbox, unit state, replay memory, remote config) "
                        "reaches its SD card; false when the card refuses (full, read-only, failing): the unit "
                        "still reports, takes calls and raises alarms, keeping in memory what it cannot store, "
                        "and becomes durable again by itself")
_DURABLE_REASON_DESCRIPTION = "why the unit is not durable, in words for a person; null when durable"


class Status(Outbound):
    status: StatusCode
    siren: bool
    call: _CALL_SHOWN
    emergency: bool
    ignition: _IGNITION
    fix: ReceiverState
    ts: Timestamp
    time_source: TimeSource
    durable: bool = Field(default=None, description=_DURABLE_DESCRIPTION)  # type: ignore[assignment]
    durable_reason: str | None = Field(default=None, description=_DURABLE_REASON_DESCRIPTION)


class Alarm(Outbound):
    unit: UnitId
    active: Annotated[bool, Field(description="true while pending, active or acknowledged")]
    state: Literal["pending", "active", "acknowledged", "cancelled", "cleared"]
    id: Annotated[str, Field(pattern=alarm_id.ALARM_ID_PATTERN, examples=[alarm_id.EXAMPLE], description=(
        "the alarm's id: a random UUID, new for each alarm, never shared with another alarm of any unit"))]
    ts: Timestamp
    fix: Fix
    status: StatusCode
    cancel_until: Timestamp = Field(default=None, description="end of the cancel window; only while pending")  # type: ignore[assignment]
    time_source: TimeSource


class CallResponse(Outbound):
    id: str
    response: Response
    ts: Timestamp
    fix: Fix
    time_source: TimeSource
    # Only on "received": how old the call was when it reached the unit, judged on trusted time.
    age_s: Annotated[float | None, Field(
        ge=0, description='only on "received": seconds from the call\'s created to its arrival on the unit, by '
                          'trusted time (time_source system or gnss); null when the unit has no trusted time and '
                          'cannot judge it')] = None
    stale: Annotated[bool | None, Field(
        description='only on "received": the call was older than the unit\'s [panel] stale_call_after_s (default '
                    '1 h) on arrival; the crew\'s screens flag it. null: no trusted time, the age is unverified')] = None


class CallRejected(Outbound):
    id: Annotated[str | None, Field(max_length=64, description="the call's id when it could be read")]
    error: Annotated[str, Field(min_length=1, description="the reason, for a dispatcher")]
    ts: Timestamp
    time_source: TimeSource


class AlarmRejected(Outbound):
    id: Annotated[str | None, Field(pattern=alarm_id.ALARM_ID_PATTERN,
                                    description="the alarm id the message named, when it could be read")]
    error: Annotated[str, Field(min_length=1, description="the reason, for a dispatcher")]
    ts: Timestamp
    time_source: TimeSource


class SeqGap(Outbound):
    """A seq range, both ends included."""

    first: Annotated[int, Field(alias="from", ge=0)]
    last: Annotated[int, Field(alias="to", ge=0)]


class Birth(Outbound):
    """The retained online message of a unit that is up (MQTT birth)."""

    model_config = ConfigDict(title="birth")

    online: Literal[True]
    agent_version: str
    config_version: Annotated[int, Field(ge=0)]
    config_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    ts: Timestamp
    time_source: TimeSource = Field(default=None)  # type: ignore[assignment]
    seq_start: Annotated[int, Field(ge=0, description="the first telemetry seq of this run")]
    seq_gap: Annotated[SeqGap | None, Field(description="The seq range this run declares may never come (the crash tail of the run before and the unused reservation), or null (after a clean stop or a power-fail commit). Every seq a consumer can miss is received or inside a declared range; the range is a bound: seq inside it may still arrive (as backlog). A consumer keeps per unit the seq received and the ranges declared; over the span from the lowest seq known (a report or a seq_start) to the highest received, a seq not received is 'declared lost' inside a declared range and 'lost in transit' otherwise (final once the unit's backlog has drained). See 'Counting lost reports' in docs/mqtt-api.md; hil/seq_ledger.py implements it.")]
    durable: bool = Field(default=None, description=_DURABLE_DESCRIPTION)  # type: ignore[assignment]
    durable_reason: str | None = Field(default=None, description=_DURABLE_REASON_DESCRIPTION)


class Offline(Outbound):
    """The retained online message of a unit that is gone: its goodbye on a clean stop, or its last will."""

    model_config = ConfigDict(title="offline")

    online: Literal[False]
    reason: Literal["power", "ignition"] = Field(default=None, description=(  # type: ignore[assignment]
        "why the unit stopped by itself: power (the hold-up supply's power-fail warning), ignition (parked with the "
        "ignition off for [power] shutdown_after_s); absent on other clean stops and in the last will"))


Online = TypeAliasType("Online", Birth | Offline)


# Remote requests' answers (config/result, cmd/result) and config/current. ``ts`` and
# ``time_source`` are stamped on by the shell when it sends them.


class Problem(Outbound):
    loc: Annotated[str, Field(description='"" for the whole payload, a request member, or config.<key path>')]
    msg: str


_WARNINGS = Field(default=None, description=(
    "What the unit did not do that the request asked for, though it was not refused: "
    '{"loc": "sig", ...} when the request is signed and the unit has no [security] admin_keys, so it checked '
    "no signature; absent when there is nothing to say"))


class ConfigResult(Outbound):
    id: str | None
    ok: bool
    version: Annotated[int, Field(ge=0)]
    errors: list[Problem]
    restart_required: bool
    warnings: list[Problem] = _WARNINGS  # type: ignore[assignment]
    ts: Timestamp = Field(default=None)  # type: ignore[assignment]
    time_source: TimeSource = Field(default=None)  # type: ignore[assignment]


class CommandResult(Outbound):
    id: str | None
    ok: bool
    command: CommandName | None
    errors: list[Problem]
    warnings: list[Problem] = _WARNINGS  # type: ignore[assignment]
    ts: Timestamp = Field(default=None)  # type: ignore[assignment]
    time_source: TimeSource = Field(default=None)  # type: ignore[assignment]


class ConfigCurrent(Outbound):
    version: Annotated[int, Field(ge=0, description="0: never pushed")]
    hash: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$", description=(
        "A hash of the effective config without its secrets: changing only a secret leaves it unchanged"))]
    config: Annotated[dict[str, Any], Field(description='the effective config, secrets as "***"')]
    secrets_version: int = Field(default=None, ge=0, description=(  # type: ignore[assignment]
        "0 on the unit's first run, +1 each time a secret in force changed (push, rollback, local file edit); "
        "the hash leaves secrets out"))
    ts: Timestamp = Field(default=None)  # type: ignore[assignment]
    time_source: TimeSource = Field(default=None)  # type: ignore[assignment]


# ------------------------------------------------------- the JSON Schemas


# Component name in docs/asyncapi.json -> the model it is generated from.
SCHEMAS: dict[str, type[BaseModel]] = {
    "Call": CallMessage,
    "CallLocation": CallLocation,
    "AlarmRef": AlarmRef,
    "CallResponse": CallResponse,
    "CallRejected": CallRejected,
    "AlarmRejected": AlarmRejected,
    "Fix": Fix,
    "CallRef": CallRef,
    "Telemetry": Telemetry,
    "Status": Status,
    "ReceiverState": ReceiverState,
    "Alarm": Alarm,
    "Birth": Birth,
    "Offline": Offline,
    "SeqGap": SeqGap,
    "Problem": Problem,
    "ConfigResult": ConfigResult,
    "CommandResult": CommandResult,
    "ConfigCurrent": ConfigCurrent,
    "ConfigSet": ConfigSet,
    "Command": CommandRequest,
}
# Named shared schemas (type aliases) generated with them.
ALIASES = ("Timestamp", "TimeSource", "UnitId", "StatusCode", "Receiver", "Online")


class _DocumentSchema(GenerateJsonSchema):
    """Schemas written as a person would: no titles, ``null`` folded into ``type``."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def sort(self, value: Any, parent_key: str | None = None) -> Any:
        return value  # in the order the model declares

    def handle_ref_overrides(self, json_schema: Any) -> Any:
        if json_schema.get("$ref") not in self.json_to_defs_refs:
            return json_schema  # a schema still written by hand in the document
        return super().handle_ref_overrides(json_schema)

    def nullable_schema(self, schema: Any) -> dict[str, Any]:
        inner = self.generate_inner(schema["schema"])
        if isinstance(inner.get("type"), str):
            folded = {**inner, "type": [inner["type"], "null"]}
            if "enum" in folded:
                folded["enum"] = [*folded["enum"], None]
            return folded
        return {"anyOf": [inner, {"type": "null"}]}

    def union_schema(self, schema: Any) -> dict[str, Any]:
        out = super().union_schema(schema)
        # The unions here are of payloads a value can be only one of (birth or goodbye).
        return {"oneOf": out.pop("anyOf"), **out} if "anyOf" in out else out

    def default_schema(self, schema: Any) -> dict[str, Any]:
        out = super().default_schema(schema)
        if out.get("default", ...) is None:
            del out["default"]
        return out

    def model_schema(self, schema: Any) -> dict[str, Any]:
        out = super().model_schema(schema)
        # An outbound model refuses unknown members when the unit builds it, but a consumer
        # must ignore members it does not know (a newer unit may send more): not documented.
        if issubclass(schema["cls"], Outbound) and out.get("additionalProperties") is False:
            del out["additionalProperties"]
        return out

    def generate(self, schema: Any, mode: Any = "validation") -> dict[str, Any]:
        out = super().generate(schema, mode)
        out.pop("title", None)
        return out


class _Named(BaseModel):
    """Holds the named schemas no model refers to, so that they are generated too."""

    online: Online


def schemas() -> dict[str, dict[str, Any]]:
    """Component name -> its JSON Schema, generated from :data:`SCHEMAS`."""
    names = {model: name for name, model in SCHEMAS.items()}
    _, top = models_json_schema(
        [(model, "validation") for model in (*SCHEMAS.values(), _Named)], ref_template=REF,
        schema_generator=_DocumentSchema,
    )
    generated = top.get("$defs", {})
    out = {}
    for name, model in SCHEMAS.items():
        schema = dict(generated[model.__name__])
        schema.pop("title", None)
        out[name] = _rename_refs(schema, names)
    for name in ALIASES:
        out[name] = generated[name]
    out.update(telemetry_cbor.schemas())  # the binary encoding: its key map, from the codec's tables
    return out


def _rename_refs(node: Any, names: dict[type[BaseModel], str]) -> Any:
    by_class = {model.__name__: name for model, name in names.items()}
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/components/schemas/"):
            target = node["$ref"].rsplit("/", 1)[1]
            return {**node, "$ref": REF.format(model=by_class.get(target, target))}
        return {key: _rename_refs(value, names) for key, value in node.items()}
    if isinstance(node, list):
        return [_rename_refs(value, names) for value in node]
    return node


def document_with_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """The AsyncAPI document with its generated schemas replaced (others kept, in place)."""
    generated = schemas()
    current = document["components"]["schemas"]
    merged = {name: generated.get(name, schema) for name, schema in current.items()}
    merged.update({name: schema for name, schema in generated.items() if name not in merged})
    return {**document, "components": {**document["components"], "schemas": merged}}


def dumps_document(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
