"""Remote commands (``<prefix>/<unit>/cmd``): check one, say what to run.

Pure: bytes, the config, the time and the replay memory in, an outcome out.
The same payload rules as config pushes (:mod:`agent.core.requests`); a
command has no version, so its ``expires`` (required when the unit has admin
keys, at most :data:`COMMAND_MAX_LIFETIME` ahead) and the replay memory are
what stop a replay: an id already run is refused, also after a restart.

Without trusted time a command is refused only when the floor of authenticated time proves
it expired (:mod:`agent.core.time_floor`); otherwise it runs. The commands are
``report_position`` (dispatch asking where a unit that has just rebooted is) and
``flush_backlog``: neither changes what the unit is, and a replayed one within its life is
still refused by its id (``docs/safety.md``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, get_args

from agent.config import AgentConfig
from agent.core import messages
from agent.core.replay import ReplayMemory, request_key
from agent.core.requests import (
    Problem, check_signature, decode_payload, judge_expiry, read_expiry, read_issued, request_id, unchecked_signature,
)
from agent.core.time_floor import UnitClock

COMMANDS: tuple[str, ...] = get_args(messages.CommandName)
# A command may not be valid for longer than this (bounds replay of a signed one).
COMMAND_MAX_LIFETIME = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The ``cmd/result`` payload."""

    id: str | None
    ok: bool
    command: str | None
    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()

    def as_dict(self, **stamp: str) -> dict[str, Any]:
        """The payload (:class:`agent.core.messages.CommandResult`), with ``ts`` and ``time_source`` when given."""
        if self.warnings:
            stamp = {**stamp, "warnings": [{"loc": p.loc, "msg": p.msg} for p in self.warnings]}  # type: ignore[dict-item]
        return messages.CommandResult(
            id=self.id, ok=self.ok, command=self.command, errors=[{"loc": p.loc, "msg": p.msg} for p in self.errors],
            **stamp,
        ).to_json()

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    command: messages.CommandName
    expires: dt.datetime | None = None

    warnings: tuple[Problem, ...] = ()  # said in the result, whatever running it gives
    issued: dt.datetime | None = None  # signed by an admin key: proof of the time

    def done(self, errors: tuple[Problem, ...] = ()) -> CommandResult:
        return CommandResult(self.id, not errors, self.command, errors, self.warnings)


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """Either ``command`` to run (then publish ``command.done()``) or ``rejected``."""

    command: Command | None = None
    rejected: CommandResult | None = None
    issued: dt.datetime | None = None  # the request's issued, once its signature held: proof of the time


def parse_command(payload: bytes, config: AgentConfig, now: dt.datetime | UnitClock,
                  recent: ReplayMemory) -> CommandOutcome:
    """Validate a ``cmd`` payload at ``now`` (a trusted UTC time, or the unit's
    :class:`~agent.core.time_floor.UnitClock`); an accepted id is remembered in ``recent``."""
    clock = UnitClock.of(now)
    issued: dt.datetime | None = None

    def reject(problems: list[Problem], rid: str | None, command: str | None) -> CommandOutcome:
        return CommandOutcome(rejected=CommandResult(rid, False, command, tuple(problems), warnings), issued=issued)

    data, problems = decode_payload(payload)
    unchecked = unchecked_signature(config.security.admin_keys, data)
    warnings = (unchecked,) if unchecked else ()
    if data is None:
        return reject(problems, None, None)
    rid = request_id(data)
    name = data.get("command")
    shown = name if isinstance(name, str) and name in COMMANDS else None

    problems += [Problem(loc, msg) for loc, msg in messages.request_problems(messages.CommandRequest, data)]
    signed = bool(config.security.admin_keys)
    expires = read_expiry(data, problems, required=signed, why="for signed commands")
    stamped = read_issued(data, problems, expires, COMMAND_MAX_LIFETIME, "a command")
    if problems:
        return reject(problems, rid, shown)
    assert rid is not None and shown is not None

    bad_sig = check_signature(config.security.admin_keys, config.unit.id, data, "cmd")
    if bad_sig is not None:
        return reject([bad_sig], rid, shown)
    issued = stamped if signed else None

    key = request_key("cmd", rid)
    if recent.seen(key):
        return reject([Problem("id", "this command was already handled")], rid, shown)
    judge_expiry(expires, clock, problems, COMMAND_MAX_LIFETIME, "a command")  # unjudged: it runs
    if problems:
        return reject(problems, rid, shown)
    if not recent.remember(key, expires, clock.proven):
        return reject([Problem("id", "the unit could not keep this request's id (its replay memory is full or cannot be written); nothing was run; try again later")], rid, shown)
    return CommandOutcome(command=Command(rid, shown, expires, warnings, issued), issued=issued)  # type: ignore[arg-type]
