"""Signed dispatch: ``call``, ``alarm/ack`` and ``alarm/clear`` under ``[security] dispatch_keys``.

Pure: the message, the config, the time and the replay memory in, a verdict
out. Without dispatch keys every message passes (the broker ACL alone
decides who may send them, as before). With keys, a message must carry:

- ``sig``: Ed25519 by one of ``dispatch_keys`` over the message without
  ``sig`` plus ``"unit"`` and ``"purpose"`` (the topic: ``"call"``,
  ``"alarm/ack"``, ``"alarm/clear"``), in the canonical form of
  :mod:`agent.core.signing`, exactly as admin requests are signed;
- ``expires``: ISO 8601 with a zone, in the future and at most
  :data:`DISPATCH_MAX_LIFETIME` ahead on the unit's clock.

The rest of the message is the contract it always was (``docs/mqtt-api.md``),
checked afterwards by the core as for an unsigned one; ``sig`` and
``expires`` are members the call and alarm parsers ignore.

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
from agent.core import signing
from agent.core.replay import ReplayMemory, message_key
from agent.core.requests import Problem, check_expiry, check_signature, decode_payload, read_expiry

DISPATCH_TOPICS = signing.DISPATCH_PURPOSES
DISPATCH_MAX_LIFETIME = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class DispatchVerdict:
    """``accepted``: hand the message to the core; else ``replay`` (drop it) or ``error`` (refuse it)."""

    accepted: bool
    id: str | int | None = None  # the call or alarm id, when readable
    error: str | None = None
    replay: bool = False


def signing_required(config: AgentConfig) -> bool:
    return bool(config.security.dispatch_keys)


def check_dispatch(
    topic: str, payload: bytes, config: AgentConfig, now: dt.datetime, recent: ReplayMemory
) -> DispatchVerdict:
    """Judge one dispatch message; an accepted one is remembered in ``recent``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
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
    if problems:
        return DispatchVerdict(False, shown, _text(problems))
    bad_sig = check_signature(config.security.dispatch_keys, config.unit.id, data, topic, "dispatch")  # type: ignore[arg-type]
    if bad_sig is not None:
        return DispatchVerdict(False, shown, _text([bad_sig]))
    key = message_key(topic, signing.signed_bytes(config.unit.id, topic, data))  # type: ignore[arg-type]
    if recent.seen(key):
        return DispatchVerdict(False, shown, "this message was already handled", replay=True)
    check_expiry(expires, now, problems, DISPATCH_MAX_LIFETIME, "a dispatch message")
    if problems:
        return DispatchVerdict(False, shown, _text(problems))
    if not recent.remember(key, expires, now):
        return DispatchVerdict(False, shown, "the unit could not keep this message's id (its replay memory is full or cannot be written); send it again later")
    return DispatchVerdict(True, shown)


def _shown_id(topic: str, data: dict[str, Any]) -> str | int | None:
    value = data.get("id")
    if topic == "call":
        return value if isinstance(value, str) and 0 < len(value) <= 64 else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(problems: list[Problem]) -> str:
    return "; ".join(f"{p.loc}: {p.msg}" if p.loc else p.msg for p in problems)
