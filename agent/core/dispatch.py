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
* The crew answers with responses, by the table :data:`TRANSITIONS` below
  (the agent's own ``received`` first). Forward jumps are allowed (a crew may
  reach the scene before pressing "en route"); going back is refused::

      new --received--> received --accepted--> accepted --en_route--> en_route
          --on_scene--> on_scene --cleared--> (closed)
      new/received --declined--> (closed)              dispatch cancel --> (closed)

* A call must be read before it is answered. A call that took the place of
  another on the screen less than ``READ_S`` (1 s) ago (it was more urgent
  than the one shown, or it slid in once the one before was accepted, or it
  came over the call being worked) cannot be accepted or declined: the press
  that does it began before the crew could see it (a gloved double press
  after accepting the call before, a finger on its way to that call's
  controls). It is refused ``not_read``, and the same press a moment later is
  taken. A call that comes onto a screen showing no call is answered at once:
  nothing the crew was doing was aimed at a call's answer.
* One call is shown at a time: the most urgent one the crew has not yet
  accepted, else the one they are working. Closed calls leave the book.
* A call's age is judged only on trusted time (the unit's clock synchronised,
  or GNSS time): ``created`` is the dispatcher's clock, and a unit that booted
  without either cannot tell a days-old call from a fresh one. A call already
  older than ``[panel] stale_call_after_s`` (default 1 hour) when it reached
  the unit is *stale*: the screens flag it and its ``received`` says so;
  without trusted time its age is *unverified* (``None``), never guessed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, get_args

from . import inbound_text
from .call import _ORDER, Call, CallAge, call_age, iso  # noqa: F401  (the call itself; dispatch's users import them here)
from .messages import NEW_CALL_NEEDS, CallMessage, Response, validate_call


MAX_CALL_BYTES = 16 * 1024
MAX_OPEN_CALLS = 16
REMEMBERED_IDS = 512

# Response codes.
RESPONSES: tuple[str, ...] = get_args(Response)
# Status the unit takes when the crew gives a response (None: unchanged).
STATUS_AFTER_RESPONSE = {"en_route": "en_route", "on_scene": "on_scene", "cleared": "available"}
# How long a call must have been on the screen before the crew's answer to it is taken.
READ_S = 1.0
# The answers that need the call read first.
READ_FIRST = ("accepted", "declined")


@dataclass(frozen=True, slots=True)
class To:
    """The response is taken: the call goes to ``state`` (``declined``, ``cleared``: it is closed)."""

    state: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """The response is refused with ``reason``."""

    reason: str


CLOSING = frozenset({"declined", "cleared"})

# The table itself: call state -> {response: what it does}. Every pair is listed, so nothing
# is decided by omission; "not_allowed" is a step back, a repeat, or a step the call cannot take.
TRANSITIONS: dict[str, dict[str, To | Refuse]] = {
    # Not yet receipted: the agent's own "received" goes first, so dispatch hears the call
    # arrived before anything the crew does with it. A decline closes it at once.
    "new": {
        "received": To("received"),
        "accepted": Refuse("not_allowed"),
        "declined": To("declined"),
        "en_route": Refuse("not_allowed"),
        "on_scene": Refuse("not_allowed"),
        "cleared": Refuse("not_allowed"),
    },
    # On the screen, waiting for the crew: any step forward, or a decline.
    "received": {
        "received": Refuse("not_allowed"),
        "accepted": To("accepted"),
        "declined": To("declined"),
        "en_route": To("en_route"),
        "on_scene": To("on_scene"),
        "cleared": To("cleared"),
    },
    # Accepted: too late to decline (dispatch counts on the unit); only forward.
    "accepted": {
        "received": Refuse("not_allowed"),
        "accepted": Refuse("not_allowed"),
        "declined": Refuse("not_allowed"),
        "en_route": To("en_route"),
        "on_scene": To("on_scene"),
        "cleared": To("cleared"),
    },
    "en_route": {
        "received": Refuse("not_allowed"),
        "accepted": Refuse("not_allowed"),
        "declined": Refuse("not_allowed"),
        "en_route": Refuse("not_allowed"),
        "on_scene": To("on_scene"),
        "cleared": To("cleared"),
    },
    "on_scene": {
        "received": Refuse("not_allowed"),
        "accepted": Refuse("not_allowed"),
        "declined": Refuse("not_allowed"),
        "en_route": Refuse("not_allowed"),
        "on_scene": Refuse("not_allowed"),
        "cleared": To("cleared"),
    },
}


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
    reason: str  # "no_call", "not_allowed", "not_read"


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
    # The call on show and since when (monotonic): a call just shown cannot be answered yet.
    shown_id: str | None = None
    shown_since: float | None = None

    # -- inbound

    def receive(self, payload: bytes, now_wall: dt.datetime, now_mono: float) -> Outcome:
        parsed = parse_call(payload)
        if isinstance(parsed, Rejected):
            self.rejected_count += 1
            return parsed
        return self.apply(parsed, now_wall, now_mono)

    def apply(self, msg: CallMessage, now_wall: dt.datetime, now_mono: float) -> Outcome:
        outcome = self._apply(msg, now_wall, now_mono)
        self._track_shown(now_mono)
        return outcome

    def _apply(self, msg: CallMessage, now_wall: dt.datetime, now_mono: float) -> Outcome:
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

    def respond(self, response: str, call_id: str | None = None,
                now_mono: float | None = None) -> Response | ResponseRefused:
        """Apply a crew (or the agent's own ``received``) response to a call, by :data:`TRANSITIONS`.

        ``now_mono`` is the time of the press: an accept or decline of the call on show
        within ``READ_S`` of it taking the screen is refused ``not_read``.
        """
        call = self.calls.get(call_id) if call_id else self.shown()
        if call is None:
            return ResponseRefused(response, "no_call")
        rule = TRANSITIONS[call.state].get(response, Refuse("not_allowed"))
        if isinstance(rule, Refuse):
            return ResponseRefused(response, rule.reason)
        if response in READ_FIRST and now_mono is not None and self.unread(now_mono, call.id):
            return ResponseRefused(response, "not_read")
        if rule.state in CLOSING:
            self._close(call.id, rule.state)
            self._track_shown(now_mono)
            # A declined call is answered as it was; a cleared one as cleared.
            closed = call if rule.state == "declined" else replace(call, state=rule.state)
            return Response(closed, response, STATUS_AFTER_RESPONSE.get(response), closed=True)
        updated = replace(call, state=rule.state)
        self.calls[call.id] = updated
        self._track_shown(now_mono)
        return Response(updated, response, STATUS_AFTER_RESPONSE.get(response), closed=False)

    def unread(self, now_mono: float, call_id: str | None = None) -> bool:
        """Has the call on show (``call_id``, if given, must be it) been there less than ``READ_S``?"""
        if self.shown_id is None or self.shown_since is None:
            return False
        if call_id is not None and call_id != self.shown_id:
            return False
        return now_mono - self.shown_since < READ_S

    def read_left(self, now_mono: float) -> float:
        """Seconds until the call on show may be answered (0: now)."""
        if self.shown_since is None or not self.unread(now_mono):
            return 0.0
        return READ_S - (now_mono - self.shown_since)

    def _track_shown(self, now_mono: float | None) -> None:
        """Note when a call took the place of another on the screen (for the read rule)."""
        shown = self.shown()
        shown_id = shown.id if shown is not None else None
        if shown_id != self.shown_id:
            # On a screen that showed no call, nothing of the crew's was aimed at a call's answer.
            replaced = self.shown_id is not None
            self.shown_id = shown_id
            self.shown_since = now_mono if shown_id is not None and replaced else None

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
        book._track_shown(now_mono)  # after a restart, the call on show is new to the crew
        return book


def _content(call: Call) -> tuple:
    return (call.priority, call.nature, call.address, call.created, call.code, call.location, call.details, call.caller,
            call.address_short)
