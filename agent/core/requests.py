"""Remote requests as received: bytes to a checked JSON object, the checks they share.

Pure: bytes and the time in, problems out. :mod:`agent.core.remote_config`
(``config/set``), :mod:`agent.core.remote_command` (``cmd``) and
:mod:`agent.core.signed_dispatch` (``call``, ``alarm/ack``, ``alarm/clear``
when dispatch is signed) build on these.

A request is refused with every problem of the first failing stage (``loc``
is ``""`` for the whole payload, or a request member such as ``id``,
``expires`` or ``sig``):

1. payload: at most 64 KiB, UTF-8, JSON (no duplicate keys, no NaN), an
   object nested at most 32 deep;
2. members: known ones only, each of its type (the request's model in
   :mod:`agent.core.messages`); ``expires`` an ISO 8601 time with a zone
   (``2025-03-01T12:00:00Z``), required on every signed request;
3. signature, when the unit has keys for that role (see :mod:`agent.core.signing`); a
   unit without keys checks none, and says so in the answer's ``warnings``
   (:func:`unchecked_signature`), so an admin never takes an ``ok`` for a verified one;
4. replay (:mod:`agent.core.replay`) and expiry on the unit's clock, or without a trusted
   clock on the floor of authenticated time (:mod:`agent.core.time_floor`).

A signed request may carry ``issued`` (ISO 8601 with a zone), when it was signed: it must not
be after ``expires``, nor further from it than the request's longest life (no clock needed),
and once the signature holds it is proof of the time for the unit's floor.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.core import inbound_text, signing
from agent.core.json_types import json_type
from agent.core.messages import MAX_ID_CHARS
from agent.core.time_floor import Expiry, UnitClock, lifetime_problem

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Problem:
    loc: str
    msg: str


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
    if inbound_text.too_deep(text, MAX_DEPTH):  # refused before the decoder recurses into it
        return None, [Problem("", f"nested deeper than {MAX_DEPTH} levels")]
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


def request_id(data: Mapping[str, Any]) -> str | None:
    value = data.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS else None


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


def judge_expiry(
    expires: dt.datetime | None, clock: UnitClock, problems: list[Problem],
    max_lifetime: dt.timedelta | None = None, what: str = "a request",
) -> Expiry:
    """``expires`` after now and, with ``max_lifetime``, at most that far ahead, on a trusted clock;
    without one, refused only when the floor proves it expired (:class:`UnitClock`). A request
    without ``expires`` (an unsigned unit) is valid."""
    if expires is None:
        return Expiry.VALID
    verdict, reason = clock.judge(expires, max_lifetime, what)
    if reason is not None:
        problems.append(Problem("expires", reason))
    return verdict


def read_issued(
    data: Mapping[str, Any], problems: list[Problem], expires: dt.datetime | None,
    max_lifetime: dt.timedelta | None, what: str,
) -> dt.datetime | None:
    """The request's ``issued``, when present and consistent with its ``expires``."""
    if "issued" not in data:
        return None
    parsed = parse_expiry(data["issued"])
    if isinstance(parsed, str):
        problems.append(Problem("issued", parsed))
        return None
    if expires is not None and (wrong := lifetime_problem(parsed, expires, max_lifetime, what)):
        problems.append(Problem("issued", wrong))
        return None
    return parsed


def read_expiry(data: Mapping[str, Any], problems: list[Problem], *, required: bool, why: str) -> dt.datetime | None:
    """The request's ``expires``; a problem when it is malformed, or absent and ``required``."""
    if "expires" not in data:
        if required:
            problems.append(Problem("expires", f"required {why}"))
        return None
    parsed = parse_expiry(data["expires"])
    if isinstance(parsed, str):
        problems.append(Problem("expires", parsed))
        return None
    return parsed


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_signature(
    key_texts: Sequence[str], unit_id: str, data: Mapping[str, Any], purpose: signing.Purpose,
    role: str = "admin",
) -> Problem | None:
    """None when the request is acceptable as far as signing goes (no keys: signing off)."""
    if not key_texts:
        return None
    keys = []
    for text in key_texts:
        try:
            keys.append(signing.parse_public_key(text))
        except ValueError:
            continue  # a bad key is reported by `config check`; the others still work
    if not keys:
        return Problem("sig", f"no usable {role} key is configured on this unit; refusing every request")
    try:
        signing.verify_request(keys, unit_id, data, purpose, role)
    except signing.SignatureError as exc:
        return Problem("sig", str(exc))
    return None


def unchecked_signature(key_texts: Sequence[str], data: Mapping[str, Any] | None, role: str = "admin") -> Problem | None:
    """The warning for a request that carries ``sig`` to a unit with no keys for ``role``, else None."""
    if key_texts or not isinstance(data, Mapping) or signing.SIG_FIELD not in data:
        return None
    return Problem(signing.SIG_FIELD, f"ignored: this unit has no [security] {role}_keys, so it checks no signature "
                                      "and takes unsigned requests too")
