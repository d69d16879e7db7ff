"""Remote configuration and remote commands: validate, merge, classify, guard.

Pure: bytes and the time in, decisions out. The runtime calls
:func:`handle_config_set` for every message on ``<prefix>/<unit>/config/set``
and :func:`parse_command` for ``<prefix>/<unit>/cmd``; it persists and applies
what comes back (``agent.adapters.config_store`` does the persisting).

The config layers
-----------------
The effective config is the local TOML file (the *base*, read-only under
systemd) with the *overlay* on top: every remote push accepted so far,
deep-merged into one partial config. Merging: tables merge key by key, lists
and scalars replace, and ``null`` removes that key from the overlay so the
value falls back to the TOML file's (or the default). The merged result is
validated with the same :class:`~agent.config.AgentConfig` schema as the file,
in strict mode (JSON has types; ``"5"`` is not a port), by the ``validate``
function the caller gives (:data:`agent.config.Validate`): the running agent
validates in a child process, so this module never loads pydantic.

A request is checked in this order, and refused with every problem of the
first failing stage (``loc`` is ``""`` for the whole payload, a request member
such as ``version``, or ``config.<key path>``):

1. payload: at most 64 KiB, UTF-8, JSON (no duplicate keys, no NaN), an object
   nested at most 32 deep;
2. members: ``id`` (string, 1-128 characters), ``version`` (integer 1..2**53-1),
   ``config`` (object), optional ``expires`` (ISO 8601 with a zone, e.g.
   ``2025-03-01T12:00:00Z``), optional ``sig``; nothing else;
3. signature, when ``[security] admin_keys`` is not empty (see ``signing``);
4. a re-delivery of the request that made the current version (same ``id`` and
   ``version``) is answered ``ok`` again and changes nothing;
5. ``version`` above every version ever accepted (a rolled-back version stays
   used), ``expires`` still in the future on the unit's clock;
6. keys that may not be changed remotely (:data:`KEY_RULES`), then the merged
   config against the schema.

Remote changeability, and how a change takes effect, is one table,
:data:`KEY_RULES`, looked up by the longest matching key-path prefix:
``hot`` (the core reads the new value at its next use), ``reinit`` (the
runtime rebuilds one adapter in-process: GNSS reader, GPIO devices, panel
display, MQTT link) or ``restart`` (applies at the next start;
``restart_required`` is reported). MQTT changes are *dangerous*: the runtime
arms a :class:`RollbackGuard` and rolls back if no broker accepts the unit in
time. Never remotely: ``unit.id`` (it is the unit's identity on the broker),
``storage.state_dir`` (where this very layer is kept) and ``ui.host`` (it
would open the crew's touchscreen page to the network).
``security.admin_keys`` only through a validly signed request, and never to
an empty list (that would turn signing off; only the local file may).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agent.config import AgentConfig, ConfigError, Validate
from agent.core import inbound_text, signing
from agent.core.json_types import json_type

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_ID_CHARS = 128
MAX_VERSION = 2**53 - 1
CONFIG_REQUEST_KEYS = ("id", "version", "config", "expires", "sig")
COMMAND_REQUEST_KEYS = ("id", "command", "expires", "sig")
COMMANDS = ("report_position", "flush_backlog")
# A command may not be valid for longer than this (bounds replay of a signed one).
COMMAND_MAX_LIFETIME = dt.timedelta(hours=24)


# ------------------------------------------------------------ key rules


@dataclass(frozen=True, slots=True)
class KeyRule:
    """How a key may be changed remotely and how the change takes effect."""

    effect: Literal["hot", "reinit", "restart"]
    part: str | None = None  # the adapter rebuilt for "reinit"
    dangerous: bool = False  # could cut the unit off: rollback guard
    remote: Literal["yes", "signed", "never"] = "yes"


_HOT = KeyRule("hot")
_RESTART = KeyRule("restart")

KEY_RULES: dict[str, KeyRule] = {
    "unit.id": KeyRule("restart", remote="never"),
    "unit.kind": _RESTART,  # decides which adapters exist (touchscreen or OLED)
    "unit.name": _HOT,
    "gnss": KeyRule("reinit", "gnss"),
    "mqtt": KeyRule("reinit", "mqtt", dangerous=True),
    "storage.state_dir": KeyRule("restart", remote="never"),
    "storage": _HOT,  # outbox limits: the outbox takes them at run time
    "telemetry": _HOT,
    # The pin factory owns the GPIO chip for the whole process.
    "gpio.factory": _RESTART,
    "gpio.pigpio_host": _RESTART,
    "gpio.pigpio_port": _RESTART,
    "gpio": KeyRule("reinit", "gpio"),
    # A shell command: only the unit's own file may set it.
    "power.poweroff_command": KeyRule("restart", remote="never"),
    "power.shutdown_after_s": _HOT,
    "power.parked_rate_hz": _HOT,
    "power": _RESTART,  # pins and levels: the inputs are built at start
    "panel": _HOT,
    "ui.host": KeyRule("restart", remote="never"),
    "ui.enabled": _RESTART,
    "ui.http_port": _RESTART,
    "ui": _HOT,
    "display.speech": _HOT,
    "display": KeyRule("reinit", "display"),
    "security.admin_keys": KeyRule("hot", remote="signed"),
    "security": _HOT,
    "logging": _HOT,
}
# A key the table does not know yet: the safe assumption.
DEFAULT_RULE = _RESTART


def rule_for(path: str) -> KeyRule:
    """The rule of the longest prefix of ``path`` (``"gpio.inputs.ack.pin"``)."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        rule = KEY_RULES.get(".".join(parts[:end]))
        if rule is not None:
            return rule
    return DEFAULT_RULE


def _restricted(path: str) -> Iterator[tuple[str, KeyRule]]:
    """Restricted keys that a push at ``path`` would touch."""
    for key, rule in KEY_RULES.items():
        if rule.remote == "yes":
            continue
        if path == key or key.startswith(path + ".") or path.startswith(key + "."):
            yield key, rule


# ------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class Problem:
    loc: str
    msg: str


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """The ``config/result`` payload."""

    id: str | None
    ok: bool
    version: int
    errors: tuple[Problem, ...] = ()
    restart_required: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ok": self.ok,
            "version": self.version,
            "errors": [{"loc": p.loc, "msg": p.msg} for p in self.errors],
            "restart_required": self.restart_required,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """What an accepted push changed, and what the runtime must do about it."""

    paths: tuple[str, ...] = ()  # changed key paths, sorted
    sections: frozenset[str] = frozenset()  # top-level tables touched
    reinit: frozenset[str] = frozenset()  # adapters to rebuild: gnss, gpio, display, mqtt
    restart_required: bool = False
    dangerous: bool = False  # arm the RollbackGuard

    @classmethod
    def between(cls, old: AgentConfig, new: AgentConfig) -> "ConfigChange":
        paths = tuple(sorted(_diff(old.plain(), new.plain(), "")))
        rules = [rule_for(path) for path in paths]
        return cls(
            paths=paths,
            sections=frozenset(path.split(".")[0] for path in paths),
            reinit=frozenset(r.part for r in rules if r.effect == "reinit" and r.part),
            restart_required=any(r.effect == "restart" for r in rules),
            dangerous=any(r.dangerous for r in rules),
        )


def _diff(old: Any, new: Any, prefix: str) -> Iterator[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in set(old) | set(new):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                yield path
            else:
                yield from _diff(old[key], new[key], path)
    elif old != new:
        yield prefix


# ------------------------------------------------------------ state


@dataclass(frozen=True)
class ConfigState:
    """The layers of the effective config, as persisted by the config store.

    ``overlay`` is JSON data (the remote partial config); treat it as
    read-only: every change builds a new state.
    """

    base: AgentConfig  # the local TOML file alone
    overlay: Mapping[str, Any]
    version: int  # 0: never pushed
    highest_version: int  # highest ever accepted, also counting rolled-back ones
    request_id: str | None  # the request that made ``version``
    pending: bool  # a dangerous change not yet confirmed by a broker connection
    config: AgentConfig  # base + overlay, validated

    @classmethod
    def initial(cls, base: AgentConfig) -> "ConfigState":
        return cls(base, {}, 0, 0, None, False, base)

    @classmethod
    def build(
        cls,
        base: AgentConfig,
        overlay: Mapping[str, Any],
        version: int = 0,
        highest_version: int = 0,
        request_id: str | None = None,
        pending: bool = False,
        *,
        validate: Validate,
    ) -> "ConfigState":
        """Validate ``base`` + ``overlay``; raises :class:`ConfigError`."""
        config = effective_config(base, overlay, validate=validate)
        return cls(base, overlay, version, max(version, highest_version), request_id, pending, config)

    def confirmed(self) -> "ConfigState":
        return replace(self, pending=False)


def current_message(state: ConfigState) -> dict[str, Any]:
    """The retained ``config/current`` payload: version, hash, redacted config."""
    return {"version": state.version, "hash": state.config.digest(), "config": state.config.redacted()}


def effective_config(
    base: AgentConfig, overlay: Mapping[str, Any], source: str = "remote", *, validate: Validate
) -> AgentConfig:
    """``base`` with ``overlay`` deep-merged on top, validated (strict)."""
    return validate(_apply(base.plain(), overlay), source, strict=True)


def _apply(data: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(data.get(key), dict):
            data[key] = _apply(data[key], value)
        else:
            data[key] = copy.deepcopy(value)
    return data


def merge_overlay(overlay: Mapping[str, Any], push: Mapping[str, Any]) -> dict[str, Any]:
    """The overlay after ``push``: tables merge, values replace, null deletes."""
    result = copy.deepcopy(dict(overlay))
    for key, value in push.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            below = result.get(key)
            merged = merge_overlay(below if isinstance(below, Mapping) else {}, value)
            if merged:
                result[key] = merged
            else:
                result.pop(key, None)  # nothing left in that table: no empty tables kept
        else:
            result[key] = copy.deepcopy(value)
    return result


# ------------------------------------------------------------ parsing


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            # Parsers disagree on which duplicate wins: a signature would be ambiguous.
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _shape_problem(data: Any) -> str | None:
    """Too deep, or a number JSON can write but a double cannot hold (1e400)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, float) and not math.isfinite(value):
            return "a number is out of range"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return None


def decode_payload(payload: bytes) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The request object, or the problems that make it unreadable."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None, [Problem("", f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES} (64 KiB)")]
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [Problem("", f"not UTF-8: invalid byte at offset {exc.start}")]
    try:
        data = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        return None, [Problem("", f"not valid JSON: duplicate key {exc.args[0]!r}")]
    except json.JSONDecodeError as exc:
        return None, [Problem("", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
    except ValueError as exc:
        return None, [Problem("", f"not valid JSON: {exc}")]
    except RecursionError:
        return None, [Problem("", f"nested deeper than {MAX_DEPTH} levels")]
    if not isinstance(data, dict):
        return None, [Problem("", f"must be a JSON object, not {json_type(data)}")]
    shape = _shape_problem(data)
    if shape is not None:
        return None, [Problem("", shape)]
    try:
        inbound_text.check(data)
    except inbound_text.BadText as exc:
        return None, [Problem("", str(exc))]
    return data, []


def _request_id(data: Mapping[str, Any]) -> str | None:
    value = data.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS else None


def _check_id(data: Mapping[str, Any], problems: list[Problem]) -> None:
    value = data.get("id")
    if value is None:
        problems.append(Problem("id", "required"))
    elif not isinstance(value, str):
        problems.append(Problem("id", f"must be a string, not {json_type(value)}"))
    elif not 0 < len(value) <= MAX_ID_CHARS:
        problems.append(Problem("id", f"must be 1 to {MAX_ID_CHARS} characters"))


def _check_unknown(data: Mapping[str, Any], known: tuple[str, ...], problems: list[Problem]) -> None:
    for key in data:
        if key not in known:
            problems.append(Problem(key[:64], f"unknown key; known: {', '.join(known)}"))


def parse_expiry(value: Any) -> dt.datetime | str:
    """An aware datetime, or the message saying why ``value`` is not one."""
    hint = "must be an ISO 8601 date and time with a zone, e.g. 2025-03-01T12:00:00Z"
    if not isinstance(value, str):
        return hint
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return hint
    if when.tzinfo is None:
        return "must give the time zone (for UTC, end with Z)"
    try:
        return when.astimezone(dt.timezone.utc)
    except OverflowError:
        return "is out of range"


def _check_expiry(expires: dt.datetime | None, now: dt.datetime, problems: list[Problem]) -> None:
    if expires is not None and expires <= now:
        problems.append(
            Problem("expires", f"expired at {_iso(expires)} (unit clock {_iso(now)})")
        )


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_signature(
    config: AgentConfig, data: Mapping[str, Any], purpose: signing.Purpose
) -> Problem | None:
    """None when the request is acceptable as far as signing goes."""
    texts = config.security.admin_keys
    if not texts:
        return None
    keys = []
    for text in texts:
        try:
            keys.append(signing.parse_public_key(text))
        except ValueError:
            continue  # a bad key is reported by `config check`; the others still work
    if not keys:
        return Problem("sig", "no usable admin key is configured on this unit; refusing every request")
    try:
        signing.verify_request(keys, config.unit.id, data, purpose)
    except signing.SignatureError as exc:
        return Problem("sig", str(exc))
    return None


# ------------------------------------------------------------ config/set


@dataclass(frozen=True)
class ConfigOutcome:
    """The answer to one ``config/set`` message.

    ``state`` is set only when a new version was accepted: persist it, then
    apply it. ``result`` is the ``config/result`` payload; for a dangerous
    change publish it once the guard confirms (or publish
    :func:`rolled_back_result` instead).
    """

    result: ConfigResult
    state: ConfigState | None = None
    change: ConfigChange = field(default_factory=ConfigChange)

    @property
    def accepted(self) -> bool:
        return self.state is not None


def handle_config_set(
    payload: bytes, state: ConfigState, now: dt.datetime, validate: Validate
) -> ConfigOutcome:
    """Validate a ``config/set`` payload against ``state`` at wall-clock ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")

    def reject(problems: list[Problem], request_id: str | None) -> ConfigOutcome:
        return ConfigOutcome(ConfigResult(request_id, False, state.version, tuple(problems)))

    data, problems = decode_payload(payload)
    if data is None:
        return reject(problems, None)
    request_id = _request_id(data)

    _check_unknown(data, CONFIG_REQUEST_KEYS, problems)
    _check_id(data, problems)
    version = data.get("version")
    if version is None:
        problems.append(Problem("version", "required"))
    elif isinstance(version, bool) or not isinstance(version, int):
        problems.append(Problem("version", f"must be an integer, not {json_type(version)}"))
    elif not 1 <= version <= MAX_VERSION:
        problems.append(Problem("version", f"must be between 1 and {MAX_VERSION}"))
    push = data.get("config")
    if push is None:
        problems.append(Problem("config", "required"))
    elif not isinstance(push, dict):
        problems.append(Problem("config", f"must be an object, not {json_type(push)}"))
    expires = None
    if "expires" in data:
        parsed = parse_expiry(data["expires"])
        if isinstance(parsed, str):
            problems.append(Problem("expires", parsed))
        else:
            expires = parsed
    if problems:
        return reject(problems, request_id)
    assert isinstance(version, int) and isinstance(push, dict) and request_id is not None

    signed = bool(state.config.security.admin_keys)
    bad_sig = _check_signature(state.config, data, "config/set")
    if bad_sig is not None:
        return reject([bad_sig], request_id)

    if request_id == state.request_id and version == state.version:
        # QoS 1 re-delivery of what is already applied: same answer, no change.
        return ConfigOutcome(ConfigResult(request_id, True, state.version))

    if version <= state.highest_version:
        problems.append(
            Problem("version", f"must be greater than {state.highest_version}, the highest version this unit accepted")
        )
    _check_expiry(expires, now, problems)
    if problems:
        return reject(problems, request_id)

    for path in sorted(_leaf_paths(push)):
        for key, rule in _restricted(path):
            if rule.remote == "never":
                problems.append(Problem(f"config.{path}", f"{key} may not be changed remotely"))
            elif not signed:
                problems.append(
                    Problem(
                        f"config.{path}",
                        f"{key} may only be changed by a signed request, and signing is not configured on this unit",
                    )
                )
    if problems:
        return reject(problems, request_id)

    overlay = merge_overlay(state.overlay, push)
    try:
        config = effective_config(state.base, overlay, validate=validate)
    except ConfigError as exc:
        return reject([Problem(_config_loc(loc), msg) for loc, msg in exc.problems], request_id)
    problems.extend(_check_new_keys(state.config, config))
    if problems:
        return reject(problems, request_id)

    change = ConfigChange.between(state.config, config)
    new_state = ConfigState(
        base=state.base,
        overlay=overlay,
        version=version,
        highest_version=version,
        request_id=request_id,
        pending=state.pending or change.dangerous,
        config=config,
    )
    result = ConfigResult(request_id, True, version, (), change.restart_required)
    return ConfigOutcome(result, new_state, change)


def _config_loc(loc: str) -> str:
    return f"config.{loc}" if loc else "config"


def _leaf_paths(data: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping) and value:
            yield from _leaf_paths(value, path)
        else:
            yield path


def _check_new_keys(old: AgentConfig, new: AgentConfig) -> list[Problem]:
    if new.security.admin_keys == old.security.admin_keys:
        return []
    loc = "config.security.admin_keys"
    if not new.security.admin_keys:
        return [Problem(loc, "may not be emptied remotely: that would turn signing off")]
    try:
        signing.parse_public_keys(new.security.admin_keys)
    except ValueError as exc:
        return [Problem(loc, str(exc).removeprefix("admin_keys"))]
    return []


def rolled_back_result(request_id: str | None, rolled_back: int, state: ConfigState, timeout_s: float) -> ConfigResult:
    """``config/result`` for a dangerous push undone by the guard; ``state`` is after rollback."""
    msg = (
        f"rolled back to version {state.version}: no broker accepted the unit "
        f"with version {rolled_back} within {timeout_s:g} s"
    )
    return ConfigResult(request_id, False, state.version, (Problem("config.mqtt", msg),))


# ------------------------------------------------------------ rollback guard


@dataclass(frozen=True, slots=True)
class Armed:
    version: int
    request_id: str | None
    deadline: float  # monotonic seconds


class RollbackGuard:
    """Undo a dangerous change that cut the unit off from every broker.

    ``arm()`` when a dangerous change is applied (and at start when the loaded
    config is still ``pending``); ``connected()`` when the link is up with the
    new settings *and the broker accepted a publish*: the first QoS 1 publish
    after CONNACK (the ``config/current`` or ``online`` message) acknowledged
    with a reason code below 0x80. A bare CONNACK is not enough: a wrong
    prefix or identity connects fine and is then refused by the ACL, which
    Mosquitto 2.0 reports only in the PUBACK (0x87, MQTT 5); it grants any
    subscription. ``tick()`` on every tick: it returns the armed change, once,
    when the deadline passes unconfirmed. Times are monotonic seconds.
    """

    def __init__(self, timeout_s: float):
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        self._armed: Armed | None = None

    @property
    def armed(self) -> Armed | None:
        return self._armed

    def arm(self, now: float, version: int, request_id: str | None, timeout_s: float | None = None) -> None:
        """Start (or restart) the wait; ``timeout_s`` overrides the default."""
        if self._armed is not None:
            # A further push while still unconfirmed: same deadline, newest version.
            self._armed = Armed(version, request_id, self._armed.deadline)
            return
        self._armed = Armed(version, request_id, now + (timeout_s if timeout_s is not None else self.timeout_s))

    def connected(self, now: float, version: int | None = None) -> Armed | None:
        """The link is up with config ``version``: returns what this confirmed.

        ``version`` guards against a stale "connected" from the link that was
        being replaced; pass the version the connection was made with.
        """
        armed = self._armed
        if armed is None or (version is not None and version != armed.version):
            return None
        if now > armed.deadline:
            return None  # too late: tick() decides
        self._armed = None
        return armed

    def tick(self, now: float) -> Armed | None:
        armed = self._armed
        if armed is None or now <= armed.deadline:
            return None
        self._armed = None
        return armed


# ------------------------------------------------------------ commands


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The ``cmd/result`` payload."""

    id: str | None
    ok: bool
    command: str | None
    errors: tuple[Problem, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ok": self.ok,
            "command": self.command,
            "errors": [{"loc": p.loc, "msg": p.msg} for p in self.errors],
        }

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    command: Literal["report_position", "flush_backlog"]
    expires: dt.datetime | None = None

    def done(self, errors: tuple[Problem, ...] = ()) -> CommandResult:
        return CommandResult(self.id, not errors, self.command, errors)


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """Either ``command`` to run (then publish ``command.done()``) or ``rejected``."""

    command: Command | None = None
    rejected: CommandResult | None = None


class RecentIds:
    """Ids of the commands already run, so a re-delivery or replay runs nothing.

    Bounded: entries leave when their request expires, or oldest first
    beyond ``capacity``.
    """

    def __init__(self, capacity: int = 1024):
        self.capacity = capacity
        self._until: OrderedDict[str, dt.datetime | None] = OrderedDict()

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._until

    def __len__(self) -> int:
        return len(self._until)

    def remember(self, request_id: str, until: dt.datetime | None, now: dt.datetime) -> None:
        for old in [k for k, t in self._until.items() if t is not None and t <= now]:
            del self._until[old]
        self._until[request_id] = until
        self._until.move_to_end(request_id)
        while len(self._until) > self.capacity:
            self._until.popitem(last=False)


def parse_command(
    payload: bytes, config: AgentConfig, now: dt.datetime, recent: RecentIds
) -> CommandOutcome:
    """Validate a ``cmd`` payload; an accepted id is remembered in ``recent``.

    Same rules as config pushes (size, JSON, members, signature, expiry); an
    expiry is required when signing is on, and may be at most
    :data:`COMMAND_MAX_LIFETIME` ahead (a signed command has no version, so
    its lifetime and the id memory are what stop a replay).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")

    def reject(problems: list[Problem], request_id: str | None, command: str | None) -> CommandOutcome:
        return CommandOutcome(rejected=CommandResult(request_id, False, command, tuple(problems)))

    data, problems = decode_payload(payload)
    if data is None:
        return reject(problems, None, None)
    request_id = _request_id(data)
    name = data.get("command")
    shown = name if isinstance(name, str) and name in COMMANDS else None

    _check_unknown(data, COMMAND_REQUEST_KEYS, problems)
    _check_id(data, problems)
    if name is None:
        problems.append(Problem("command", "required"))
    elif name not in COMMANDS:
        problems.append(Problem("command", f"unknown command; known: {', '.join(COMMANDS)}"))
    signed = bool(config.security.admin_keys)
    expires = None
    if "expires" in data:
        parsed = parse_expiry(data["expires"])
        if isinstance(parsed, str):
            problems.append(Problem("expires", parsed))
        else:
            expires = parsed
    elif signed:
        problems.append(Problem("expires", "required for signed commands"))
    if problems:
        return reject(problems, request_id, shown)
    assert request_id is not None and shown is not None

    bad_sig = _check_signature(config, data, "cmd")
    if bad_sig is not None:
        return reject([bad_sig], request_id, shown)

    if request_id in recent:
        return reject([Problem("id", "this command was already handled")], request_id, shown)
    _check_expiry(expires, now, problems)
    if expires is not None and expires - now > COMMAND_MAX_LIFETIME:
        hours = COMMAND_MAX_LIFETIME.total_seconds() / 3600
        problems.append(Problem("expires", f"a command may be valid for at most {hours:g} h"))
    if problems:
        return reject(problems, request_id, shown)

    recent.remember(request_id, expires, now)
    return CommandOutcome(command=Command(request_id, shown, expires))  # type: ignore[arg-type]
