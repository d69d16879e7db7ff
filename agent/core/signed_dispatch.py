"""Signed dispatch: ``call``, ``alarm/ack`` and ``alarm/clear`` under ``[security] dispatch_keys``.

Pure: the message, the config, the time and the replay memory in, a verdict
out. Without dispatch keys every message passes (the broker ACL alone
decides who may send them, as before). With keys, a message must carry:

- ``sig``: Ed25519 by one of ``dispatch_keys`` over the message without
  ``sig`` plus ``"unit"`` and ``"purpose"`` (the topic: ``"call"``,
  ``"alarm/ack"``, ``"alarm/clear"``), in the canonical form of
  :mod:`agent.core.signing`, exactly as admin requests are signed;
- ``expires``: ISO 8601 with a zone, in the future and at most
  :data:`DISPATCH_MAX_LIFETIME` ahead on the unit's clock;
- optionally ``issued``, when it was signed: not after ``expires`` nor more than
  :data:`DISPATCH_MAX_LIFETIME` before it, and proof of the time for the unit's
  floor (:mod:`agent.core.time_floor`).

A signed call is never refused only because its expiry cannot be judged: without
trusted time it is refused when the floor of authenticated time proves it
expired, and taken otherwise (the screens mark its age unverified while the
unit has no trusted time). Its copies are still dropped by the replay memory.

The rest of the message is the contract it always was (``docs/mqtt-api.md``),
checked afterwards by the core as for an unsigned one; ``sig`` and
``expires`` are members the call and alarm parsers ignore.

``alarm/ack`` and ``alarm/clear`` need no clock and no disk (``docs/safety.md``):
an answer to an alarm is fresh because it names the alarm, by an id no other
alarm ever had (:mod:`agent.core.alarm_id`), not because of its ``expires``.
So a signed one must name its alarm (``id``; an answer to "the current alarm"
could be replayed against a later one and is refused), its ``expires`` must be
well formed but is not judged, and it is not looked up in the replay memory:
the core applies it to the alarm it names only, and a copy of one already
applied changes nothing. A dispatcher's answer delayed past its expiry by a
dead zone, a unit whose clock is not yet set, or a replay memory that cannot
be written never stand between dispatch and the officer.

A refused message never reaches the crew or the alarm: a call is answered on
``call/rejected``, an ack or clear on ``alarm/rejected`` and the alarm stays
as it was. A copy of a message already accepted (the replay memory, kept
across restarts until the message expires) is dropped and counted: its first
copy already took effect, and answering it would tell dispatch a call it is
handling was refused.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from agent.config import AgentConfig
from agent.core import alarm_id, signing
from agent.core.messages import validate_alarm_ref
from agent.core.replay import ReplayMemory, message_key
from agent.core.requests import Problem, check_signature, decode_payload, judge_expiry, read_expiry, read_issued
from agent.core.time_floor import Expiry, UnitClock

DISPATCH_TOPICS = signing.DISPATCH_PURPOSES
DISPATCH_MAX_LIFETIME = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class DispatchVerdict:
    """``accepted``: hand the message to the core; else ``replay`` (drop it) or ``error`` (refuse it)."""

    accepted: bool
    id: str | None = None  # the call or alarm id, when readable
    error: str | None = None
    replay: bool = False
    issued: dt.datetime | None = None  # its issued, once the signature held: proof of the time
    unjudged: bool = False  # accepted without trusted time: its expiry could not be judged


def signing_required(config: AgentConfig) -> bool:
    return bool(config.security.dispatch_keys)


def check_dispatch(
    topic: str, payload: bytes, config: AgentConfig, now: dt.datetime | UnitClock, recent: ReplayMemory
) -> DispatchVerdict:
    """Judge one dispatch message at ``now`` (a trusted UTC time, or the unit's
    :class:`~agent.core.time_floor.UnitClock`); an accepted call is remembered in ``recent``."""
    clock = UnitClock.of(now)
    if topic not in DISPATCH_TOPICS:
        raise ValueError(f"not a dispatch topic: {topic}")
    if not signing_required(config):
        return DispatchVerdict(True)
    if not payload.strip():
        return DispatchVerdict(False, None, "sig: required: this unit only accepts signed dispatch messages")
    data, problems = decode_payload(payload)
    if data is None:
        return DispatchVerdict(False, None, _text(problems))
    shown = _shown_id(topic, data)
    expires = read_expiry(data, problems, required=True, why="on signed dispatch messages")
    # An alarm answer's issued only ever serves as proof: a stamp that does not fit its expiry
    # must not stop dispatch's answer to an officer.
    stamp_problems: list[Problem] = problems if topic == "call" else []
    stamped = read_issued(data, stamp_problems, expires, DISPATCH_MAX_LIFETIME, "a dispatch message")
    if topic != "call":
        _check_alarm_answer(topic, data, problems)
    if problems:
        return DispatchVerdict(False, shown, _text(problems))
    bad_sig = check_signature(config.security.dispatch_keys, config.unit.id, data, topic, "dispatch")  # type: ignore[arg-type]
    if bad_sig is not None:
        return DispatchVerdict(False, shown, _text([bad_sig]))
    issued = stamped
    if topic != "call":
        # The alarm id makes it fresh: no clock, no replay memory.
        return DispatchVerdict(True, shown, issued=issued)
    key = message_key(topic, signing.signed_bytes(config.unit.id, topic, data))  # type: ignore[arg-type]
    if recent.seen(key):
        return DispatchVerdict(False, shown, "this message was already handled", replay=True, issued=issued)
    judged = judge_expiry(expires, clock, problems, DISPATCH_MAX_LIFETIME, "a dispatch message")
    if problems:
        return DispatchVerdict(False, shown, _text(problems), issued=issued)
    if not recent.remember(key, expires, clock.proven):
        return DispatchVerdict(False, shown, "the unit could not keep this message's id (its replay memory is full or cannot be written); send it again later", issued=issued)
    return DispatchVerdict(True, shown, issued=issued, unjudged=judged is Expiry.UNJUDGED)


def _check_alarm_answer(topic: str, data: dict[str, Any], problems: list[Problem]) -> None:
    """A signed ``alarm/ack`` or ``alarm/clear`` names its alarm, by a well-formed id."""
    ref = validate_alarm_ref(data)
    if isinstance(ref, list):
        problems.extend(Problem("id", text.removeprefix("id: ")) for text in ref)
    elif ref.id is None:
        problems.append(Problem("id", f"required on a signed {topic}: name the alarm (the id of the unit's alarm "
                                      "message); an answer to \"the current alarm\" could be replayed against a later one"))


def _shown_id(topic: str, data: dict[str, Any]) -> str | None:
    value = data.get("id")
    if topic == "call":
        return value if isinstance(value, str) and 0 < len(value) <= 64 else None
    return alarm_id.normalise(value)


def _text(problems: list[Problem]) -> str:
    return "; ".join(f"{p.loc}: {p.msg}" if p.loc else p.msg for p in problems)
