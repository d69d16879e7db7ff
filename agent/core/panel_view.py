"""What the rider panel display shows, as a frozen value (no drawing here).

The core builds a ``PanelView`` from its state (status, link, GNSS, emergency,
the call on show) and hands it to the display adapter, which only draws it.
Keeping the view a plain value means the same state always draws the same
picture, the adapter can skip redrawing an unchanged view, and the decisions
(is the arrow meaningful? is the unit already there?) are tested here without
pixels.

``summarize_call`` turns a call's location and the vehicle's current fix into
what the rider needs: distance, and which way to go relative to where the
motorcycle is heading. GNSS track (course over ground) is noise when the
vehicle barely moves (a stationary receiver's course wanders through every
direction), so under ``MIN_SPEED_FOR_TRACK_MPS`` the relative arrow is dropped
and only the absolute compass direction (``NE``...) is given; within
``NEAR_M`` of the incident the bearing itself jitters, so neither is given and
the display says the unit is there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from agent.core import geo
from agent.core.events import Fix
from agent.core.i18n import LANGUAGES, Catalog

EmergencyState = Literal["none", "pending", "active", "acknowledged"]
EMERGENCY_STATES = ("none", "pending", "active", "acknowledged")

# About 5 km/h: below it GNSS course over ground is not a heading.
MIN_SPEED_FOR_TRACK_MPS = 1.5
# Closer than this, direction is within GNSS noise: "on the spot".
NEAR_M = 30.0


@dataclass(frozen=True, slots=True)
class CallSummary:
    """The part of a dispatch call the rider panel shows.

    ``distance_m`` is None when either end has no position (``has_location``
    says which end). ``bearing_deg``
    (true) is None then too, or when the unit is within ``NEAR_M``.
    ``relative_bearing_deg`` is None whenever the vehicle's heading is not
    known (stopped, no track); the display then shows the compass point.
    """

    id: str
    priority: int
    nature: str
    address: str = ""
    distance_m: float | None = None
    bearing_deg: float | None = None
    relative_bearing_deg: float | None = None
    age_s: float | None = None
    has_location: bool = True  # False: dispatch sent no coordinates for the call
    age_verified: bool = True  # False: the unit has no trusted time, so the call's age is not known
    code: str | None = None  # the dispatcher's short form of the nature, when the call has one
    address_short: str | None = None  # and of the address
    stale: bool = False  # already older than [panel] stale_call_after_s when it arrived (trusted time)
    # Distance and bearing are from a position no longer current (lost fix, or from before a restart),
    # this many seconds old: shown with that age, and no arrow (the heading is not known now).
    position_age_s: float | None = None

    def __post_init__(self) -> None:
        if self.priority not in (1, 2, 3):
            raise ValueError(f"priority must be 1, 2 or 3, got {self.priority!r}")
        for name in ("distance_m", "bearing_deg", "relative_bearing_deg", "age_s", "position_age_s"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be finite or None, got {value!r}")
        if self.distance_m is not None and self.distance_m < 0:
            raise ValueError(f"distance_m must be >= 0, got {self.distance_m!r}")

    @property
    def near(self) -> bool:
        return self.distance_m is not None and self.distance_m < NEAR_M

    @property
    def compass(self) -> str | None:
        return None if self.bearing_deg is None else geo.compass_point(self.bearing_deg, 8)


@dataclass(frozen=True, slots=True)
class PanelView:
    """Everything on the rider's display at one moment.

    ``gnss_fix`` is the gpsd fix mode (0 unknown, 1 none, 2 2D, 3 3D).
    ``clock`` is the local time of day as "HH:MM" (the caller owns the clock
    and the time zone). ``emergency`` outranks a call: an officer in danger
    sees the alarm state, not the call. A hold of the emergency button is not
    an alarm yet: the screen stays, with the hold's ``hold_progress`` over it.
    Values that move with time are rounded (``hold_progress`` to tenths,
    ``cancel_left_s`` to whole seconds) so the display redraws only when the
    picture changes.
    """

    lang: str = "fr"
    status: str = "available"
    link_up: bool = False
    gnss_fix: int = 0
    emergency: EmergencyState = "none"
    call: CallSummary | None = None
    clock: str | None = None
    gnss_lost: bool = False  # the receiver itself is silent or unplugged (not just no fix)
    parked: bool = False  # ignition off and nothing to do: reports at the parked rate (agent/core/power.py)
    waiting: int = 0  # calls waiting behind the one on show, not yet accepted
    hold_progress: float | None = None  # 0..1 while the emergency button is held (not yet an alarm)
    cancel_left_s: int | None = None  # whole seconds left to cancel a pending alarm (with the ack button)
    # A crash found (agent/core/officer_down.py): whole seconds left to cancel its pre-alarm or answer its
    # prompt with ack; the display then says "Chute détectée – appuyez ACK pour annuler (N s)".
    crash_prompt_s: int | None = None

    def __post_init__(self) -> None:
        if self.lang not in LANGUAGES:
            raise ValueError(f"lang must be one of {LANGUAGES}, got {self.lang!r}")
        if not isinstance(self.status, str) or not self.status:
            raise ValueError("status must be a non-empty status code")
        if self.gnss_fix not in (0, 1, 2, 3):
            raise ValueError(f"gnss_fix must be a fix mode 0..3, got {self.gnss_fix!r}")
        if self.emergency not in EMERGENCY_STATES:
            raise ValueError(f"emergency must be one of {EMERGENCY_STATES}, got {self.emergency!r}")
        if not isinstance(self.waiting, int) or self.waiting < 0:
            raise ValueError(f"waiting must be a count >= 0, got {self.waiting!r}")
        if self.hold_progress is not None and not 0.0 <= self.hold_progress <= 1.0:
            raise ValueError(f"hold_progress must be within 0..1, got {self.hold_progress!r}")
        if self.cancel_left_s is not None and self.cancel_left_s < 0:
            raise ValueError(f"cancel_left_s must be >= 0, got {self.cancel_left_s!r}")
        if self.crash_prompt_s is not None and self.crash_prompt_s < 0:
            raise ValueError(f"crash_prompt_s must be >= 0, got {self.crash_prompt_s!r}")

    @property
    def has_fix(self) -> bool:
        return self.gnss_fix >= 2


def summarize_call(
    *,
    call_id: str,
    priority: int,
    nature: str,
    address: str = "",
    location: tuple[float, float] | None,
    fix: Fix | None,
    age_s: float | None = None,
    age_verified: bool = True,
    min_speed_mps: float = MIN_SPEED_FOR_TRACK_MPS,
    code: str | None = None,
    address_short: str | None = None,
    stale: bool = False,
    position_age_s: float | None = None,
) -> CallSummary:
    """The call as the panel shows it, seen from the vehicle's current fix.

    ``position_age_s``: ``fix`` is the last known position, no longer current, that old: distance
    and compass bearing are still given (marked with that age), the relative arrow is not.

    ``location`` is the call's (lat, lon) or None; ``fix`` the latest GNSS
    epoch (an invalid one counts as no position). The track is used when the
    receiver gives one and the speed is either unknown or at least
    ``min_speed_mps``.
    """
    distance = bearing = relative = None
    if location is not None and fix is not None and fix.valid:
        lat, lon = location
        distance = geo.distance_m(fix.lat, fix.lon, lat, lon)
        if distance >= NEAR_M:
            bearing = geo.initial_bearing_deg(fix.lat, fix.lon, lat, lon)
            moving = fix.speed is None or fix.speed >= min_speed_mps
            if fix.track is not None and math.isfinite(fix.track) and moving and position_age_s is None:
                relative = geo.relative_bearing_deg(bearing, fix.track)
    return CallSummary(
        id=call_id,
        priority=priority,
        nature=nature.strip(),
        address=address.strip(),
        distance_m=distance,
        bearing_deg=bearing,
        relative_bearing_deg=relative,
        age_s=age_s,
        has_location=location is not None,
        age_verified=age_verified,
        code=code.strip() or None if code else None,
        address_short=address_short.strip() or None if address_short else None,
        stale=stale,
        position_age_s=position_age_s if distance is not None else None,
    )


def format_age(age_s: float, catalog: Catalog) -> str:
    """How long ago the call was created: "il y a 40 s", "il y a 3 min", "il y a 1 h 05"."""
    seconds = max(0, int(age_s))
    if seconds < 60:
        return catalog("call.age_s", seconds=seconds)
    minutes = seconds // 60
    if minutes < 60:
        return catalog("call.age_min", minutes=minutes)
    return catalog("call.age_h", hours=minutes // 60, minutes=minutes % 60)


def spoken_call(call: CallSummary, catalog: Catalog) -> str:
    """A short text for a text-to-speech read-out of a new call: words, not symbols.

    Priority, nature, address, then distance and compass direction when
    known. Distances are spelled with the full unit ("mètres", "كيلومتر")
    because a synthesizer reads "km" or "كلم" letter by letter.
    """
    parts = [catalog("speech.new_call", priority=call.priority)]
    parts += [f"{text.rstrip('.')}." for text in (call.nature, call.address) if text]
    if call.distance_m is not None and call.bearing_deg is not None:
        value, unit, decimals = geo.round_distance(call.distance_m)
        # No thousands separator: a synthesizer may read it as a pause.
        number = f"{value:.{decimals}f}".replace(".", ",")
        distance = catalog(f"unit.{unit}_spoken", value=number)
        direction = catalog(f"direction.{geo.compass_point(call.bearing_deg, 8)}")
        parts.append(catalog("speech.distance", distance=distance, direction=direction))
    return " ".join(parts)
