"""Crash and fall detection from the sensor's samples, as a pure state machine.

Samples come in the vehicle's frame (:mod:`.imu_frames`: x forward, y left, z up; g and °/s)
with their time (monotonic seconds). The vehicle's speed (GNSS fixes) and its ignition are
context. :meth:`CrashDetector.feed` returns the :class:`Finding` s a sample completes; the
unit (:mod:`.crash_watch`) turns them into a prompt or an alarm. Every number below is an
``[imu]`` setting; docs/crash-detection.md gives each one's reason.

The rules
=========

A sample's *dynamic* acceleration is what it reads beyond the slow mean (gravity, and a
bend's steady load; a low-pass with a 1 s time constant). *Along the vehicle* means its x and
y components: forward and sideways, where a crash pushes; a pothole, a kerb or a speed bump
pushes mostly along z. *Held* means every sample for the whole time.

    rule          condition                                                      finding
    impact        dynamic along the vehicle >= impact_g, held impact_hold_ms,    severe (minor when the
                  with the speed before >= impact_min_speed_kmh                   speed before was lower)
    hard impact   dynamic in any direction >= hard_impact_g, held impact_hold_ms severe
    fall          tilt >= roll_limit_deg held roll_hold_s, then still for        severe when the speed
                  still_s                                                        before was >= impact_min_
                                                                                 speed_kmh, else minor
    man-down      after a minor finding, the crew silent: still down (tilt past    man_down (severe)
                  the limit) with no motion for man_down_s

None fires while the vehicle is **parked**: ignition off; or stopped and upright for
``parked_after_s`` (every fix slower than 3 km/h; with no recent fix, no motion at all). Once
parked it stays parked, whatever happens to it standing or lying, until it moves (a fix at
3 km/h or more; with no fix, ``UNPARK_MOTION_S`` of motion without a pause) or the ignition
comes on. A drop of a parked motorcycle, a stand kicked out, a knock in a car park raise
nothing. Only an upright vehicle becomes parked: a motorcycle lying still after a fall at
walking pace is a rider down, not a parked motorcycle.

Why it never fires on the road's usual shocks (profiles in hil/imu_profiles.py, counted by
bench/bench_imu.py over 10 hours): a pothole, a kerb or a speed bump is mostly vertical and
short (a spike of 10 to 15 ms: never held for 20 ms); hard braking is along the vehicle but
about 1 g; a bend leans a motorcycle without any sideways force in its own frame.

*Speed before* is the highest GNSS speed in the ``SPEED_BEFORE_S`` before the impact (the
fall: before the tilt began). Unknown speed (no fix: a tunnel) counts as fast for an impact
(the impact rules alone already exclude the road's shocks) and as slow for a fall (a minor
prompt, with man-down behind it).

After a finding the detector is disarmed until the vehicle is upright again (tilt under the
limit less ``REARM_MARGIN_DEG`` for ``REARM_S``): a vehicle left lying after a cancelled alarm
does not raise it again.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

from .imu_frames import Vec, tilt_deg

PARKED_SPEED_MPS = 3 / 3.6  # slower than this counts as stopped
SPEED_BEFORE_S = 5.0  # the speed before an impact: the fastest fix this long before it
FALL_SPEED_BEFORE_S = 10.0  # before a fall, which takes longer to develop
FIX_FRESH_S = 10.0  # a fix older than this says nothing about the speed now
GRAVITY_TAU_S = 1.0  # the slow mean: gravity and a bend's steady load
TILT_TAU_S = 0.2  # the tilt is read from a faster mean (rejects vibration, follows a fall)
REARM_MARGIN_DEG = 15.0
REARM_S = 2.0
SPEED_HISTORY = 64  # fixes kept (a minute at 1 Hz)
UNPARK_MOTION_S = 10.0  # with no fix: moving without a pause this long ends "parked" (a knock is shorter)

Severity = Literal["severe", "minor"]
Cause = Literal["impact", "hard_impact", "fall", "man_down"]


class Thresholds(Protocol):
    """What the detector reads of ``[imu]`` (agent.config.ImuConfig provides it)."""

    impact_g: float
    impact_min_speed_kmh: float
    hard_impact_g: float
    impact_hold_ms: int
    roll_limit_deg: float
    roll_hold_s: float
    still_s: float
    still_g: float
    still_dps: float
    parked_after_s: float
    man_down_s: float


@dataclass(frozen=True, slots=True)
class Finding:
    """A crash, a fall or a rider down. ``at`` is the impact (or the fall's start), ``t`` the
    sample that completed the rule; ``speed_before`` m/s or None; ``roll_deg`` the tilt at
    ``t``; ``peak_g`` the largest dynamic acceleration from ``at`` to ``t``."""

    cause: Cause
    severity: Severity
    at: float
    t: float
    peak_g: float
    speed_before: float | None
    roll_deg: float


class CrashDetector:
    """See the module docstring. ``config`` is read at every sample (a hot change applies at once)."""

    def __init__(self, config: Thresholds):
        self.config = config
        self._grav: Vec | None = None  # slow mean (vehicle frame, g)
        self._tilt_vec: Vec | None = None
        self._last_t: float | None = None
        self._impact_since: float | None = None
        self._hard_since: float | None = None
        self._peak = 0.0
        self._peak_at = 0.0
        self._tilted_since: float | None = None
        self._fall_started: float | None = None  # when the tilt first passed the limit (this fall)
        self._last_motion: float | None = None
        self._upright_since: float | None = None
        self.armed = True
        self._man_down: Finding | None = None  # the minor finding being watched
        self.ignition: bool | None = None
        self._fixes: deque[tuple[float, float]] = deque(maxlen=SPEED_HISTORY)  # (mono, speed m/s)
        self._stopped_since: float | None = None  # stopped and upright since (to become parked)
        self._last_still: float | None = None  # the last sample without motion
        self.is_parked = False
        self.tilt = 0.0  # degrees, the latest

    # ----------------------------------------------------------- context

    def on_fix(self, t: float, speed: float | None) -> None:
        """A GNSS epoch with a speed (m/s); None: no speed in it."""
        if speed is None:
            return
        self._fixes.append((t, speed))
        if speed >= PARKED_SPEED_MPS:
            self._stopped_since = None
            self.is_parked = False

    def on_ignition(self, on: bool | None) -> None:
        if on and self.ignition is False:
            self.is_parked = False  # started again: stopped and upright for parked_after_s makes it parked
            self._stopped_since = None
        self.ignition = on

    def crew_answered(self) -> None:
        """The crew answered the prompt: they are conscious, the man-down watch ends."""
        self._man_down = None

    def parked(self, t: float) -> bool:
        return self.ignition is False or self.is_parked

    def _update_parked(self, t: float, still: bool) -> None:
        """Parked: stopped and upright for parked_after_s, then until it moves (module docstring)."""
        fresh = bool(self._fixes) and t - self._fixes[-1][0] <= FIX_FRESH_S
        if self.is_parked:
            if not fresh and self._last_still is not None and t - self._last_still >= UNPARK_MOTION_S:
                self.is_parked = False
                self._stopped_since = None
            return
        stopped = self._fixes[-1][1] < PARKED_SPEED_MPS if fresh else still
        if not stopped or self.tilt >= self.config.roll_limit_deg:
            self._stopped_since = None
        elif self._stopped_since is None:
            self._stopped_since = t
        elif t - self._stopped_since >= self.config.parked_after_s:
            self.is_parked = True

    def speed_before(self, t: float, window: float = SPEED_BEFORE_S) -> float | None:
        """The fastest fix in the ``window`` before ``t`` (None: no fix in it)."""
        speeds = [s for ft, s in self._fixes if t - window - 1.0 <= ft <= t]
        return max(speeds) if speeds else None

    # ------------------------------------------------------------ samples

    def feed(self, t: float, a: Vec, w: Vec) -> list[Finding]:
        """One sample; the findings it completes (usually none)."""
        cfg = self.config
        last = self._last_t
        dt = 0.01 if last is None else min(max(t - last, 0.0), 0.5)
        self._last_t = t
        grav, tv = self._grav, self._tilt_vec
        if grav is None or tv is None:
            self._grav = self._tilt_vec = grav = tv = a
            self._last_motion = t
        dyn = (a[0] - grav[0], a[1] - grav[1], a[2] - grav[2])
        k = dt / (GRAVITY_TAU_S + dt)
        self._grav = (grav[0] + k * dyn[0], grav[1] + k * dyn[1], grav[2] + k * dyn[2])
        k = dt / (TILT_TAU_S + dt)
        tv = (tv[0] + k * (a[0] - tv[0]), tv[1] + k * (a[1] - tv[1]), tv[2] + k * (a[2] - tv[2]))
        self._tilt_vec = tv
        self.tilt = tilt = tilt_deg(tv)
        total = math.sqrt(dyn[0] * dyn[0] + dyn[1] * dyn[1] + dyn[2] * dyn[2])
        along = math.sqrt(dyn[0] * dyn[0] + dyn[1] * dyn[1])
        jitter = math.sqrt((a[0] - tv[0]) ** 2 + (a[1] - tv[1]) ** 2 + (a[2] - tv[2]) ** 2)
        still = jitter <= cfg.still_g and math.sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2]) <= cfg.still_dps
        if still:
            self._last_still = t
        else:
            self._last_motion = t
        if total > self._peak or t - self._peak_at > SPEED_BEFORE_S:
            self._peak, self._peak_at = total, t
        self._track_tilt(t, tilt)
        self._update_parked(t, still)
        if self.parked(t):
            self._impact_since = self._hard_since = None
            self._man_down = None
            return []
        out: list[Finding] = []
        hold = cfg.impact_hold_ms / 1000.0 - 1e-6
        self._impact_since = (self._impact_since if self._impact_since is not None else t) \
            if along >= cfg.impact_g else None
        self._hard_since = (self._hard_since if self._hard_since is not None else t) \
            if total >= cfg.hard_impact_g else None
        if self.armed:
            if self._hard_since is not None and t - self._hard_since >= hold:
                out.append(self._find("hard_impact", "severe", self._hard_since, t))
            elif self._impact_since is not None and t - self._impact_since >= hold:
                speed = self.speed_before(self._impact_since)
                fast = speed is None or speed * 3.6 >= cfg.impact_min_speed_kmh
                out.append(self._find("impact", "severe" if fast else "minor", self._impact_since, t, speed))
            elif self._fall_done(t):
                assert self._fall_started is not None
                speed = self.speed_before(self._fall_started, FALL_SPEED_BEFORE_S)
                fast = speed is not None and speed * 3.6 >= cfg.impact_min_speed_kmh
                out.append(self._find("fall", "severe" if fast else "minor", self._fall_started, t, speed))
        if self._man_down is not None:
            out += self._check_man_down(t, tilt)
        return out

    def _track_tilt(self, t: float, tilt: float) -> None:
        limit = self.config.roll_limit_deg
        if tilt >= limit:
            if self._tilted_since is None:
                self._tilted_since = t
                if self._fall_started is None:
                    self._fall_started = t
            self._upright_since = None
        else:
            self._tilted_since = None
            if tilt < limit - REARM_MARGIN_DEG:
                self._fall_started = None
                if self._upright_since is None:
                    self._upright_since = t
                if not self.armed and t - self._upright_since >= REARM_S:
                    self.armed = True

    def _fall_done(self, t: float) -> bool:
        cfg = self.config
        since = self._tilted_since
        if since is None or t - since < cfg.roll_hold_s:
            return False
        return self._last_motion is not None and t - self._last_motion >= cfg.still_s

    def _check_man_down(self, t: float, tilt: float) -> list[Finding]:
        minor = self._man_down
        assert minor is not None
        cfg = self.config
        if tilt < cfg.roll_limit_deg - REARM_MARGIN_DEG:
            self._man_down = None  # picked up: the rider is on their feet
            return []
        last = self._last_motion if self._last_motion is not None else minor.at
        if tilt >= cfg.roll_limit_deg and t - max(last, minor.at) >= cfg.man_down_s:
            self._man_down = None
            return [Finding("man_down", "severe", minor.at, t, minor.peak_g, minor.speed_before, round(tilt, 1))]
        return []

    def _find(self, cause: Cause, severity: Severity, at: float, t: float,
              speed: float | None = None) -> Finding:
        if cause != "fall" and speed is None:
            speed = self.speed_before(at)
        self.armed = False
        self._upright_since = None  # re-armed only once upright for REARM_S after this
        self._impact_since = self._hard_since = None
        finding = Finding(cause, severity, at, t, round(self._peak, 2), speed, round(self.tilt, 1))
        if severity == "minor" and self.config.man_down_s:
            self._man_down = finding
        return finding
