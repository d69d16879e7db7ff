"""The touchscreen's rules: what the page may show and press, derived from its snapshot (pure).

The car's page (``agent/adapters/web/``) holds no rule of its own. Everything
it decides from (does a call take the whole screen, which call steps have a
button, what a touch on the alarm control does, how long to hold it, what the
alarm becomes when its cancel window closes, how a call's alert sounds, is the
position stale, is the car moving enough to turn the dial heading-up) is a
field of the snapshot, computed here from the snapshot's other fields.

:func:`complete` fills in each derived field a snapshot does not already carry
and returns a new dict (the input is left as it was). The core's own snapshot
(:func:`agent.core.views.screen_snapshot`) goes through it, and so does every
snapshot :meth:`agent.adapters.web_ui.WebUi.update` is given, so a snapshot
written by hand (a test, a bench, another producer) follows the same rules.

The derived fields (the contract is in :mod:`agent.adapters.web_ui`)::

    "takeover": bool            the call takes the whole screen: new, not yet
                                accepted or declined
    "call_controls": [input]    the call's next steps with a button, in order
                                (those of en_route, on_scene, cleared the page
                                may post), none once the call has ended
    "alert": null | {"call_id", "url", "loop", "plays"}
                                the new call's sound: P1 and P2 loop until the
                                call is answered, P3 plays three times
    "emergency": {...,
      "hold_s": float,          how long the control must be held (the
                                configured default when not given)
      "control": "hold"|"cancel"|"none",
                                what a touch on the alarm control does now
      "at_deadline": null | {"state", "control"}}
                                what the alarm becomes when the cancel window
                                counts down to 0 (the agent sends it active
                                then: the page need not wait for its snapshot)
    "gnss": {...,
      "stale": bool,            the last position is older than GNSS_STALE_S
      "heading_deg": float|null}
                                the track the dial turns to (heading-up), or
                                null to stay north-up: standing still, where a
                                GNSS track means nothing
    "link": {...,
      "alert_after_s": float}   offline this long (link.since_s, counted on by
                                the page), the screen says so in big letters
    "confirm": {input: s}       the inputs that take a second touch within s
                                seconds to be posted (decline: a crew in a
                                moving car touches by mistake, and a decline
                                cannot be taken back once dispatch has it)
    "call": {...,               when the producer did not judge them (the core
      "age_s", "stale",         does, on trusted time only), from the
      "answer_in_s"}            snapshot's "now" and the call's "created"
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from agent.config import PanelConfig

# A call in one of these states has ended: no fullscreen, no next step.
ENDED_CALL_STATES = frozenset({"declined", "cleared", "cancelled"})
# The call's next steps that have a button of their own on the call card.
CALL_STEPS = ("en_route", "on_scene", "cleared")
# The hold time when a snapshot does not give one: the configuration's default.
DEFAULT_HOLD_S = PanelConfig().emergency_hold_s
# Older than this, the screen shows the position's age beside the fix.
GNSS_STALE_S = 5.0
# About 11 km/h: below it the dial stays north-up (in a car's stop-and-go, a slower
# track swings too much to point the way).
HEADING_MIN_SPEED_MPS = 3.0
# Offline this long, the whole band says so (a short drop in a tunnel is not worth a shout).
OFFLINE_ALERT_S = 10.0
# A decline takes a second touch within this time.
DECLINE_CONFIRM_S = 4.0
# A call already older than this on arrival is stale (the configuration's default).
DEFAULT_STALE_CALL_S = PanelConfig().stale_call_after_s
# Priorities whose alert loops until the call is answered; the others play ALERT_PLAYS times.
LOOPING_PRIORITIES = (1, 2)
ALERT_PLAYS = 3


def complete(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """``snapshot`` with each derived field it lacks filled in (a new dict)."""
    snap = dict(snapshot)
    inputs = snap.get("inputs") or []
    call = snap.get("call")
    if not isinstance(call, Mapping):
        call = None
    else:
        call = snap["call"] = _call(call, snap.get("now"))
    ended = call is not None and call.get("state") in ENDED_CALL_STATES
    takeover = snap.setdefault("takeover", bool(call is not None and not call.get("acknowledged") and not ended))
    snap.setdefault("call_controls", [name for name in CALL_STEPS if name in inputs] if call is not None and not ended else [])
    if "alert" not in snap:
        snap["alert"] = _alert(call) if takeover and call is not None and snap.get("sound") else None
    snap["emergency"] = _emergency(snap.get("emergency"), inputs)
    if isinstance(snap.get("gnss"), Mapping):
        snap["gnss"] = _gnss(snap["gnss"])
    if isinstance(snap.get("link"), Mapping):
        snap["link"] = {**snap["link"], "alert_after_s": snap["link"].get("alert_after_s", OFFLINE_ALERT_S)}
    snap.setdefault("confirm", {"decline": DECLINE_CONFIRM_S})
    return snap


def _call(call: Mapping[str, Any], now: Any) -> dict[str, Any]:
    """A call's age from the snapshot's own clock, when its producer did not judge it."""
    c = dict(call)
    if "age_s" not in c:
        # Without trusted time (age_verified false) the snapshot's clock says nothing of the age.
        age = None if c.get("age_verified") is False else _seconds_between(c.get("created"), now)
        c["age_s"] = None if age is None else round(max(0.0, age), 1)
    if "stale" not in c:
        c["stale"] = None if c["age_s"] is None else bool(DEFAULT_STALE_CALL_S) and c["age_s"] > DEFAULT_STALE_CALL_S
    c.setdefault("answer_in_s", 0.0)
    return c


def _seconds_between(start: Any, end: Any) -> float | None:
    try:
        a = dt.datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        b = dt.datetime.fromisoformat(str(end).replace("Z", "+00:00"))
        return (b - a).total_seconds()
    except (TypeError, ValueError):
        return None


def _alert(call: Mapping[str, Any]) -> dict[str, Any] | None:
    priority = call.get("priority")
    if priority not in (1, 2, 3):
        return None
    loop = priority in LOOPING_PRIORITIES
    return {"call_id": call.get("id"), "url": f"/sounds/p{priority}.wav", "loop": loop,
            "plays": 1 if loop else ALERT_PLAYS}


def _emergency(em: Any, inputs: list[Any]) -> dict[str, Any]:
    """The alarm control: hold to raise; touch to cancel in the window; then only dispatch ends it."""
    em = dict(em) if isinstance(em, Mapping) else {"state": "none"}
    state = em.get("state") or "none"
    hold = em.get("hold_s")
    if not _number(hold) or hold <= 0:
        em["hold_s"] = DEFAULT_HOLD_S
    if state in ("active", "acknowledged"):
        control = "none"  # only dispatch ends an active alarm
    elif state == "pending" and "emergency_cancel" in inputs:
        control = "cancel"  # the alarm is out, the window open: a touch withdraws it
    else:
        control = "hold"
    em.setdefault("control", control)
    # When the window closes the agent sends the alarm active (agent/core/emergency.py).
    em.setdefault("at_deadline", {"state": "active", "control": "none"} if state == "pending" else None)
    return em


def _gnss(gnss: Mapping[str, Any]) -> dict[str, Any]:
    g = dict(gnss)
    age, speed, track, mode = g.get("age"), g.get("speed"), g.get("track"), g.get("mode")
    g.setdefault("stale", _number(age) and age > GNSS_STALE_S)
    moving = (_number(mode) and mode >= 2 and g.get("receiver") != "lost" and _number(speed)
              and speed >= HEADING_MIN_SPEED_MPS and _number(track))
    g.setdefault("heading_deg", track if moving else None)
    return g


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
