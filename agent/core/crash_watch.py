"""The crash sensor in the unit: its samples to the detector, and a crash trace around each finding.

:class:`CrashWatch` takes the reader's batches (board frame, :mod:`agent.adapters.imu_reader`),
turns each sample into the vehicle's frame (:class:`~agent.core.imu_frames.Mounting`), keeps
the last ``trace_before_s`` in a ring and feeds the detector (:mod:`.crash_detect`). GNSS
fixes and the ignition are its context. It returns the detector's findings and the crash
traces to store; the unit decides what a finding raises (:mod:`.unit`).

A **crash trace** is what happened around a finding: every sample from ``trace_before_s``
before the impact to ``trace_after_s`` after it (vehicle frame: mg and tenths of °/s, times in
ms from the impact) and the GNSS fixes of the same span (position and speed). It is handed out
twice: at the finding (what came before and the impact itself: if the unit is smashed a second
later, that much is already on the card) and complete once the span after it has passed (by
the samples' clock; if the sensor falls silent, by the unit's clock ``TRACE_GRACE_S`` later,
with what came). Each has an id the unit draws (unique, like alarm ids). Memory: the ring is
fixed arrays (7 numbers a sample), and at most ``MAX_OPEN`` traces are collected at once.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.config import ImuConfig

from .crash_detect import CrashDetector, Finding
from .events import Fix
from .imu_frames import Mounting

TRACE_GRACE_S = 3.0
MAX_OPEN = 4
GNSS_KEPT = 64  # fixes: a minute at 1 Hz, more than any trace spans
TRACE_FIELDS = ("t_ms", "ax_mg", "ay_mg", "az_mg", "gx_ddps", "gy_ddps", "gz_ddps")
GNSS_FIELDS = ("t_ms", "lat", "lon", "speed")

BoardSample = Sequence[float]  # (t, ax, ay, az, gx, gy, gz): board frame, g and °/s


class SampleRing:
    """The last ``capacity`` samples in fixed arrays: time, and six channels as integers."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._t = array("d", bytes(8 * capacity))
        self._v = array("i", bytes(4 * 6 * capacity))
        self._next = 0
        self._count = 0

    def append(self, t: float, values: tuple[int, int, int, int, int, int]) -> None:
        i = self._next
        self._t[i] = t
        base = 6 * i
        self._v[base:base + 6] = array("i", values)
        self._next = (i + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def since(self, t0: float) -> list[tuple[float, int, int, int, int, int, int]]:
        out = []
        start = (self._next - self._count) % self.capacity
        for k in range(self._count):
            i = (start + k) % self.capacity
            if self._t[i] >= t0:
                v = self._v[6 * i:6 * i + 6]
                out.append((self._t[i], v[0], v[1], v[2], v[3], v[4], v[5]))
        return out


@dataclass
class _Open:
    id: str
    finding: Finding
    samples: list[tuple[float, int, int, int, int, int, int]]
    until: float


@dataclass(frozen=True, slots=True)
class CrashTrace:
    """A trace to store (and, ``complete``, to send). ``samples`` and ``gnss`` are relative to ``at``."""

    id: str
    finding: Finding
    complete: bool
    samples: tuple[tuple[int, ...], ...]
    gnss: tuple[tuple[float, ...], ...]
    before_s: float
    after_s: float
    rate_hz: float

    def summary(self) -> dict[str, Any]:
        """The compact part an alarm carries (``crash`` in the alarm message)."""
        f = self.finding
        return {"trace": self.id, "cause": f.cause, "severity": f.severity, "peak_g": f.peak_g,
                "speed_before": round(f.speed_before, 2) if f.speed_before is not None else None,
                "roll_deg": f.roll_deg}

    def body(self) -> dict[str, Any]:
        """The trace's samples as the ``crash/trace`` message carries them (the unit adds the rest)."""
        return {
            "rate_hz": self.rate_hz,
            "from_s": -self.before_s,
            "to_s": self.after_s,
            "imu": {"frame": "vehicle", "fields": list(TRACE_FIELDS), "samples": [list(s) for s in self.samples]},
            "gnss": {"fields": list(GNSS_FIELDS), "samples": [list(g) for g in self.gnss]},
        }


@dataclass
class CrashWatch:
    """See the module docstring."""

    config: ImuConfig
    mounting: Mounting
    new_id: Callable[[], str] = field(repr=False)
    detector: CrashDetector = field(init=False)
    ring: SampleRing = field(init=False)
    sensor: str = "starting"  # "ok", "lost", "starting"
    sensor_detail: str = ""
    samples_seen: int = 0
    last_finding: Finding | None = None
    _open: list[_Open] = field(default_factory=list)
    _gnss: deque[tuple[float, float, float, float | None]] = field(default_factory=lambda: deque(maxlen=GNSS_KEPT))
    _last_sample_t: float | None = None

    def __post_init__(self) -> None:
        self.detector = CrashDetector(self.config)
        # The longest before-span the config allows, at the configured rate (a hot change never overflows it).
        self.ring = SampleRing(int(self.config.rate_hz * 31))

    def reconfigure(self, config: ImuConfig) -> None:
        self.config = config
        self.detector.config = config

    # ------------------------------------------------------------ context

    def on_fix(self, fix: Fix, mono: float) -> None:
        if not fix.valid:
            return
        self.detector.on_fix(mono, fix.speed)
        self._gnss.append((mono, fix.lat, fix.lon, fix.speed))  # type: ignore[arg-type]

    def on_ignition(self, on: bool | None) -> None:
        self.detector.on_ignition(on)

    # ------------------------------------------------------------ samples

    def on_samples(self, batch: Sequence[BoardSample]) -> tuple[list[tuple[Finding, CrashTrace]], list[CrashTrace]]:
        """A reader's batch. Returns the findings with their first trace, and the traces completed."""
        found: list[tuple[Finding, CrashTrace]] = []
        done: list[CrashTrace] = []
        to_vehicle = self.mounting.to_vehicle
        feed = self.detector.feed
        ring = self.ring
        for s in batch:
            t = s[0]
            if self._last_sample_t is not None and t <= self._last_sample_t:
                continue  # out of order (a reopened device's old buffer): the rules need time to run forward
            self._last_sample_t = t
            a = to_vehicle((s[1], s[2], s[3]))
            w = to_vehicle((s[4], s[5], s[6]))
            row = (_i(a[0] * 1000), _i(a[1] * 1000), _i(a[2] * 1000), _i(w[0] * 10), _i(w[1] * 10), _i(w[2] * 10))
            ring.append(t, row)
            for trace in self._open:
                trace.samples.append((t, *row))
            for finding in feed(t, a, w):
                found.append((finding, self._start_trace(finding)))
            if self._open and t >= self._open[0].until:
                done += self._close(lambda o: t >= o.until)
        self.samples_seen += len(batch)
        return found, done

    def tick(self, now: float) -> list[CrashTrace]:
        """Traces the sensor's silence left open: complete them with what came."""
        if not self._open:
            return []
        last = self._last_sample_t if self._last_sample_t is not None else float("-inf")
        if now - last < TRACE_GRACE_S:
            return []  # samples are still coming: they close it
        return self._close(lambda o: now >= o.until + TRACE_GRACE_S)

    def next_deadline(self) -> float | None:
        return min(o.until for o in self._open) + TRACE_GRACE_S if self._open else None

    # ------------------------------------------------------------- traces

    def _start_trace(self, finding: Finding) -> CrashTrace:
        self.last_finding = finding
        trace = _Open(self.new_id(), finding, self.ring.since(finding.at - self.config.trace_before_s),
                      finding.at + self.config.trace_after_s)
        self._open.append(trace)
        if len(self._open) > MAX_OPEN:
            self._open.pop(0)  # a storm of findings: the oldest stops collecting (its first part is stored)
        return self._trace(trace, complete=False)

    def _close(self, due: Callable[[_Open], bool]) -> list[CrashTrace]:
        closing = [o for o in self._open if due(o)]
        self._open = [o for o in self._open if not due(o)]
        return [self._trace(o, complete=True) for o in closing]

    def _trace(self, o: _Open, complete: bool) -> CrashTrace:
        at = o.finding.at
        start, end = at - self.config.trace_before_s, at + self.config.trace_after_s
        samples = tuple((round((s[0] - at) * 1000), *s[1:]) for s in o.samples if start <= s[0] <= end)
        gnss = tuple((round((g[0] - at) * 1000), round(g[1], 7), round(g[2], 7),
                      round(g[3], 2) if g[3] is not None else None)
                     for g in self._gnss if start <= g[0] <= end)
        return CrashTrace(o.id, o.finding, complete, samples, gnss, self.config.trace_before_s,
                          self.config.trace_after_s, float(self.config.rate_hz))


def _i(x: float) -> int:
    return int(math.floor(x + 0.5))
