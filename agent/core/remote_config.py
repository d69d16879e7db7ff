"""Remote configuration (``<prefix>/<unit>/config/set``): validate, merge, classify.

Pure: bytes and the time in, decisions out. The runtime's remote-request
worker (:mod:`agent.adapters.remote_worker`) calls :func:`handle_config_set`
for every push; it persists what comes back (:mod:`agent.adapters.config_store`)
and the core applies it. The request checks this shares with commands and
signed dispatch are in :mod:`agent.core.requests`; which keys may change and
how they take effect in :mod:`agent.core.key_rules`; the guard that undoes a
broker change that cut the unit off in :mod:`agent.core.rollback_guard`.

The config layers
-----------------
The effective config is the local TOML file (the *base*, read-only under
systemd) with the *overlay* on top: every remote push accepted so far,
deep-merged into one partial config. Merging: tables merge key by key, lists
and scalars replace, and ``null`` removes that key from the overlay so the
value falls back to the TOML file's (or the default). The merged result is
validated with the same :class:`~agent.config.AgentConfig` schema as the file,
in strict mode (JSON has types; ``"5"`` is not a port), by the ``validate``
function the caller gives (:data:`agent.config.Validate`).

A push is checked in this order, and refused with every problem of the
first failing stage (``loc`` is ``""`` for the whole payload, a request member
such as ``version``, or ``config.<key path>``):

1. payload (see :mod:`agent.core.requests`);
2. members: ``id`` (string, 1-128 characters), ``version`` (integer 1..2**53-1),
   ``config`` (object), ``expires`` (ISO 8601 with a zone, e.g.
   ``2025-03-01T12:00:00Z``; required when the unit has admin keys, at most
   :data:`CONFIG_MAX_LIFETIME` ahead), optional ``sig``; nothing else;
3. signature, when ``[security] admin_keys`` is not empty (see ``signing``);
4. a re-delivery of the request that made the current version (same ``id`` and
   ``version``) is answered ``ok`` again and changes nothing;
5. an id already accepted (the replay memory, kept across restarts), a
   ``version`` above every version ever accepted (a rolled-back version stays
   used), ``expires`` still in the future on the unit's clock. Without trusted time a push
   waits (:data:`~agent.core.time_floor.UNJUDGEABLE`), unless the floor of authenticated
   time already proves it expired: a config change can wait for the sky, and it is the one
   request whose effect lasts (``docs/safety.md``);
6. keys that may not be changed remotely (:data:`~agent.core.key_rules.KEY_RULES`),
   then the merged config against the schema; ``security.admin_keys`` and
   ``security.dispatch_keys`` may be replaced by a signed push, never emptied.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agent.config import AgentConfig, ConfigError, Validate
from agent.core import messages, signing
from agent.core.key_rules import ConfigChange, restricted
from agent.core.replay import ReplayMemory, request_key
from agent.core.requests import (
    Problem, check_signature, decode_payload, judge_expiry, read_expiry, read_issued, request_id, unchecked_signature,
)
from agent.core.time_floor import UNJUDGEABLE, Expiry, UnitClock

MAX_VERSION = messages.MAX_VERSION
# `umps-agent admin sign` signs for 7 days by default; a day more for clocks that disagree.
CONFIG_MAX_LIFETIME = dt.timedelta(days=8)


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """The ``config/result`` payload."""

    id: str | None
    ok: bool
    version: int
    errors: tuple[Problem, ...] = ()
    restart_required: bool = False
    warnings: tuple[Problem, ...] = ()

    def as_dict(self, **stamp: str) -> dict[str, Any]:
        """The payload (:class:`agent.core.messages.ConfigResult`), with ``ts`` and ``time_source`` when given."""
        if self.warnings:
            stamp = {**stamp, "warnings": [{"loc": p.loc, "msg": p.msg} for p in self.warnings]}  # type: ignore[dict-item]
        return messages.ConfigResult(
            id=self.id, ok=self.ok, version=self.version, restart_required=self.restart_required,
            errors=[{"loc": p.loc, "msg": p.msg} for p in self.errors], **stamp,
        ).to_json()

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), ensure_ascii=False).encode("utf-8")


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


def current_message(state: ConfigState, secrets_version: int | None = None, **stamp: str) -> dict[str, Any]:
    """The retained ``config/current`` payload: version, hash, redacted config (and ``secrets_version``,
    ``ts`` and ``time_source`` when given)."""
    fields: dict[str, Any] = {"secrets_version": secrets_version} if secrets_version is not None else {}
    return messages.ConfigCurrent(
        version=state.version, hash=state.config.digest(), config=state.config.redacted(), **fields, **stamp,
    ).to_json()


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
    # The request's ``issued``, once its signature by an admin key held: proof of the time.
    issued: dt.datetime | None = None

    @property
    def accepted(self) -> bool:
        return self.state is not None


def handle_config_set(
    payload: bytes, state: ConfigState, now: dt.datetime | UnitClock, validate: Validate,
    recent: ReplayMemory | None = None,
) -> ConfigOutcome:
    """Validate a ``config/set`` payload against ``state`` at ``now`` (a trusted UTC time, or the
    unit's :class:`~agent.core.time_floor.UnitClock`).

    ``recent``: the replay memory; an accepted request's id is kept there until
    its ``expires``. (The version alone already refuses an old push; the id
    memory also refuses a captured request whose version was never reached.)
    """
    clock = UnitClock.of(now)
    issued: dt.datetime | None = None

    def reject(problems: list[Problem], request_id: str | None) -> ConfigOutcome:
        return ConfigOutcome(ConfigResult(request_id, False, state.version, tuple(problems), warnings=warnings),
                             issued=issued)

    data, problems = decode_payload(payload)
    unchecked = unchecked_signature(state.config.security.admin_keys, data)
    warnings = (unchecked,) if unchecked else ()
    if data is None:
        return reject(problems, None)
    rid = request_id(data)

    problems += [Problem(loc, msg) for loc, msg in messages.request_problems(messages.ConfigSet, data)]
    version, push = data.get("version"), data.get("config")
    signed = bool(state.config.security.admin_keys)
    expires = read_expiry(data, problems, required=signed, why="for signed requests")
    stamped = read_issued(data, problems, expires, CONFIG_MAX_LIFETIME, "a config push")
    if problems:
        return reject(problems, rid)
    assert isinstance(version, int) and isinstance(push, dict) and rid is not None

    cfg = state.config
    bad_sig = check_signature(cfg.security.admin_keys, cfg.unit.id, data, "config/set")
    if bad_sig is not None:
        return reject([bad_sig], rid)
    issued = stamped if signed else None

    if rid == state.request_id and version == state.version:
        # QoS 1 re-delivery of what is already applied: same answer, no change.
        return ConfigOutcome(ConfigResult(rid, True, state.version, warnings=warnings), issued=issued)

    key = request_key("config/set", rid)
    if recent is not None and recent.seen(key):
        return reject([Problem("id", "this request was already handled")], rid)
    if version <= state.highest_version:
        problems.append(
            Problem("version", f"must be greater than {state.highest_version}, the highest version this unit accepted")
        )
    if judge_expiry(expires, clock, problems, CONFIG_MAX_LIFETIME, "a config push") is Expiry.UNJUDGED:
        problems.append(Problem("expires", UNJUDGEABLE))
    if problems:
        return reject(problems, rid)

    for path in sorted(_leaf_paths(push)):
        for name, rule in restricted(path):
            if rule.remote == "never":
                problems.append(Problem(f"config.{path}", f"{name} may not be changed remotely"))
            elif not signed:
                problems.append(
                    Problem(
                        f"config.{path}",
                        f"{name} may only be changed by a signed request, and signing is not configured on this unit",
                    )
                )
    if problems:
        return reject(problems, rid)

    overlay = merge_overlay(state.overlay, push)
    try:
        config = effective_config(state.base, overlay, validate=validate)
    except ConfigError as exc:
        return reject([Problem(_config_loc(loc), msg) for loc, msg in exc.problems], rid)
    problems.extend(_check_new_keys(state.config, config))
    if problems:
        return reject(problems, rid)

    change = ConfigChange.between(state.config, config)
    new_state = ConfigState(
        base=state.base,
        overlay=overlay,
        version=version,
        highest_version=version,
        request_id=rid,
        pending=state.pending or change.dangerous,
        config=config,
    )
    if recent is not None and not recent.remember(key, expires, clock.proven):
        return reject([Problem("id", "the unit could not keep this request's id (its replay memory is full or cannot be written); nothing was applied; try again later")], rid)
    result = ConfigResult(rid, True, version, (), change.restart_required, warnings)
    return ConfigOutcome(result, new_state, change, issued)


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
    problems = []
    for name in ("admin_keys", "dispatch_keys"):
        before, after = getattr(old.security, name), getattr(new.security, name)
        if after == before:
            continue
        loc = f"config.security.{name}"
        if before and not after:
            problems.append(Problem(loc, "may not be emptied remotely: that would turn signing off"))
            continue
        try:
            signing.parse_public_keys(after, name)
        except ValueError as exc:
            problems.append(Problem(loc, str(exc).removeprefix(name)))
    return problems


def rolled_back_result(request_id: str | None, rolled_back: int, state: ConfigState, timeout_s: float) -> ConfigResult:
    """``config/result`` for a dangerous push undone by the guard; ``state`` is after rollback."""
    msg = (
        f"rolled back to version {state.version}: no broker accepted the unit "
        f"with version {rolled_back} within {timeout_s:g} s"
    )
    return ConfigResult(request_id, False, state.version, (Problem("config.mqtt", msg),))
