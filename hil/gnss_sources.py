"""What the emulated receiver says, epoch by epoch: a drive or a replay.

Two sources, one shape. ``source.stream(rate_hz=..., talker=..., seed=...)``
returns a stream with:

- ``next_due() -> float | None``: emulated time (seconds since the emulator
  started) of the next epoch, ``None`` when a replay has run out;
- ``emit(t, fix_lost, time_offset_s) -> (lines, truth)``: the epoch's framed
  sentences as ``bytes`` and, for a drive, where the vehicle truly was.

**RouteSource** drives a :class:`hil.route.Route` under a :class:`hil.sky.Sky`:
at each epoch it asks the route where the vehicle is, the sky what is
overhead behind an elevation mask that breathes with the buildings along the
way (10-18° in town), adds position error that wanders like a real receiver's
(a first-order Gauss-Markov walk, about ``noise_m`` x HDOP metres, 20 s
correlation), and formats the epoch with ``hil.nmea_gen``. GSV and ZDA go out
once a second whatever the rate, as receivers do to fit the serial line.
Without sky (tunnel fault, or ``auto_tunnel`` inside a section named
``underpass``/``tunnel``) there is no fix, and after the sky comes back the
receiver needs ``reacquire_s`` seconds to fix again. ``offset_s`` starts the
drive that far along the route (to bring the underpass to a given time).

**CaptureSource** replays a real receiver log (e.g. gpsd's regression
captures): ``#`` lines are skipped, the rest is grouped into epochs on the
time field of RMC/GGA/GNS/GLL/ZDA/GST/GBS/GRS, and epochs are paced by the
difference of their times (1 s when unknown or odd), divided by ``speed``.
Binary frames between sentences are replayed untouched. A fix-lost fault
blanks the fix fields (``gnss_faults.blank_fix``); a time jump is refused
because the capture carries its own clock.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path

from hil.gnss_faults import blank_fix
from hil.nmea_gen import TALKERS, NavEpoch, epoch_sentences
from hil.route import EARTH_RADIUS_M, Route, default_route
from hil.sky import Sky

UTC = dt.timezone.utc
RATES = (1, 5, 10)
TUNNEL_SECTIONS = ("underpass", "tunnel")


@dataclass(frozen=True, slots=True)
class TruthPoint:
    """Where the emulated vehicle really was at one epoch, and what was said.

    ``t`` is emulated seconds since start; ``utc`` the true time (a time-jump
    fault changes what is reported, not this). ``fix`` and ``reported_*`` are
    what the receiver sent (with its position error), ``None`` without a fix.
    """

    t: float
    utc: dt.datetime
    lat: float
    lon: float
    alt: float
    speed: float
    track: float
    fix: bool
    reported_lat: float | None
    reported_lon: float | None
    sats_used: int
    hdop: float | None
    section: str | None
    lap: int


def _check(rate_hz: int, talker: str) -> None:
    if rate_hz not in RATES:
        raise ValueError(f"rate_hz must be one of {RATES}, not {rate_hz!r}")
    if talker not in TALKERS:
        raise ValueError(f"talker must be one of {TALKERS}, not {talker!r}")


# -------------------------------------------------------------------- drive


class RouteSource:
    """Drive a route: the usual source for scenarios."""

    supports_time_jump = True

    def __init__(
        self,
        route: Route | None = None,
        *,
        start_utc: dt.datetime | None = None,
        offset_s: float = 0.0,
        noise_m: float = 1.5,
        geoid_sep_m: float = 46.0,  # approximate EGM96 value for north-west Morocco
        auto_tunnel: bool = False,
        reacquire_s: float = 2.0,
    ):
        if start_utc is not None and start_utc.tzinfo is None:
            raise ValueError("start_utc must be timezone-aware (UTC)")
        if noise_m < 0 or reacquire_s < 0:
            raise ValueError("noise_m and reacquire_s must be >= 0")
        self.route = route if route is not None else default_route()
        self.start_utc = start_utc
        self.offset_s = offset_s
        self.noise_m = noise_m
        self.geoid_sep_m = geoid_sep_m
        self.auto_tunnel = auto_tunnel
        self.reacquire_s = reacquire_s

    def stream(self, *, rate_hz: int = 1, talker: str = "GN", seed: int = 1) -> "RouteStream":
        _check(rate_hz, talker)
        return RouteStream(self, rate_hz, talker, seed)


class RouteStream:
    def __init__(self, source: RouteSource, rate_hz: int, talker: str, seed: int):
        self.source = source
        self.rate_hz = rate_hz
        self.talker = talker
        start = source.start_utc or dt.datetime.now(UTC).replace(microsecond=0)
        self.start_utc = start.astimezone(UTC)
        self.sky = Sky(seed, ("GPS",) if talker == "GP" else ("GPS", "GLONASS", "GALILEO"))
        self._rng = random.Random(seed)
        self._index = 0
        self._err_n = 0.0
        self._err_e = 0.0
        self._blocked = False
        self._sky_back_at: float | None = None  # when the sky last came back

    def next_due(self) -> float | None:
        return self._index / self.rate_hz

    def emit(self, t: float, *, fix_lost: bool = False, time_offset_s: float = 0.0) -> tuple[list[bytes], TruthPoint]:
        src = self.source
        state = src.route.at(t + src.offset_s)
        utc = self.start_utc + dt.timedelta(seconds=t)
        blocked = fix_lost or (src.auto_tunnel and state.section in TUNNEL_SECTIONS)
        mask = 14.0 + 4.0 * math.sin(2 * math.pi * state.distance / 350.0)
        view = self.sky.view(utc, mask, blocked=blocked)
        if blocked:
            self._blocked = True
        elif self._blocked:
            self._blocked, self._sky_back_at = False, t
        reacquiring = self._sky_back_at is not None and t - self._sky_back_at < src.reacquire_s
        fix = view.can_fix and not blocked and not reacquiring

        dt_s = 1.0 / self.rate_hz
        sigma = src.noise_m * max(view.hdop if fix else 1.0, 0.5)
        decay = math.exp(-dt_s / 20.0)
        kick = sigma * math.sqrt(1.0 - decay * decay)
        self._err_n = self._err_n * decay + kick * self._rng.gauss(0.0, 1.0)
        self._err_e = self._err_e * decay + kick * self._rng.gauss(0.0, 1.0)
        lat = state.lat + math.degrees(self._err_n / EARTH_RADIUS_M)
        lon = state.lon + math.degrees(self._err_e / (EARTH_RADIUS_M * math.cos(math.radians(state.lat))))

        sats = view.sats if fix else tuple(replace(s, used=False) for s in view.sats)
        epoch = NavEpoch(
            utc=utc + dt.timedelta(seconds=time_offset_s),
            fix=fix,
            lat=lat,
            lon=lon,
            alt=state.alt,
            geoid_sep=src.geoid_sep_m,
            speed=state.speed,
            track=state.track,
            sats=sats,
            hdop=view.hdop,
            vdop=view.vdop,
            pdop=view.pdop,
        )
        once_a_second = self._index % self.rate_hz == 0
        lines = [s.encode("ascii") for s in epoch_sentences(epoch, self.talker, with_gsv=once_a_second, with_zda=once_a_second)]
        truth = TruthPoint(
            t=t,
            utc=utc,
            lat=state.lat,
            lon=state.lon,
            alt=state.alt,
            speed=state.speed,
            track=state.track,
            fix=fix,
            reported_lat=lat if fix else None,
            reported_lon=lon if fix else None,
            sats_used=sum(1 for s in sats if s.used),
            hdop=view.hdop if fix else None,
            section=state.section,
            lap=state.lap,
        )
        self._index += 1
        return lines, truth


# ------------------------------------------------------------------- replay

# Sentence type -> index of its UTC time field.
_TIME_FIELD = {"RMC": 1, "GGA": 1, "GNS": 1, "ZDA": 1, "GST": 1, "GBS": 1, "GRS": 1, "GLL": 5}


def _time_of_day(line: bytes) -> float | None:
    if not line.startswith((b"$", b"!")):
        return None
    try:
        text = line.decode("ascii").split("*", 1)[0]
    except UnicodeDecodeError:
        return None
    fields = text.split(",")
    index = _TIME_FIELD.get(fields[0][-3:])
    if index is None or index >= len(fields):
        return None
    value = fields[index]
    if len(value) < 6 or not value[:6].isdigit():
        return None
    try:
        return int(value[0:2]) * 3600 + int(value[2:4]) * 60 + float(value[4:])
    except ValueError:
        return None


def split_epochs(data: bytes) -> list[tuple[float | None, list[bytes]]]:
    """Group a capture's lines into epochs: (time of day or None, lines).

    Lines are normalised to end in CRLF; ``#`` comment lines and empty lines
    are dropped; everything else (binary frames included) is kept in order.
    """
    epochs: list[tuple[float | None, list[bytes]]] = []
    current: list[bytes] = []
    current_time: float | None = None
    for raw in data.split(b"\n"):
        line = raw.rstrip(b"\r")
        if not line or line.startswith(b"#"):
            continue
        tod = _time_of_day(line)
        if tod is not None and current_time is not None and abs(tod - current_time) > 1e-6 and current:
            epochs.append((current_time, current))
            current = []
            current_time = None
        if tod is not None and current_time is None:
            current_time = tod
        current.append(line + b"\r\n")
    if current:
        epochs.append((current_time, current))
    return epochs


class CaptureSource:
    """Replay a recorded receiver log at its own pace, or ``speed`` times faster."""

    supports_time_jump = False

    def __init__(self, path: str | Path, *, speed: float = 1.0, loop: bool = False):
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read capture {self.path}: {exc}") from exc
        self.epochs = split_epochs(data)
        if not self.epochs:
            raise ValueError(f"capture {self.path} holds no sentences")
        self.speed = speed
        self.loop = loop
        # Interval before each epoch, from the recorded times.
        self.intervals: list[float] = [0.0]
        for (prev, _), (cur, _) in zip(self.epochs, self.epochs[1:]):
            gap = 1.0
            if prev is not None and cur is not None:
                d = (cur - prev) % 86400.0  # midnight wraps
                if 0.0 < d <= 2.0:
                    gap = d
            self.intervals.append(gap / speed)
        self.lines = [line for _, lines in self.epochs for line in lines]

    def stream(self, *, rate_hz: int = 1, talker: str = "GN", seed: int = 1) -> "CaptureStream":
        return CaptureStream(self)


class CaptureStream:
    def __init__(self, source: CaptureSource):
        self.source = source
        self._i = 0
        self._due = 0.0
        self._lap_gap = 1.0 / source.speed

    def next_due(self) -> float | None:
        if self._i >= len(self.source.epochs):
            if not self.source.loop:
                return None
            self._i = 0
            self._due += self._lap_gap
        return self._due

    def emit(self, t: float, *, fix_lost: bool = False, time_offset_s: float = 0.0) -> tuple[list[bytes], None]:
        if time_offset_s:
            raise ValueError("a replayed capture carries its own clock: no time jump")
        if self.next_due() is None:
            return [], None
        _, lines = self.source.epochs[self._i]
        if fix_lost:
            lines = [blank_fix(line) for line in lines]
        self._i += 1
        if self._i < len(self.source.epochs):
            self._due += self.source.intervals[self._i]
        return list(lines), None
