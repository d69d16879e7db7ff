"""How the crash sensor sits in the vehicle: from the board's axes to the vehicle's (pure).

The board may be mounted at any angle. Every sample is turned into the vehicle's frame before
any rule reads it: x forward, y to the left, z up (ISO 8855), in g for the accelerometer and
degrees per second for the gyroscope. An accelerometer measures specific force, so a vehicle at
rest on level ground reads (0, 0, +1 g): "up" is where gravity's reaction points.

:class:`Mounting` holds the vehicle's three axes written in the board's coordinates (the rows
of a rotation matrix). It comes from two sources:

* the configuration's ``[imu] forward_axis`` and ``up_axis`` (the board's axes that point
  forward and up, e.g. ``+x`` and ``+z`` for a board lying flat with its x arrow forward);
* a calibration (``umps-agent imu calibrate``, :func:`calibrate`) from two still positions on
  level ground: ``level`` (a motorcycle on its side stand, a car parked) and ``upright`` (the
  motorcycle held vertical). The upright reading is the vertical axis. On its stand a
  motorcycle leans to its left, so world "up" appears toward the vehicle's right in the level
  reading: what that reading has beyond the vertical points to the right, which gives the
  lateral axis, and forward follows (x = y × z). A car cannot lean: its forward axis is the
  configured one, squared against the measured vertical.

Lean and pitch from the accelerometer (:func:`lean_deg`, :func:`pitch_deg`, :func:`tilt_deg`)
are the static ones: true for a vehicle standing, parked or lying after a fall, which is what
the rules need. In a steady bend a motorcycle's accelerometer reads no sideways force at all
(the lean balances it), so a bend never looks like a fall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Vec = tuple[float, float, float]

AXES: dict[str, Vec] = {
    "+x": (1.0, 0.0, 0.0), "-x": (-1.0, 0.0, 0.0),
    "+y": (0.0, 1.0, 0.0), "-y": (0.0, -1.0, 0.0),
    "+z": (0.0, 0.0, 1.0), "-z": (0.0, 0.0, -1.0),
}
# The smallest lean between the two calibration positions that gives a usable forward axis
# (a side stand leans a motorcycle 10 to 15 degrees).
MIN_CALIBRATION_LEAN_DEG = 4.0
# Gravity read in a still position must be within this of 1 g (a board not at rest, or a
# wrong scale, is refused rather than stored).
GRAVITY_TOLERANCE_G = 0.15
MOUNTING_VERSION = 1


class CalibrationError(ValueError):
    """The positions given cannot define a mounting; the message says what to do."""


def dot(a: Vec, b: Vec) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def cross(a: Vec, b: Vec) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def norm(a: Vec) -> float:
    return math.sqrt(dot(a, a))


def scale(a: Vec, k: float) -> Vec:
    return (a[0] * k, a[1] * k, a[2] * k)


def sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def unit(a: Vec) -> Vec:
    n = norm(a)
    if n == 0.0:
        raise CalibrationError("a zero vector has no direction")
    return scale(a, 1.0 / n)


@dataclass(frozen=True, slots=True)
class Mounting:
    """The vehicle's axes in the board's coordinates: ``x`` forward, ``y`` left, ``z`` up."""

    x: Vec
    y: Vec
    z: Vec
    source: str = "config"  # "config" or "calibration"

    def __post_init__(self) -> None:
        for name, axis in (("x", self.x), ("y", self.y), ("z", self.z)):
            if len(axis) != 3 or not all(math.isfinite(c) for c in axis) or abs(norm(axis) - 1.0) > 1e-3:
                raise ValueError(f"mounting axis {name} {axis!r} is not a unit vector")
        if abs(dot(self.x, self.y)) > 1e-3 or abs(dot(self.y, self.z)) > 1e-3 or abs(dot(self.x, self.z)) > 1e-3:
            raise ValueError("mounting axes are not perpendicular")
        if dot(cross(self.x, self.y), self.z) < 0:
            raise ValueError("mounting axes are left-handed (x forward, y left, z up is right-handed)")

    @classmethod
    def from_axes(cls, forward: str, up: str, source: str = "config") -> "Mounting":
        """From the board's axes that point forward and up (``"+x"``, ``"-z"``...)."""
        if forward not in AXES or up not in AXES:
            raise ValueError(f"axes are one of {', '.join(AXES)}")
        x, z = AXES[forward], AXES[up]
        if abs(dot(x, z)) > 0.5:
            raise ValueError(f"forward {forward} and up {up} are the same axis")
        return cls(x, cross(z, x), z, source)

    def to_vehicle(self, v: Vec) -> Vec:
        """A board-frame vector in the vehicle's frame."""
        x, y, z = self.x, self.y, self.z
        return (x[0] * v[0] + x[1] * v[1] + x[2] * v[2],
                y[0] * v[0] + y[1] * v[1] + y[2] * v[2],
                z[0] * v[0] + z[1] * v[1] + z[2] * v[2])

    def to_board(self, v: Vec) -> Vec:
        """A vehicle-frame vector in the board's frame (the inverse: the rig's emulator uses it)."""
        x, y, z = self.x, self.y, self.z
        return (x[0] * v[0] + y[0] * v[1] + z[0] * v[2],
                x[1] * v[0] + y[1] * v[1] + z[1] * v[2],
                x[2] * v[0] + y[2] * v[1] + z[2] * v[2])

    def snapshot(self) -> dict[str, Any]:
        """What ``imu-mounting.json`` holds."""
        return {"version": MOUNTING_VERSION, "x": list(self.x), "y": list(self.y), "z": list(self.z),
                "source": self.source}

    @classmethod
    def restore(cls, data: Any) -> "Mounting":
        """From :meth:`snapshot`; raises ValueError for anything else."""
        if not isinstance(data, dict) or data.get("version") != MOUNTING_VERSION:
            raise ValueError(f"not a version {MOUNTING_VERSION} mounting")
        try:
            axes = [tuple(float(c) for c in data[k]) for k in ("x", "y", "z")]
        except (KeyError, TypeError, ValueError):
            raise ValueError("mounting axes x, y and z must be lists of three numbers") from None
        return cls(*axes, source=str(data.get("source", "calibration")))  # type: ignore[arg-type]


def calibrate(level: Vec, upright: Vec, *, kind: str, forward_axis: str) -> Mounting:
    """The mounting from the mean accelerometer reading (board frame, g) in each position.

    ``level``: a motorcycle on its side stand (or a car parked); ``upright``: the motorcycle
    held vertical (a car: the same position). Raises :class:`CalibrationError`.
    """
    for name, g in (("level", level), ("upright", upright)):
        if abs(norm(g) - 1.0) > GRAVITY_TOLERANCE_G:
            raise CalibrationError(f"the {name} position reads {norm(g):.2f} g, not 1 g: keep the vehicle still "
                                   f"(and check the sensor's range)")
    z = unit(upright)
    if kind == "car":
        f = AXES[forward_axis]
        along = sub(f, scale(z, dot(f, z)))
        if norm(along) < 0.5:
            raise CalibrationError(f"forward_axis {forward_axis} is almost vertical in this mounting: "
                                   f"name the board axis that points forward")
        x = unit(along)
        return Mounting(x, cross(z, x), z, "calibration")
    g = unit(level)
    lean = math.degrees(math.acos(max(-1.0, min(1.0, dot(g, z)))))
    if lean < MIN_CALIBRATION_LEAN_DEG:
        raise CalibrationError(f"the two positions differ by {lean:.1f} degrees: put the motorcycle on its side "
                               f"stand for 'level' and hold it vertical for 'upright'")
    right = sub(g, scale(z, dot(g, z)))  # world up leans toward the vehicle's right on the stand
    y = unit(scale(right, -1.0))
    x = cross(y, z)
    return Mounting(x, y, z, "calibration")


def tilt_deg(a: Vec) -> float:
    """Angle between the vehicle's up axis and the measured up (0 upright, 90 on its side)."""
    n = norm(a)
    if n < 1e-6:
        return 0.0
    return math.degrees(math.acos(max(-1.0, min(1.0, a[2] / n))))


def lean_deg(a: Vec) -> float:
    """Static lean (roll), positive to the right, from a vehicle-frame accelerometer reading."""
    return math.degrees(math.atan2(a[1], a[2]))


def pitch_deg(a: Vec) -> float:
    """Static pitch, positive nose up."""
    return math.degrees(math.atan2(a[0], math.hypot(a[1], a[2])))
