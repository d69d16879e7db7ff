"""What each output shows, derived from the unit's state (pure).

The runtime calls these after every change of :attr:`Unit.revision` and hands
the results to the adapters, which only draw or drive pins:

* :func:`indicator_view` -> the panel LEDs and buzzer (:mod:`.indicators`);
* :func:`rider_view` -> the motorcyclist's small display (:mod:`.panel_view`);
* :func:`screen_snapshot` -> the car touchscreen (the snapshot contract in
  :mod:`agent.adapters.web_ui`);
* :func:`spoken_text` -> the helmet intercom read-out of a new call.

The same state always gives the same views, so they are tested without any
device.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from agent.config import STATUS_CODES
from agent.core import geo, screen_rules
from agent.core.dispatch import Call, iso
from agent.core.emergency import EmergencyState
from agent.core.i18n import LANGUAGES, Catalog, status_overrides
from agent.core.indicators import IndicatorView
from agent.core.panel_view import CallSummary, PanelView, spoken_call, summarize_call
from agent.core.unit import CALL_INPUTS, Now, Unit

# How long a notice (a refused press, a cancelled call) stays on the screens.
NOTICE_S = 8.0
# Besides its status buttons, a screen may post the call answers and the alarm.
SCREEN_INPUTS = (*CALL_INPUTS, "emergency")


def catalogs(unit: Unit) -> dict[str, Catalog]:
    """One catalog per crew language, with the fleet's status labels."""
    labels = unit.config.panel.labels
    return {lang: Catalog(lang, status_overrides(labels.get(lang, {}))) for lang in LANGUAGES}


def display_labels(unit: Unit) -> dict[str, dict[str, str]]:
    """The fleet's status labels as catalog overrides, per language (for the display adapters)."""
    return {lang: status_overrides(unit.config.panel.labels.get(lang, {})) for lang in LANGUAGES}


def indicator_view(unit: Unit, now: Now) -> IndicatorView:
    call = unit.calls.shown()
    return IndicatorView(
        status=unit.status.state,
        link_up=unit.link_up,
        gnss_fix=unit.has_fix(now.mono),
        call_priority=call.priority if call else None,  # steady once accepted, blinking until then
        call_acknowledged=bool(call and call.acknowledged),
        # The silent emergency shows nothing, its hold included; a crash prompt sounds like a pending alarm.
        emergency=EmergencyState.NONE if unit.officer.hidden else unit.emergency.state,
        crash_prompt=unit.officer.prompt is not None,
    )


def _summary(unit: Unit, call: Call, now: Now) -> CallSummary:
    age = unit.call_age(call, now)
    return summarize_call(
        call_id=call.id,
        priority=call.priority,
        nature=call.nature,
        address=call.address,
        location=call.location,
        fix=_position(unit, now),
        position_age_s=_position_age(unit, now),
        # Counted on the unit's best clock; unknown (None) without trusted time, never guessed.
        age_s=None if age.age_s is None else age.age_s + max(0.0, now.mono - call.received_mono),
        age_verified=age.verified,
        code=call.code,
        address_short=call.address_short,
        stale=bool(age.stale),
    )


def _position(unit: Unit, now: Now):
    """The last valid fix: the unit's position, or where it was last known (see :func:`_position_age`)."""
    return unit.last_valid


def _position_age(unit: Unit, now: Now) -> float | None:
    """How old the position is when it is no longer current (stale, lost, or from before a restart);
    None while the fix is current. Distance and bearing to a call are then kept, marked with this age,
    rather than blanked (docs/safety.md H9)."""
    if unit.last_valid is None or unit.last_valid_mono is None or unit.has_fix(now.mono):
        return None
    return round(max(0.0, now.mono - unit.last_valid_mono), 1)


def rider_view(unit: Unit, now: Now, clock: str | None = None) -> PanelView:
    call = unit.calls.shown()
    state = EmergencyState.NONE if unit.officer.hidden else unit.emergency.state
    deadline = unit.emergency.next_deadline()
    hold = cancel_left = None
    if state is EmergencyState.HOLDING and deadline is not None:
        # In tenths: the display redraws when the bar grows, not at every tick.
        hold = min(1.0, max(0.0, round(1.0 - (deadline - now.mono) / unit.emergency.hold_s, 1)))
    elif state is EmergencyState.PENDING and deadline is not None:
        cancel_left = max(0, math.ceil(deadline - now.mono))
    return PanelView(
        lang=unit.config.panel.language,
        status=unit.status.state,
        link_up=unit.link_up,
        gnss_fix=unit.current_mode(now.mono) if unit.last_epoch is not None else 0,
        gnss_lost=unit.gnss_lost,
        # Holding is not yet an alarm: the display keeps showing the call meanwhile.
        emergency="none" if state in (EmergencyState.NONE, EmergencyState.HOLDING) else state.value,
        call=_summary(unit, call, now) if call else None,
        clock=clock,
        parked=unit.parked,
        waiting=unit.calls.waiting(),
        hold_progress=hold,
        cancel_left_s=cancel_left,
        crash_prompt_s=crash_prompt_s(unit, now.mono),
    )


def crash_prompt_s(unit: Unit, mono: float) -> int | None:
    """Whole seconds left to cancel a crash's pre-alarm or answer its prompt (None: no crash shown)."""
    officer = unit.officer
    if officer.prompt is not None:
        return max(0, math.ceil(officer.prompt.until - mono))
    info, deadline = officer.info, unit.emergency.next_deadline()
    if info is not None and info.reason != "button" and unit.emergency.state is EmergencyState.PENDING \
            and deadline is not None:
        return max(0, math.ceil(deadline - mono))
    return None


# While something on the rider display moves with time alone, how often it is redrawn.
HOLD_REDRAW_S = 0.2


def next_redraw(unit: Unit, mono: float) -> float | None:
    """When the rider display next changes with time alone (the hold's bar, the cancel countdown).

    The shell wakes the core then, so the views are built again; None: nothing moves.
    """
    if unit.officer.prompt is not None:  # the crash prompt's countdown
        left = unit.officer.prompt.until - mono
        return mono + (left - math.floor(left) or 1.0)
    deadline = unit.emergency.next_deadline()
    if deadline is None or unit.officer.hidden:
        return None
    if unit.emergency.state is EmergencyState.HOLDING:
        return min(deadline, mono + HOLD_REDRAW_S)
    if unit.emergency.state is EmergencyState.PENDING:
        left = deadline - mono
        # The moment the whole seconds left (rounded up) drop by one.
        step = left - math.floor(left) or 1.0
        return min(deadline, mono + step)
    return None


def spoken_prompt(unit: Unit, seconds: int) -> str:
    """The crash prompt for the helmet intercom: "Chute détectée – appuyez ACK pour annuler (25 s)"."""
    return catalogs(unit)[unit.config.panel.language]("crash.prompt", seconds=seconds)


def spoken_text(unit: Unit, call_id: str, now: Now) -> str | None:
    call = unit.calls.calls.get(call_id)
    if call is None:
        return None
    lang = unit.config.panel.language
    return spoken_call(_summary(unit, call, now), catalogs(unit)[lang])


def screen_snapshot(unit: Unit, now: Now, *, backlog: int = 0) -> dict[str, Any]:
    """The touchscreen snapshot (contract: :mod:`agent.adapters.web_ui`), with the page's rules
    (:mod:`.screen_rules`) filled in."""
    cfg = unit.config
    cats = catalogs(unit)
    ui_lang = cfg.ui.language
    fix = _position(unit, now)
    return screen_rules.complete({
        "unit": {"id": cfg.unit.id, "kind": cfg.unit.kind, "name": cfg.unit.name or cfg.unit.id},
        "lang": ui_lang,
        "theme": cfg.ui.theme,
        "sound": cfg.ui.sound,
        "now": iso(unit.best_time(now)[0]),  # the page's clock, and what a call's age is counted from
        "status": unit.status.state,
        "status_since": iso(unit.status_since) if unit.status_since else None,
        # Seconds since this run began: the status was set before it when status_since is null.
        "started_s": round(now.mono - unit.started_mono, 1),
        "status_labels": {lang: {code: cat.status(code) for code in STATUS_CODES} for lang, cat in cats.items()},
        "status_buttons": list(cfg.status_buttons),
        # The alarm control cancels only inside the window, and says so only then.
        "inputs": [*cfg.status_buttons, *SCREEN_INPUTS,
                   *(["emergency_cancel"] if (unit.emergency.cancellable and not unit.officer.hidden)
                     or unit.officer.prompt is not None else [])],
        "siren": unit.siren,
        "link": {"online": unit.link_up, "backlog": backlog, "since_s": round(now.mono - _link_since(unit), 1)},
        "gnss": _gnss(unit, now),
        # Parked: ignition off and nothing to do (agent/core/power.py); ignition null: no line.
        "power": {"ignition": unit.parking.ignition_json, "parked": unit.parked},
        "emergency": _emergency(unit, now),
        "crash": _crash(unit, now, cats[ui_lang]),
        "call": _call(unit, unit.calls.shown(), fix, now),
        "waiting": unit.calls.waiting(),
        "notice": _notice(unit, now, cats[ui_lang]),
    })


def _gnss(unit: Unit, now: Now) -> dict[str, Any]:
    fix, at = unit.last_valid, unit.last_valid_mono
    return {
        "mode": unit.current_mode(now.mono) if unit.last_epoch is not None else 0,
        "lat": fix.lat if fix else None,
        "lon": fix.lon if fix else None,
        "speed": fix.speed if fix else None,
        "track": fix.track if fix else None,
        "age": round(now.mono - at, 1) if at is not None else None,
        # "lost": the receiver itself is silent or unplugged (not the sky hiding the satellites).
        "receiver": unit.receiver_at(now.mono),
    }


def _emergency(unit: Unit, now: Now) -> dict[str, Any]:
    em = unit.emergency
    if unit.officer.hidden:  # the silent emergency: the screen shows no alarm, no hold
        return {"state": "none", "since": None, "cancel_deadline_s": None, "hold_s": em.hold_s}
    deadline = em.next_deadline() if em.state is EmergencyState.PENDING else None
    return {
        "state": em.state.value,
        "since": None,
        "cancel_deadline_s": round(max(0.0, deadline - now.mono), 2) if deadline is not None else None,
        "hold_s": em.hold_s,
    }


def _crash(unit: Unit, now: Now, catalog: Catalog) -> dict[str, Any] | None:
    """A crash's pre-alarm or prompt on the screen: its text and seconds left (None: none shown)."""
    seconds = crash_prompt_s(unit, now.mono)
    if seconds is None:
        return None
    return {"prompt_s": seconds, "alarm": unit.officer.prompt is None, "text": catalog("crash.prompt", seconds=seconds)}


def _link_since(unit: Unit) -> float:
    return unit.link_since if unit.link_since is not None else unit.started_mono


def _call(unit: Unit, call: Call | None, fix, now: Now) -> dict[str, Any] | None:
    """The call for the touchscreen; its distance and bearing from the last known position, with
    ``position_age_s`` when that position is no longer current (null while it is)."""
    if call is None:
        return None
    body = call.to_json()
    # Its age now, on trusted time only (null: unverified, never guessed from an unsynchronised clock).
    age = unit.call_age(call, now)
    body.update(
        age_s=None if age.age_s is None else round(age.age_s + max(0.0, now.mono - call.received_mono), 1),
        stale=age.stale,
        # The call just took the screen: the crew's answer is taken after this many seconds.
        answer_in_s=round(unit.calls.read_left(now.mono), 2) if call.id == unit.calls.shown_id else 0.0,
    )
    distance = bearing = None
    if call.location is not None and fix is not None:
        distance = geo.distance_m(fix.lat, fix.lon, *call.location)
        bearing = geo.initial_bearing_deg(fix.lat, fix.lon, *call.location)
    body.update(
        acknowledged=call.acknowledged,
        distance_m=round(distance, 1) if distance is not None else None,
        bearing_deg=round(bearing, 1) if bearing is not None else None,
        position_age_s=_position_age(unit, now) if distance is not None else None,
        updated=body["updated"] or body["created"],
        age_verified=age.verified,  # false while the unit has no trusted time
    )
    return body


def _notice(unit: Unit, now: Now, catalog: Catalog) -> dict[str, Any] | None:
    notice = unit.notice
    if notice is None or now.mono - notice.mono > NOTICE_S:
        return None
    key = {"refused": "status.refused", "cancelled": "call.cancelled"}.get(notice.kind, "status.refused")
    if notice.kind == "refused" and notice.detail == "not_read":
        key = "call.read_first"  # a call that took the screen a moment ago: read it, then answer
    body: dict[str, Any] = {"kind": notice.kind, "text": catalog(key), "id": int(notice.mono * 1000)}
    if notice.kind == "cancelled":
        # Which call (its id and address too: another call of the same nature may be on the screen),
        # and the dispatcher's reason when they gave one (shown as they wrote it).
        body["subject"] = notice.subject or None
        body["reason"] = notice.detail or None
        body["call_id"] = notice.ref or None
        body["address"] = notice.place or None
        shown = unit.calls.shown()
        body["same_nature_shown"] = bool(shown and shown.id != notice.ref and shown.nature == notice.subject)
    return body


def clock_text(wall: dt.datetime) -> str:
    """The local time of day for the rider display ("HH:MM")."""
    return wall.astimezone().strftime("%H:%M")
