"""Dispatch calls: the call contract and each call's lifecycle on the unit.

Rules
-----
* A call arrives on ``<prefix>/<unit>/call`` as JSON ``{"id", "action":
  "new"|"update"|"cancel", "priority": 1|2|3, "nature", "code"?, "address",
  "address_short"?, "location"?: {"lat", "lon"}, "details"?, "caller"?, "created"}``;
  the contract (fields, bounds, the answers on ``call/rejected``) is the model
  :class:`.messages.CallMessage`, from which ``docs/asyncapi.json`` is generated.
* Anything over 16 KiB, not UTF-8, not JSON, holding text that is not valid
  Unicode (:mod:`.inbound_text`), or failing validation is never
  shown: :meth:`CallBook.receive` returns a :class:`Rejected` with a reason a
  dispatcher can act on (the shell publishes it on ``call/rejected``).
* Text fields are cleaned for the screens by :func:`.inbound_text.display_text`
  (control characters and bidi overrides go) before their lengths are checked.
* Fields the contract does not name are ignored, so a dispatch centre can add
  fields without breaking units already in the field.
* The same ``id`` twice is not a second alert: a repeated ``new`` (MQTT QoS 1
  redelivery, a dispatcher pressing send twice) only updates what changed.
* Out of order: an ``update`` for an unknown id that carries a full call is
  taken as the call; a ``cancel`` for an unknown id is remembered, so the
  ``new`` that arrives after it is not shown.
* The crew answers with responses. Forward jumps are allowed (a crew may reach
  the scene before pressing "en route"); going back is refused::

      new --received--> received --accepted--> accepted --en_route--> en_route
          --on_scene--> on_scene --cleared--> (closed)
      received/accepted --declined--> (closed)         dispatch cancel --> (closed)

* One call is shown at a time: the most urgent one the crew has not yet
  accepted, else the one they are working. Closed calls leave the book.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, get_args

from . import inbound_text
from .messages import NEW_CALL_NEEDS, CallMessage, Response, validate_call


MAX_CALL_BYTES = 16 * 1024
MAX_OPEN_CALLS = 16
REMEMBERED_IDS = 512

# Response codes, and the call state each one leads to.
RESPONSES: tuple[str, ...] = get_args(Response)
_ORDER = {"new": 0, "received": 1, "accepted": 2, "en_route": 3, "on_scene": 4, "cleared": 5}
# Status the unit takes when the crew gives a response (None: unchanged).
STATUS_AFTER_RESPONSE = {"en_route": "en_route", "on_scene": "on_scene", "cleared": "available"}


@dataclass(frozen=True, slots=True)
class Call:
    """A call the unit holds, with where the crew is with it."""

    id: str
    priority: int
    nature: str
    address: str
    created: dt.datetime
    code: str | None = None
    address_short: str | None = None  # the dispatcher's short form, for the small panel
    location: tuple[float, float] | None = None
    details: str | None = None
    caller: str | None = None
    state: str = "new"  # new, received, accepted, en_route, on_scene
    received_mono: float = 0.0
    updated: dt.datetime | None = None

    @property
    def acknowledged(self) -> bool:
        return _ORDER[self.state] >= _ORDER["accepted"]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "priority": self.priority,
            "nature": self.nature,
            "code": self.code,
            "address": self.address,
            "address_short": self.address_short,
            "location": {"lat": self.location[0], "lon": self.location[1]} if self.location else None,
            "details": self.details,
            "caller": self.caller,
            "created": iso(self.created),
            "state": self.state,
            "updated": iso(self.updated) if self.updated else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Call":
        loc = data.get("location")
        return cls(
            id=data["id"],
            priority=int(data["priority"]),
            nature=data["nature"],
            address=data["address"],
            created=dt.datetime.fromisoformat(data["created"].replace("Z", "+00:00")),
            code=data.get("code"),
            address_short=data.get("address_short"),
            location=(loc["lat"], loc["lon"]) if loc else None,
            details=data.get("details"),
            caller=data.get("caller"),
            state=data.get("state", "new"),
            updated=dt.datetime.fromisoformat(data["updated"].replace("Z", "+00:00")) if data.get("updated") else None,
        )


def iso(value: dt.datetime) -> str:
    """UTC ISO 8601 with milliseconds and a ``Z``."""
    value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class Rejected:
    id: str | None
    error: str


@dataclass(frozen=True, slots=True)
class Alert:
    """A call to put on the displays; ``first`` is true for a new alert."""

    call: Call
    first: bool


@dataclass(frozen=True, slots=True)
class Updated:
    call: Call


@dataclass(frozen=True, slots=True)
class Cancelled:
    call: Call | None  # None: the call was not shown yet (cancel came first)
    reason: str | None


@dataclass(frozen=True, slots=True)
class Ignored:
    """Not an error, nothing to show: a duplicate or a message about a closed call."""

    id: str
    why: str


Outcome = Rejected | Alert | Updated | Cancelled | Ignored


@dataclass(frozen=True, slots=True)
class Response:
    call: Call  # the call after the response
    response: str
    status: str | None  # status the unit should take, if any
    closed: bool


@dataclass(frozen=True, slots=True)
class ResponseRefused:
    response: str
    reason: str  # "no_call", "not_allowed"


# ---------------------------------------------------------------- parsing


def parse_call(payload: bytes) -> CallMessage | Rejected:
    """Validate one ``call`` payload; never raises."""
    if len(payload) > MAX_CALL_BYTES:
        return Rejected(None, f"payload too large: {len(payload)} bytes, limit {MAX_CALL_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(None, f"not UTF-8: invalid byte at offset {exc.start}")
    try:
        data = inbound_text.loads(text)
    except inbound_text.BadText as exc:
        return Rejected(None, str(exc))
    except inbound_text.TooDeep:
        return Rejected(None, "not JSON: nested too deeply")
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        return Rejected(None, f"not JSON: {detail}")
    if not isinstance(data, dict):
        return Rejected(None, f"not a JSON object: got {type(data).__name__}")
    call_id = data.get("id") if isinstance(data.get("id"), str) and len(data["id"]) <= 64 else None
    message = validate_call(data)
    if isinstance(message, list):
        # Every problem at once, the fields a new call lacks too: a dispatcher fixes them in one go.
        if data.get("action") == "new":
            named = {problem.split(":", 1)[0].split(".", 1)[0] for problem in message}
            missing = [name for name in NEW_CALL_NEEDS if data.get(name) is None and name not in named]
            if missing:
                message.append(f"a new call needs: {', '.join(missing)}")
        return Rejected(call_id, "; ".join(message))
    if message.action == "new":
        missing = message.missing_for_new()
        if missing:
            return Rejected(message.id, f"a new call needs: {', '.join(missing)}")
    return message


# ------------------------------------------------------------------ book


@dataclass
class CallBook:
    """The calls this unit holds. Pure: times are passed in."""

    calls: "OrderedDict[str, Call]" = field(default_factory=OrderedDict)
    # Ids already closed (cleared, declined, cancelled), newest last; bounded.
    closed: "OrderedDict[str, str]" = field(default_factory=OrderedDict)
    rejected_count: int = 0

    # -- inbound

    def receive(self, payload: bytes, now_wall: dt.datetime, now_mono: float) -> Outcome:
        parsed = parse_call(payload)
        if isinstance(parsed, Rejected):
            self.rejected_count += 1
            return parsed
        return self.apply(parsed, now_wall, now_mono)

    def apply(self, msg: CallMessage, now_wall: dt.datetime, now_mono: float) -> Outcome:
        if msg.id in self.closed:
            return Ignored(msg.id, f"call already {self.closed[msg.id]}")
        current = self.calls.get(msg.id)
        if msg.action == "cancel":
            self._close(msg.id, "cancelled")
            return Cancelled(current, msg.reason)
        if current is None:
            if msg.missing_for_new():
                self.rejected_count += 1
                return Rejected(msg.id, f"unknown call id, and the update is not a full call (needs: {', '.join(msg.missing_for_new())})")
            if len(self.calls) >= MAX_OPEN_CALLS:
                self.rejected_count += 1
                return Rejected(msg.id, f"unit already holds {MAX_OPEN_CALLS} open calls; clear or cancel some first")
            call = self._merge(None, msg, now_wall, now_mono)
            self.calls[msg.id] = call
            return Alert(call, first=True)
        if msg.action == "new":
            # A re-delivery (QoS 1, a reconnect): changes go by "update", so a late
            # copy of the original never undoes an update that overtook it.
            return Ignored(msg.id, "duplicate")
        merged = self._merge(current, msg, now_wall, now_mono)
        if _content(merged) == _content(current):
            return Ignored(msg.id, "duplicate")
        self.calls[msg.id] = merged
        return Updated(merged)

    @staticmethod
    def _merge(current: Call | None, msg: CallMessage, now_wall: dt.datetime, now_mono: float) -> Call:
        def pick(name: str) -> Any:
            value = getattr(msg, name)
            return value if value is not None else (getattr(current, name) if current else None)

        location = (msg.location.lat, msg.location.lon) if msg.location else (current.location if current else None)
        return Call(
            id=msg.id,
            priority=pick("priority"),
            nature=pick("nature"),
            address=pick("address"),
            created=pick("created"),
            code=pick("code"),
            address_short=pick("address_short"),
            location=location,
            details=pick("details"),
            caller=pick("caller"),
            state=current.state if current else "new",
            received_mono=current.received_mono if current else now_mono,
            updated=now_wall if current else None,
        )

    # -- crew responses

    def respond(self, response: str, call_id: str | None = None) -> Response | ResponseRefused:
        """Apply a crew (or the agent's own ``received``) response to a call."""
        call = self.calls.get(call_id) if call_id else self.shown()
        if call is None:
            return ResponseRefused(response, "no_call")
        if response == "declined":
            if call.acknowledged:
                return ResponseRefused(response, "not_allowed")
            self._close(call.id, "declined")
            return Response(call, response, None, closed=True)
        if response not in _ORDER or _ORDER[response] <= _ORDER[call.state]:
            return ResponseRefused(response, "not_allowed")
        if response != "received" and call.state == "new":
            return ResponseRefused(response, "not_allowed")
        if response == "cleared":
            self._close(call.id, "cleared")
            return Response(replace(call, state="cleared"), response, STATUS_AFTER_RESPONSE["cleared"], closed=True)
        updated = replace(call, state=response)
        self.calls[call.id] = updated
        return Response(updated, response, STATUS_AFTER_RESPONSE.get(response), closed=False)

    # -- views

    def shown(self) -> Call | None:
        """The call on the displays: most urgent unaccepted one, else the one being worked."""
        waiting = [c for c in self.calls.values() if not c.acknowledged]
        if waiting:
            return min(waiting, key=lambda c: (c.priority, c.received_mono))
        return self.working()

    def waiting(self) -> int:
        """How many calls wait behind the one on show, not yet accepted (the screens show the count)."""
        shown = self.shown()
        return sum(1 for c in self.calls.values() if not c.acknowledged and (shown is None or c.id != shown.id))

    def working(self) -> Call | None:
        """The call the crew is working: the newest one they accepted (even while another waits)."""
        working = [c for c in self.calls.values() if c.acknowledged]
        return working[-1] if working else None

    def _close(self, call_id: str, how: str) -> None:
        self.calls.pop(call_id, None)
        self.closed[call_id] = how
        self.closed.move_to_end(call_id)
        while len(self.closed) > REMEMBERED_IDS:
            self.closed.popitem(last=False)

    # -- persistence (the active calls survive a restart)

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": [c.to_json() for c in self.calls.values()],
            "closed": list(self.closed.items()),
        }

    @classmethod
    def restore(cls, data: dict[str, Any], now_mono: float) -> "CallBook":
        book = cls()
        for item in data.get("calls", []):
            call = replace(Call.from_json(item), received_mono=now_mono)
            book.calls[call.id] = call
        for call_id, how in data.get("closed", []):
            book.closed[call_id] = how
        return book


def _content(call: Call) -> tuple:
    return (call.priority, call.nature, call.address, call.created, call.code, call.location, call.details, call.caller,
            call.address_short)
