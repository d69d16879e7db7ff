"""Motion profiles for the emulated crash sensor, built from simple physics.

A :class:`Motion` is a timeline of what a frame-mounted accelerometer and gyroscope read in the
vehicle's frame (x forward, y left, z up; specific force in g, so 1 g up at rest; °/s), at a
fixed rate, with the speed a GNSS receiver reports once a second and the ignition line. Its
methods append pieces of riding and events; :data:`PROFILES` names the complete profiles the
rig's emulator plays (``hil/imu_emulator.py``), the scenarios use and ``bench/bench_imu.py``
counts. Deterministic: every random draw comes from the profile's seed.

The physics, and the numbers (frame-mounted sensor; sources: published crash pulses and
ride measurements, rounded):

* Riding: road and engine vibration, a low-passed noise of 0.02 g plus 0.0008 g per km/h.
  A motorcycle in a steady bend leans by ``atan(v²/(R g))`` and reads no sideways force in
  its own frame: the load is along its z axis, ``1/cos(lean)`` g; its yaw rate ``v/R`` shows
  on the gyroscope's leaned axes. A car stays flat and reads the bend as sideways force.
* Braking and accelerating: ``-a`` or ``+a`` along x (a hard stop 0.9 to 1 g, with ABS
  ripple), the fork diving a few degrees.
* A pothole: the wheel drops (-0.4 g on z for 30 ms), then strikes the far edge: a half-sine
  on z of ``1 + 0.045 v`` g (v in km/h) lasting 8 to 16 ms and a backward one on x of
  ``0.4 + 0.015 v`` g for about 10 ms; the rear wheel repeats it a wheelbase later. A kerb: a
  bigger, equally short strike. A speed bump: a slow half-sine on z (0.4 + 0.02 v g over
  120 ms) at each wheel. The frame's strike is short because the tyre and the suspension take
  the slow part: what the rules key on (an impact held 20 ms) it never is.
* A motorcycle falling: an inverted pendulum about its tyres' contact line (0.6 m), from its
  lean to 90 degrees, the load on the frame shrinking as it falls; the side hitting the ground
  is a half-sine across the frame (y) of 2.5 to 8 g over 35 to 40 ms. Lying on its left side
  the frame reads (0, -1, 0) g, on its right side (0, +1, 0).
* A slide: friction (0.55 g) against the motion, with the scraping's noise (0.3 g), until
  stopped: ``v / (0.55 g)`` seconds.
* A high-side: the rear steps out, grips, and the motorcycle snaps over to the other side
  (400 °/s), is thrown (a quarter-second of free fall: 0 g), lands hard (``6 + 0.08 v`` g over
  40 ms) and tumbles once more before sliding.
* A car collision: a haversine pulse on x averaging ``Δv / 0.1 s`` (14 g at 50 km/h), which
  the sensor clips at its ±16 g, a rebound, then standstill.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

G = 9.80665
WHEELBASE_M = 1.45
PENDULUM_M = 0.6
STAND_LEAN_DEG = -12.0  # a motorcycle on its side stand leans left
SENSOR_NOISE_G = 0.003
SENSOR_NOISE_DPS = 0.05

Sample = tuple[float, tuple[float, float, float], tuple[float, float, float]]
Expect = Literal["none", "severe", "minor", "man_down"]


def _half_sine(i: int, n: int) -> float:
    return math.sin(math.pi * (i + 0.5) / n)


@dataclass
class Motion:
    """A profile under construction; see the module docstring."""

    rate_hz: int = 100
    seed: int = 1
    kind: str = "motorcycle"
    samples: list[Sample] = field(default_factory=list)
    fixes: list[tuple[float, float]] = field(default_factory=list)  # (t, speed m/s), 1 Hz
    impacts: list[float] = field(default_factory=list)  # when each crash's first ground contact began
    ignition: list[tuple[float, bool]] = field(default_factory=list)
    events: Counter = field(default_factory=Counter)  # how many potholes, kerbs, ... (the bench says)
    t: float = 0.0
    speed: float = 0.0  # m/s
    lean: float = 0.0  # degrees, right positive (static orientation while parked or lying)
    pitch: float = 0.0
    _next_fix: float = 0.0
    _noise: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.dt = 1.0 / self.rate_hz

    # ------------------------------------------------------------ basics

    def up(self) -> tuple[float, float, float]:
        """Gravity's reaction in the vehicle frame for the static lean and pitch."""
        r, p = math.radians(self.lean), math.radians(self.pitch)
        return (math.sin(p), math.sin(r) * math.cos(p), math.cos(r) * math.cos(p))

    def _vibration(self, extra: float = 0.0) -> tuple[float, float, float]:
        sigma = (0.02 + 0.0008 * self.speed * 3.6 if self.speed > 0.3 else SENSOR_NOISE_G) + extra
        n = self._noise
        for i in range(3):
            n[i] = 0.5 * n[i] + self.rng.gauss(0.0, sigma)
        return (n[0], n[1], n[2])

    def emit(self, a: tuple[float, float, float], w: tuple[float, float, float] = (0.0, 0.0, 0.0),
             noise: float = 0.0) -> None:
        v = self._vibration(noise)
        gn = SENSOR_NOISE_DPS + (0.5 if self.speed > 0.3 else 0.0)
        self.samples.append((self.t, (a[0] + v[0], a[1] + v[1], a[2] + v[2]),
                             (w[0] + self.rng.gauss(0, gn), w[1] + self.rng.gauss(0, gn), w[2] + self.rng.gauss(0, gn))))
        if self.t >= self._next_fix:
            self.fixes.append((self.t, max(0.0, self.speed + self.rng.gauss(0.0, 0.1) if self.speed > 0.3 else 0.0)))
            self._next_fix += 1.0
        self.t += self.dt

    def _steps(self, seconds: float) -> int:
        return max(1, round(seconds * self.rate_hz))

    def set_ignition(self, on: bool) -> "Motion":
        self.ignition.append((self.t, on))
        return self

    # ------------------------------------------------------------ riding

    def still(self, seconds: float) -> "Motion":
        """Standing (parked, or lying after a fall): gravity only."""
        self.speed = 0.0
        for _ in range(self._steps(seconds)):
            self.emit(self.up())
        return self

    def cruise(self, seconds: float, kmh: float | None = None) -> "Motion":
        if kmh is not None:
            self.speed = kmh / 3.6
        self.lean = self.pitch = 0.0
        for _ in range(self._steps(seconds)):
            self.emit((0.0, 0.0, 1.0))
        return self

    def accelerate(self, to_kmh: float, g: float = 0.3) -> "Motion":
        target = to_kmh / 3.6
        step = g * G * self.dt
        while self.speed < target:
            self.speed = min(target, self.speed + step)
            self.emit((g, 0.0, 1.0), (0.0, -2.0, 0.0))
        return self

    def brake(self, to_kmh: float = 0.0, g: float = 0.5, abs_ripple: bool = False) -> "Motion":
        """Braking at ``g`` to ``to_kmh``; a hard stop is ``brake(0, 0.95, abs_ripple=True)``."""
        target = to_kmh / 3.6
        if target == 0.0 and g >= 0.8:
            self.events["hard_stop"] += 1
        dive = math.sin(math.radians(-1.0 - 3.0 * g))
        k = 0
        while self.speed > target:
            ripple = 0.15 * math.sin(2 * math.pi * 7 * k * self.dt) if abs_ripple else 0.0
            self.speed = max(target, self.speed - (g + ripple) * G * self.dt)
            self.emit((-g - ripple + dive, 0.0, 1.0), (0.0, 1.5, 0.0))
            k += 1
        return self

    def bend(self, seconds: float, lean_deg: float, right: bool = True) -> "Motion":
        """A steady bend at the current speed: leaned (motorcycle) or sideways load (car)."""
        self.events["bend"] += 1
        v = max(self.speed, 1.0)
        lean = math.radians(abs(lean_deg))
        a_c = math.tan(lean)  # in g
        yaw = math.degrees(a_c * G / v) * (-1 if right else 1)
        sign = 1 if right else -1
        ramp = min(self._steps(1.0), self._steps(seconds) // 3)
        total = self._steps(seconds)
        for i in range(total):
            frac = min(1.0, i / ramp, (total - i) / ramp) if ramp else 1.0
            phi = lean * frac
            roll_rate = (math.degrees(lean) / (ramp * self.dt)) * sign if ramp and (i < ramp) else (
                -(math.degrees(lean) / (ramp * self.dt)) * sign if ramp and i > total - ramp else 0.0)
            if self.kind == "car":
                self.emit((0.0, -sign * a_c * frac, 1.0), (0.0, 0.0, yaw * frac))
            else:
                self.emit((0.0, 0.0, 1.0 / math.cos(phi)),
                          (roll_rate, yaw * frac * math.sin(phi) * -sign, yaw * frac * math.cos(phi)))
        return self

    # ----------------------------------------------------- road's shocks

    def _wheel_strike(self, z_g: float, x_g: float, ms: float) -> None:
        n = max(1, round(ms / 1000 * self.rate_hz))
        for _ in range(self._steps(0.03)):
            self.emit((0.0, 0.0, 0.6))
        for i in range(n):
            s = _half_sine(i, n)
            self.emit((-x_g * s, 0.0, 1.0 + z_g * s), (0.0, 30.0 * s, 0.0))

    def pothole(self, size: float = 1.0) -> "Motion":
        """A pothole at the current speed; ``size`` scales it (0.6 to 1.4 in the property tests)."""
        self.events["pothole"] += 1
        kmh = self.speed * 3.6
        z = min(1.0 + 0.045 * kmh, 6.0) * size * (0.7 if self.kind == "car" else 1.0)
        x = (0.4 + 0.015 * kmh) * size
        ms = self.rng.uniform(8.0, 16.0)
        self._wheel_strike(z, x, ms)
        self.cruise(WHEELBASE_M / max(self.speed, 0.5))
        self._wheel_strike(0.8 * z, 0.8 * x, ms)
        return self

    def kerb(self, size: float = 1.0) -> "Motion":
        self.events["kerb"] += 1
        kmh = self.speed * 3.6
        z, x = (3.5 + 0.05 * kmh) * size, (1.0 + 0.02 * kmh) * size
        ms = self.rng.uniform(10.0, 16.0)
        self._wheel_strike(z, x, ms)
        self.cruise(WHEELBASE_M / max(self.speed, 0.5))
        self._wheel_strike(0.7 * z, 0.7 * x, ms)
        return self

    def speed_bump(self, size: float = 1.0) -> "Motion":
        self.events["speed_bump"] += 1
        kmh = self.speed * 3.6
        z = (0.4 + 0.02 * kmh) * size
        for _wheel in range(2):
            n = self._steps(0.12)
            for i in range(n):
                s = _half_sine(i, n)
                self.emit((-0.2 * s, 0.0, 1.0 + z * s), (0.0, 15.0 * s, 0.0))
            for _ in range(self._steps(0.08)):
                self.emit((0.0, 0.0, 0.7), (0.0, -10.0, 0.0))
            self.cruise(max(0.05, WHEELBASE_M / max(self.speed, 0.5) - 0.2))
        return self

    # ----------------------------------------------------------- parked

    def kick_stand_out(self) -> "Motion":
        """Parking: the side stand out, the motorcycle settles onto it (leans left)."""
        self.speed = 0.0
        n = self._steps(0.5)
        for i in range(n):
            self.lean = STAND_LEAN_DEG * (i + 1) / n
            self.emit(self.up(), (STAND_LEAN_DEG / 0.5, 0.0, 0.0))
        for i in range(self._steps(0.03)):
            self.emit((0.0, -0.3, 1.0), (0.0, 0.0, 0.0))
        return self

    def _fall(self, to_deg: float, impact_g: float, ms: float = 38.0, push_dps: float = 10.0) -> None:
        """Topple from the current lean to ``to_deg`` (±90), then the side hits the ground."""
        phi = math.radians(self.lean)
        rate = math.radians(push_dps) * (1 if to_deg > 0 else -1)
        target = math.radians(to_deg)
        while abs(phi) < abs(target):
            rate += (G / PENDULUM_M) * math.sin(phi) * self.dt
            phi += rate * self.dt
            self.lean = math.degrees(max(-abs(target), min(abs(target), phi)))
            up = self.up()
            load = max(0.25, math.cos(phi))  # the frame unloads as it falls
            self.emit((up[0] * load, up[1] * load, up[2] * load), (math.degrees(rate), 0.0, 0.0))
        self.lean = to_deg
        self.impacts.append(self.t)
        n = max(1, round(ms / 1000 * self.rate_hz))
        side = 1.0 if to_deg > 0 else -1.0
        for i in range(n):
            s = _half_sine(i, n)
            self.emit((-0.3 * s, side * (1.0 + impact_g * s), 0.3 * impact_g * s), (0.0, 0.0, 20.0 * s))

    def tip_over(self) -> "Motion":
        """A parked motorcycle falls off its stand onto its left side."""
        self.events["parked_drop"] += 1
        self.speed = 0.0
        if self.lean == 0.0:
            self.lean = STAND_LEAN_DEG
        self._fall(-90.0, 6.0, 35.0, push_dps=5.0)
        return self.still(1.0)

    # ----------------------------------------------------------- crashes

    def slide(self) -> "Motion":
        """On its side along the road until friction stops it."""
        side = self.up()
        while self.speed > 0.0:
            self.speed = max(0.0, self.speed - 0.55 * G * self.dt)
            yaw = self.rng.gauss(0.0, 20.0)
            self.emit((-0.55 + side[0], side[1], side[2]), (self.rng.gauss(0, 15), self.rng.gauss(0, 15), yaw),
                      noise=0.3)
        return self

    def low_side(self, kmh: float, lean_deg: float = 35.0) -> "Motion":
        """Riding a right-hand bend at ``kmh``, the front tyre lets go: down on the right side, a slide."""
        self.cruise(0.0, kmh)
        self.bend(3.0, lean_deg)
        self.lean = lean_deg
        self._fall(90.0, 3.0 + 0.03 * kmh, 40.0, push_dps=60.0)
        return self.slide()

    def high_side(self, kmh: float) -> "Motion":
        """The rear steps out in a right-hand bend, grips: flicked over to the left, thrown, tumbling."""
        self.cruise(0.0, kmh)
        self.bend(2.5, 30.0)
        for _ in range(self._steps(0.3)):  # the rear steps out
            self.emit((0.0, -0.4, 1.1), (0.0, 0.0, 60.0), noise=0.1)
        n = self._steps(0.3)
        for i in range(n):  # the snap: compressed, then rolled over to the left
            s = _half_sine(i, n)
            self.lean = 20.0 - 110.0 * (i + 1) / n
            self.emit((0.0, 0.0, 1.0 + 2.0 * s), (-400.0, 50.0, 0.0), noise=0.1)
        for _ in range(self._steps(0.25)):  # thrown: free fall, tumbling
            self.emit((0.0, 0.0, 0.0), (-300.0, 150.0, 80.0), noise=0.05)
        self.lean = -90.0
        self.impacts.append(self.t)
        peak = 6.0 + 0.08 * kmh
        for hit, (g, ms) in enumerate(((peak, 40.0), (0.6 * peak, 30.0))):
            m = max(1, round(ms / 1000 * self.rate_hz))
            for i in range(m):
                s = _half_sine(i, m)
                self.emit((-0.4 * g * s, -(1.0 + 0.8 * g * s), 0.5 * g * s), (-150.0 * s, 80.0 * s, 60.0 * s))
            if hit == 0:
                for _ in range(self._steps(0.5)):  # tumbling between the two
                    self.emit((0.0, -0.6, 0.3), (-200.0, 100.0, 50.0), noise=0.4)
        self.speed *= 0.6
        return self.slide()

    def collision(self, kmh: float) -> "Motion":
        """A car (or a motorcycle) into an obstacle at ``kmh``: a 0.1 s crash pulse, then stopped."""
        self.cruise(0.0, kmh)
        dv = kmh / 3.6
        n = self._steps(0.1)
        mean_g = dv / (0.1 * G)
        self.impacts.append(self.t)
        for i in range(n):
            s = 1.0 - math.cos(2 * math.pi * (i + 0.5) / n)  # haversine, mean 1
            self.speed = max(0.0, self.speed - mean_g * s * G * self.dt)
            self.emit((-mean_g * s, 0.0, 1.0 + 0.2 * mean_g * s * math.sin(3 * math.pi * i / n)), (0.0, -40.0 * s, 0.0))
        self.speed = 0.0
        m = self._steps(0.4)
        for i in range(m):
            s = _half_sine(i, m)
            self.emit((2.0 * s, 0.0, 1.0), (0.0, 20.0 * s, 0.0))
        return self

    def lose_balance(self, kmh: float = 12.0) -> "Motion":
        """Slow, in a tight turn, the rider loses balance: down on the right side at walking pace."""
        self.cruise(2.0, kmh)
        self.lean = 10.0
        self._fall(90.0, 2.5, 40.0, push_dps=20.0)
        self.speed = 0.0
        return self


# ------------------------------------------------------------------ profiles


@dataclass(frozen=True)
class Profile:
    """A named profile: its samples and GNSS speeds, and what the rules must make of it."""

    name: str
    description: str
    expect: Expect
    motion: Motion

    @property
    def impact_at(self) -> float | None:
        return self.motion.impacts[0] if self.motion.impacts else None

    @property
    def duration(self) -> float:
        return self.motion.t


def _riding(m: Motion, minutes: float = 1.0) -> Motion:
    """Town riding: speeds, bends both ways, stops, and the road's shocks."""
    rng = m.rng
    end = m.t + minutes * 60.0
    m.cruise(1.0, 30.0)
    while m.t < end:
        choice = rng.random()
        if choice < 0.25:
            m.accelerate(rng.uniform(30, 90), rng.uniform(0.15, 0.4))
            m.cruise(rng.uniform(2, 8))
        elif choice < 0.45:
            m.bend(rng.uniform(2, 6), rng.uniform(10, 42), right=rng.random() < 0.5)
        elif choice < 0.6:
            m.pothole(rng.uniform(0.6, 1.4))
        elif choice < 0.7:
            m.brake(rng.uniform(15, 30), 0.3)
            m.speed_bump(rng.uniform(0.6, 1.4))
            m.accelerate(rng.uniform(30, 60), 0.25)
        elif choice < 0.78:
            m.kerb(rng.uniform(0.6, 1.4))
        elif choice < 0.88:
            m.brake(0.0, rng.uniform(0.8, 1.0), abs_ripple=True)  # a hard stop
            m.still(rng.uniform(1, 20))
            m.accelerate(rng.uniform(30, 60), 0.3)
        else:
            m.brake(rng.uniform(10, 20), 0.4)
            m.accelerate(rng.uniform(40, 70), 0.3)
    return m


def _parked_drop(m: Motion) -> Motion:
    m.cruise(5.0, 30.0).brake(0.0, 0.4).still(3.0).set_ignition(False).kick_stand_out().still(40.0)
    return m.tip_over().still(30.0)


def _tip_over(m: Motion) -> Motion:
    """Already parked on its stand, ignition off: it falls over (a scenario's parked drop)."""
    m.set_ignition(False)
    m.lean = STAND_LEAN_DEG
    return m.still(3.0).tip_over().still(20.0)


def _stopped_drop(m: Motion) -> Motion:
    """No ignition line: the speed says parked (still for longer than parked_after_s), then it falls."""
    m.cruise(5.0, 30.0).brake(0.0, 0.4).still(3.0).kick_stand_out().still(45.0)
    return m.tip_over().still(30.0)


PROFILES: dict[str, tuple[str, Expect, Callable[[Motion], Motion]]] = {
    "riding": ("a minute of town riding: bends leaned to 42 degrees, accelerating, braking, potholes, speed "
               "bumps, kerbs, hard stops", "none", lambda m: _riding(m, 1.0)),
    "potholes": ("riding at 30 to 90 km/h over one pothole every few seconds", "none",
                 lambda m: _potholes(m)),
    "speed-bumps": ("slowing for speed bumps at 15 to 40 km/h", "none", lambda m: _bumps(m)),
    "kerbs": ("riding up kerbs at 10 to 30 km/h", "none", lambda m: _kerbs(m)),
    "hard-stop": ("an emergency stop from 90 km/h at 1 g with ABS", "none",
                  lambda m: m.cruise(3.0, 90.0).brake(0.0, 1.0, abs_ripple=True).still(10.0)),
    "stand-out": ("parking: the side stand kicked out, the motorcycle settles on it", "none",
                  lambda m: m.cruise(3.0, 20.0).brake(0.0, 0.3).still(2.0).kick_stand_out().still(10.0)),
    "parked-drop": ("parked, ignition off, the motorcycle falls off its stand", "none", _parked_drop),
    "parked-drop-no-ignition": ("parked 45 s with no ignition line (GNSS at 0 km/h), then it falls off its stand",
                                "none", _stopped_drop),
    "tip-over": ("already parked on its side stand, ignition off: it falls over onto its left side", "none", _tip_over),
    "low-side-30": ("a low-side at 30 km/h: down on the right side in a bend, a slide", "severe",
                    lambda m: m.low_side(30.0).still(20.0)),
    "low-side-50": ("a low-side at 50 km/h", "severe", lambda m: m.low_side(50.0).still(20.0)),
    "low-side-90": ("a low-side at 90 km/h", "severe", lambda m: m.low_side(90.0).still(20.0)),
    "high-side-30": ("a high-side at 30 km/h: flicked over, thrown, tumbling, a slide", "severe",
                     lambda m: m.high_side(30.0).still(20.0)),
    "high-side-50": ("a high-side at 50 km/h", "severe", lambda m: m.high_side(50.0).still(20.0)),
    "high-side-90": ("a high-side at 90 km/h", "severe", lambda m: m.high_side(90.0).still(20.0)),
    "rider-down": ("at walking pace the rider loses balance; the motorcycle lies still on its side", "man_down",
                   lambda m: m.lose_balance(12.0).still(70.0)),
    "car-collision": ("a car into an obstacle at 50 km/h", "severe",
                      lambda m: m.cruise(5.0, 50.0).collision(50.0).still(20.0)),
    "car-riding": ("a minute of town driving in a car: cornering, braking, potholes", "none",
                   lambda m: _riding(m, 1.0)),
}
CAR_PROFILES = ("car-collision", "car-riding")


def _potholes(m: Motion) -> Motion:
    for kmh in (30, 50, 70, 90, 50, 30):
        m.cruise(2.0, kmh)
        for _ in range(4):
            m.pothole(m.rng.uniform(0.6, 1.4))
            m.cruise(m.rng.uniform(1.0, 4.0))
    return m


def _bumps(m: Motion) -> Motion:
    for kmh in (15, 25, 40, 30):
        m.cruise(3.0, 50.0).brake(kmh, 0.35).speed_bump(m.rng.uniform(0.6, 1.4)).accelerate(50.0, 0.3)
    return m


def _kerbs(m: Motion) -> Motion:
    for kmh in (10, 20, 30):
        m.cruise(3.0, kmh).kerb(m.rng.uniform(0.6, 1.4)).cruise(3.0)
    return m


def build(name: str, *, rate_hz: int = 100, seed: int = 1) -> Profile:
    """The named profile (KeyError: not one of :data:`PROFILES`)."""
    description, expect, make = PROFILES[name]
    kind = "car" if name in CAR_PROFILES else "motorcycle"
    return Profile(name, description, expect, make(Motion(rate_hz=rate_hz, seed=seed, kind=kind)))


def sensor_view(profile: Profile, range_g: float = 16.0) -> list[Sample]:
    """The samples as the sensor gives them: clipped at its range (±16 g)."""
    def clip(v: tuple[float, float, float]) -> tuple[float, float, float]:
        return (max(-range_g, min(range_g, v[0])), max(-range_g, min(range_g, v[1])), max(-range_g, min(range_g, v[2])))

    return [(t, clip(a), w) for t, a, w in profile.motion.samples]
