"""A simulated sky: which satellites a receiver sees, how well, and the DOPs.

Not an orbit propagator; a deterministic model that moves the way a real sky
looks from the ground, so the satellite counts, signal strengths and HDOP the
agent receives vary plausibly instead of sitting at constants:

- Each satellite of a constellation (GPS 31, GLONASS 24, Galileo 24 by
  default) repeats a *pass* every orbital period (GPS 11 h 58 min, GLONASS
  11 h 15 min, Galileo 14 h 05 min): it rises at one azimuth, climbs to its
  peak elevation and sets some 120-240° further round, above the horizon for
  about 40 % of the period. Phases, peaks and azimuths come from a seeded
  random generator, so a seed is a reproducible sky; about 10-12 GPS
  satellites are up at any time, as in reality.
- Signal strength (C/N0, dB-Hz) grows with elevation, with a per-satellite
  offset and a slow flicker (a hash of satellite and 4-second slot, so it is a
  pure function of time).
- The surroundings are an *elevation mask*: buildings hide everything below
  it. A satellite under the mask stays in the almanac view (GSV, no SNR) but is
  not tracked; a tracked satellite is used in the solution when its signal is
  at least 25 dB-Hz and it is above 5°. Up to 12 satellites per constellation
  are used, the strongest first, like a receiver with 12 channels per GSA.
- PDOP/HDOP/VDOP come from the used satellites' geometry (``nmea_gen.dops``).

``Sky.view(utc, mask_deg)`` is pure: same arguments, same answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from dataclasses import dataclass

from hil.nmea_gen import SatView, dops

# Orbital period (s), active satellites, NMEA id of the first one.
CONSTELLATIONS: dict[str, tuple[float, int, int]] = {
    "GPS": (43_080.0, 31, 1),
    "GLONASS": (40_500.0, 24, 65),
    "GALILEO": (50_700.0, 24, 1),
}
VISIBLE_FRACTION = 0.40
MIN_USED_SNR = 25
MIN_USED_ELEVATION = 5.0
MAX_USED_PER_SYSTEM = 12


@dataclass(frozen=True, slots=True)
class _Pass:
    system: str
    prn: int
    period: float
    phase: float
    peak: float  # degrees
    az_rise: float
    az_sweep: float
    snr_offset: float


@dataclass(frozen=True, slots=True)
class SkyView:
    """The satellites at one instant and the solution quality they allow."""

    sats: tuple[SatView, ...]
    pdop: float
    hdop: float
    vdop: float

    @property
    def used(self) -> int:
        return sum(1 for s in self.sats if s.used)

    @property
    def can_fix(self) -> bool:
        return self.used >= 4 and self.hdop < 20.0


class Sky:
    """A reproducible sky for the given constellations."""

    def __init__(self, seed: int = 1, systems: tuple[str, ...] = ("GPS", "GLONASS", "GALILEO")):
        unknown = set(systems) - set(CONSTELLATIONS)
        if unknown:
            raise ValueError(f"unknown constellation(s) {sorted(unknown)}; known: {sorted(CONSTELLATIONS)}")
        rng = random.Random(seed)
        passes = []
        for system in systems:
            period, count, first = CONSTELLATIONS[system]
            for i in range(count):
                passes.append(
                    _Pass(
                        system=system,
                        prn=first + i,
                        period=period,
                        phase=rng.random(),
                        peak=rng.uniform(12.0, 88.0),
                        az_rise=rng.uniform(0.0, 360.0),
                        az_sweep=rng.uniform(120.0, 240.0),
                        snr_offset=rng.uniform(-3.0, 3.0),
                    )
                )
        self._passes = tuple(passes)
        self.systems = systems

    def view(self, utc: dt.datetime, mask_deg: float = 10.0, *, blocked: bool = False) -> SkyView:
        """What the receiver sees at ``utc`` behind an elevation mask.

        ``blocked`` is a tunnel or underground car park: satellites remain in
        the almanac view but none is tracked.
        """
        t = utc.timestamp()
        tracked: list[tuple[_Pass, int, int, int | None]] = []
        for p in self._passes:
            u = (t / p.period + p.phase) % 1.0
            if u >= VISIBLE_FRACTION:
                continue
            x = u / VISIBLE_FRACTION
            el = p.peak * math.sin(math.pi * x)
            if el < 1.0:
                continue
            az = (p.az_rise + p.az_sweep * x) % 360.0
            snr: int | None = None
            if not blocked and el >= mask_deg:
                flicker = _flicker(p.system, p.prn, int(t // 4))
                snr = int(round(min(max(16.0 + 30.0 * math.sin(math.radians(el)) + p.snr_offset + flicker, 0.0), 52.0)))
            tracked.append((p, int(round(el)), int(round(az)) % 360, snr))

        used_keys: set[tuple[str, int]] = set()
        for system in self.systems:
            candidates = [
                (snr, p.prn)
                for p, el, _az, snr in tracked
                if p.system == system and snr is not None and snr >= MIN_USED_SNR and el >= MIN_USED_ELEVATION
            ]
            for _snr, prn in sorted(candidates, reverse=True)[:MAX_USED_PER_SYSTEM]:
                used_keys.add((system, prn))

        sats = tuple(
            SatView(p.system, p.prn, el, az, snr, (p.system, p.prn) in used_keys)
            for p, el, az, snr in sorted(tracked, key=lambda item: (self.systems.index(item[0].system), item[0].prn))
        )
        d = dops(s for s in sats if s.used)
        if d is None:
            return SkyView(sats, 99.99, 99.99, 99.99)
        return SkyView(sats, *d)


def _flicker(system: str, prn: int, slot: int) -> float:
    """A pseudo-random -2..+2 dB wobble, a pure function of its arguments."""
    digest = hashlib.blake2b(f"{system}:{prn}:{slot}".encode(), digest_size=2).digest()
    return (int.from_bytes(digest, "big") / 65535.0) * 4.0 - 2.0
