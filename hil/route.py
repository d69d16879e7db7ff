"""Routes for the GNSS emulator: load a patrol route, say where the vehicle is.

A route is a polyline of :class:`RoutePoint` read from GPX (via gpxpy) or CSV.
Each point may carry, besides latitude/longitude/elevation:

- ``name``: a landmark (a roundabout, the prefecture);
- ``stop_s``: seconds the vehicle waits there (traffic light, checkpoint);
- ``limit_kmh``: cruising speed from there on, until a point sets another
  (default 50 km/h);
- ``section``: a named stretch; consecutive points with the same section
  name delimit it (``underpass`` marks where a tunnel fault belongs);
- ``time``: a recorded timestamp (GPX tracks logged by a real device).

How the vehicle moves (``Route.at(t)``):

- If every point has a recorded time, the recording is the timeline: the
  vehicle moves along each leg at that leg's constant speed.
- Otherwise a kinematic plan: the polyline is cut into steps of at most
  ``STEP_M`` metres; each step gets a speed ceiling (the leg's limit, slowed
  for corners by the turn angle, zero at stops); a forward pass limits
  acceleration and a backward pass limits braking, giving the speed profile a
  car or motorcycle actually follows in town. Within a step the acceleration
  is constant, so speed and position vary smoothly.
- Track is the bearing of the current leg; at a standstill the last bearing is
  kept (the vehicle still points that way).
- A looping route (first and last points within ``LOOP_CLOSE_M``, or
  ``loop=True``) repeats for ever; otherwise the vehicle parks at the end.

Pure computation: no clock, no I/O besides reading the file in the loaders.

GPX extensions: the per-point fields above go in ``<extensions>`` children
named ``stop``, ``limit`` (km/h) and ``section`` in any namespace
(``xmlns:umps="https://umps.invalid/route/1"`` in the shipped route).

CSV: a header row naming the columns; ``lat`` and ``lon`` are required;
``ele``, ``name``, ``stop_s``, ``limit_kmh``, ``section`` and ``time``
(ISO 8601) are optional. Lines starting with ``#`` are comments.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

EARTH_RADIUS_M = 6_371_008.8
STEP_M = 2.0
DEFAULT_LIMIT_KMH = 50.0
ACCEL_MPS2 = 1.6  # town driving, not a launch
DECEL_MPS2 = 2.4
MIN_CORNER_MPS = 3.5
LOOP_CLOSE_M = 30.0
ROUTES_DIR = Path(__file__).parent / "routes"


class RouteError(ValueError):
    """A route file or point list that cannot be driven."""


@dataclass(frozen=True, slots=True)
class RoutePoint:
    lat: float
    lon: float
    ele: float | None = None
    name: str | None = None
    stop_s: float = 0.0
    limit_kmh: float | None = None
    section: str | None = None
    time: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class RouteState:
    """The vehicle at route time ``t`` (seconds since the route started)."""

    t: float
    lat: float
    lon: float
    alt: float
    speed: float  # m/s
    track: float  # degrees true
    distance: float  # metres along the lap
    lap: int
    section: str | None
    stopped: bool


@dataclass(frozen=True, slots=True)
class Section:
    """A named stretch of one lap, in route time and distance."""

    name: str
    t_start: float
    t_end: float
    d_start: float
    d_end: float


@dataclass(frozen=True, slots=True)
class _Piece:
    # One step of the timeline: move from s0 to s1 (or dwell when s0 == s1).
    t0: float
    t1: float
    s0: float
    s1: float
    v0: float
    v1: float
    lat0: float
    lon0: float
    lat1: float
    lon1: float
    ele0: float
    ele1: float
    bearing: float
    section: str | None


# ----------------------------------------------------------------- geometry


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from point 1 to point 2, degrees true."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0


def _turn(b1: float, b2: float) -> float:
    return abs((b2 - b1 + 180.0) % 360.0 - 180.0)


def _corner_speed(cruise: float, turn_deg: float) -> float:
    # Gentle bends are taken at cruise speed; a right-angle junction at
    # walking-plus speed; U-turns crawl.
    if turn_deg < 10.0:
        return cruise
    return max(MIN_CORNER_MPS, cruise * (1.0 - min(turn_deg, 150.0) / 120.0))


# -------------------------------------------------------------------- route


class Route:
    """A drivable route and its timeline."""

    def __init__(self, points: Sequence[RoutePoint], *, name: str = "", loop: bool | None = None):
        pts = list(points)
        _validate(pts)
        if loop is None:
            loop = len(pts) > 2 and distance_m(pts[0].lat, pts[0].lon, pts[-1].lat, pts[-1].lon) <= LOOP_CLOSE_M
        if loop and (pts[0].lat, pts[0].lon) != (pts[-1].lat, pts[-1].lon):
            first = pts[0]
            pts.append(RoutePoint(first.lat, first.lon, first.ele, section=first.section))
        self.name = name
        self.loop = bool(loop)
        self.points: tuple[RoutePoint, ...] = tuple(pts)
        if all(p.time is not None for p in pts):
            self._pieces = _recorded_timeline(pts)
        else:
            self._pieces = _planned_timeline(pts, self.loop)
        self._starts = [p.t0 for p in self._pieces]
        self.duration_s = self._pieces[-1].t1
        self.length_m = self._pieces[-1].s1
        self.sections = _sections(self._pieces)

    def __repr__(self) -> str:
        return (
            f"Route({self.name!r}, {len(self.points)} points, {self.length_m:.0f} m, "
            f"{self.duration_s:.0f} s{', loop' if self.loop else ''})"
        )

    def section_times(self, name: str) -> list[tuple[float, float]]:
        """(start, end) route times of every stretch called ``name`` in one lap."""
        return [(s.t_start, s.t_end) for s in self.sections if s.name == name]

    def at(self, t: float) -> RouteState:
        """Where the vehicle is ``t`` seconds after the route started."""
        if t < 0:
            t = 0.0
        lap = 0
        if self.loop and self.duration_s > 0:
            lap = int(t // self.duration_s)
            t_lap = t - lap * self.duration_s
        else:
            t_lap = min(t, self.duration_s)
        i = max(0, bisect.bisect_right(self._starts, t_lap) - 1)
        p = self._pieces[i]
        tau = min(max(t_lap - p.t0, 0.0), p.t1 - p.t0)
        ds = p.s1 - p.s0
        if ds <= 0 or p.t1 <= p.t0:
            frac, speed = 0.0, 0.0
        else:
            dur = p.t1 - p.t0
            accel = (p.v1 - p.v0) / dur
            travelled = p.v0 * tau + 0.5 * accel * tau * tau
            frac = min(max(travelled / ds, 0.0), 1.0)
            speed = max(p.v0 + accel * tau, 0.0)
        if not self.loop and t >= self.duration_s:
            frac, speed = 1.0, 0.0
        lat = p.lat0 + (p.lat1 - p.lat0) * frac
        lon = p.lon0 + (p.lon1 - p.lon0) * frac
        ele = p.ele0 + (p.ele1 - p.ele0) * frac
        return RouteState(
            t=t,
            lat=lat,
            lon=lon,
            alt=ele,
            speed=speed,
            track=p.bearing,
            distance=p.s0 + ds * frac,
            lap=lap,
            section=p.section,
            stopped=speed < 0.05,
        )


def _validate(pts: list[RoutePoint]) -> None:
    if len(pts) < 2:
        raise RouteError(f"a route needs at least 2 points, got {len(pts)}")
    for i, p in enumerate(pts):
        if not (-90.0 <= p.lat <= 90.0) or not (-180.0 <= p.lon <= 180.0):
            raise RouteError(f"point {i}: latitude/longitude out of range ({p.lat}, {p.lon})")
        if not math.isfinite(p.stop_s) or p.stop_s < 0:
            raise RouteError(f"point {i}: stop_s must be >= 0, got {p.stop_s}")
        if p.limit_kmh is not None and not (0 < p.limit_kmh <= 250):
            raise RouteError(f"point {i}: limit_kmh must be in (0, 250], got {p.limit_kmh}")
    times = [p.time for p in pts if p.time is not None]
    if times and len(times) == len(pts):
        for i in range(1, len(pts)):
            if pts[i].time < pts[i - 1].time:  # type: ignore[operator]
                raise RouteError(f"point {i}: recorded time goes backwards")


def _elev(p: RoutePoint) -> float:
    return 0.0 if p.ele is None else p.ele


def _speed_profile(limits: list[float], s: list[float]) -> list[float]:
    """Speeds at each node under the ceilings, with bounded accel and braking."""
    v = list(limits)
    for i in range(1, len(v)):  # forward: acceleration
        v[i] = min(v[i], math.sqrt(v[i - 1] ** 2 + 2 * ACCEL_MPS2 * (s[i] - s[i - 1])))
    for i in range(len(v) - 2, -1, -1):  # backward: braking
        v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2 * DECEL_MPS2 * (s[i + 1] - s[i])))
    return v


def _planned_timeline(pts: list[RoutePoint], loop: bool) -> list[_Piece]:
    # Resample the polyline into short steps; remember which route vertex
    # each step ends on, to apply stops and corner limits there.
    nodes: list[tuple[float, float, float, float, str | None]] = []  # lat, lon, ele, s, section
    limits: list[float] = []  # speed ceiling at each node
    dwell: list[float] = []
    bearings: list[float] = []  # bearing of the step that ends at node i (node 0: first leg)
    legs = []
    for a, b in zip(pts, pts[1:]):
        legs.append((a, b, distance_m(a.lat, a.lon, b.lat, b.lon), bearing_deg(a.lat, a.lon, b.lat, b.lon)))
    first = pts[0]
    nodes.append((first.lat, first.lon, _elev(first), 0.0, first.section))
    limits.append(0.0)  # the patrol starts from rest
    dwell.append(first.stop_s)
    bearings.append(legs[0][3])
    # A limit holds from its point until the next point that sets one.
    cruise_at: list[float] = []
    current = DEFAULT_LIMIT_KMH
    for p in pts:
        current = p.limit_kmh or current
        cruise_at.append(current / 3.6)
    s = 0.0
    for k, (a, b, length, brg) in enumerate(legs):
        cruise = cruise_at[k]
        section = a.section if a.section is not None and a.section == b.section else None
        n = max(1, math.ceil(length / STEP_M))
        for j in range(1, n + 1):
            f = j / n
            lat = a.lat + (b.lat - a.lat) * f
            lon = a.lon + (b.lon - a.lon) * f
            ele = _elev(a) + (_elev(b) - _elev(a)) * f
            s_node = s + length * f
            limit = cruise
            stop = 0.0
            if j == n:  # arriving at vertex b
                if b.stop_s > 0 or k == len(legs) - 1:  # a stop, or the end of the lap
                    limit = 0.0
                    stop = b.stop_s
                elif k + 1 < len(legs):
                    limit = _corner_speed(min(cruise, cruise_at[k + 1]), _turn(brg, legs[k + 1][3]))
            nodes.append((lat, lon, ele, s_node, section))
            limits.append(limit)
            dwell.append(stop)
            bearings.append(brg)
        s += length
    if loop and first.stop_s <= 0:
        # The lap's seam is just another corner: keep rolling through it so
        # lap after lap joins without a phantom stop.
        seam = _corner_speed(min(cruise_at[0], cruise_at[-2]), _turn(legs[-1][3], legs[0][3]))
        limits[0] = limits[-1] = seam
        dwell[-1] = 0.0
    v = _speed_profile(limits, [n[3] for n in nodes])
    if loop and v[0] != v[-1]:
        limits[0] = limits[-1] = min(v[0], v[-1])
        v = _speed_profile(limits, [n[3] for n in nodes])
    pieces: list[_Piece] = []
    t = 0.0

    def dwell_piece(i: int, seconds: float) -> None:
        nonlocal t
        lat, lon, ele, s_i, _sec = nodes[i]
        # A stop belongs to the section it lies inside (both legs share it).
        sec = nodes[i][4] if i + 1 >= len(nodes) else (nodes[i + 1][4] if nodes[i][4] == nodes[i + 1][4] else None)
        pieces.append(_Piece(t, t + seconds, s_i, s_i, 0.0, 0.0, lat, lon, lat, lon, ele, ele, bearings[i], sec))
        t += seconds

    if dwell[0] > 0:
        dwell_piece(0, dwell[0])
    for i in range(1, len(nodes)):
        lat0, lon0, ele0, s0, _ = nodes[i - 1]
        lat1, lon1, ele1, s1, section = nodes[i]
        ds = s1 - s0
        if ds > 0:
            dt_step = 2 * ds / max(v[i - 1] + v[i], 1e-6)
            pieces.append(_Piece(t, t + dt_step, s0, s1, v[i - 1], v[i], lat0, lon0, lat1, lon1, ele0, ele1, bearings[i], section))
            t += dt_step
        if dwell[i] > 0:
            dwell_piece(i, dwell[i])
    if not pieces:
        raise RouteError("route has zero length and no stops")
    return pieces


def _recorded_timeline(pts: list[RoutePoint]) -> list[_Piece]:
    t_start = pts[0].time
    assert t_start is not None
    pieces: list[_Piece] = []
    s = 0.0
    last_bearing = 0.0
    for a, b in zip(pts, pts[1:]):
        assert a.time is not None and b.time is not None
        t0 = (a.time - t_start).total_seconds()
        t1 = (b.time - t_start).total_seconds()
        length = distance_m(a.lat, a.lon, b.lat, b.lon)
        if length > 0.5:
            last_bearing = bearing_deg(a.lat, a.lon, b.lat, b.lon)
        speed = length / (t1 - t0) if t1 > t0 else 0.0
        section = a.section if a.section is not None and a.section == b.section else None
        pieces.append(_Piece(t0, t1, s, s + length, speed, speed, a.lat, a.lon, b.lat, b.lon, _elev(a), _elev(b), last_bearing, section))
        s += length
    return pieces


def _sections(pieces: list[_Piece]) -> tuple[Section, ...]:
    out: list[Section] = []
    current: _Piece | None = None
    last: _Piece | None = None
    for p in pieces:
        if p.section is not None and current is not None and current.section == p.section:
            last = p
            continue
        if current is not None and last is not None:
            out.append(Section(current.section or "", current.t0, last.t1, current.s0, last.s1))
        current, last = (p, p) if p.section is not None else (None, None)
    if current is not None and last is not None:
        out.append(Section(current.section or "", current.t0, last.t1, current.s0, last.s1))
    return tuple(out)


# ------------------------------------------------------------------ loaders


def load_route(path: str | Path, *, loop: bool | None = None) -> Route:
    """Read a ``.gpx`` or ``.csv`` route file."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RouteError(f"cannot read route {path}: {exc}") from exc
    if suffix == ".gpx":
        name, points = parse_gpx(text)
    elif suffix == ".csv":
        name, points = path.stem, parse_csv(text)
    else:
        raise RouteError(f"route {path}: unknown format {suffix!r} (use .gpx or .csv)")
    return Route(points, name=name or path.stem, loop=loop)


def default_route() -> Route:
    """The shipped patrol loop through Kénitra."""
    return load_route(ROUTES_DIR / "kenitra.gpx")


def parse_gpx(text: str) -> tuple[str, list[RoutePoint]]:
    """(name, points) of the first track (all segments) or else first route."""
    import gpxpy  # the rig's optional dependency; only needed for GPX files
    import gpxpy.gpx

    try:
        gpx = gpxpy.parse(text)
    except (gpxpy.gpx.GPXException, ValueError) as exc:
        raise RouteError(f"invalid GPX: {exc}") from exc
    raw: list = []
    name = ""
    if gpx.tracks:
        name = gpx.tracks[0].name or ""
        for segment in gpx.tracks[0].segments:
            raw.extend(segment.points)
    elif gpx.routes:
        name = gpx.routes[0].name or ""
        raw.extend(gpx.routes[0].points)
    if not raw:
        raise RouteError("GPX holds no track or route points")
    points = []
    for i, p in enumerate(raw):
        ext = _gpx_extensions(getattr(p, "extensions", None) or [])
        try:
            points.append(
                RoutePoint(
                    lat=float(p.latitude),
                    lon=float(p.longitude),
                    ele=None if p.elevation is None else float(p.elevation),
                    name=p.name,
                    stop_s=float(ext.get("stop", 0.0) or 0.0),
                    limit_kmh=float(ext["limit"]) if ext.get("limit") else None,
                    section=ext.get("section") or None,
                    time=_aware(getattr(p, "time", None)),
                )
            )
        except ValueError as exc:
            raise RouteError(f"GPX point {i}: {exc}") from exc
    return name, points


def _gpx_extensions(elements: Iterable) -> dict[str, str]:
    out = {}
    for el in elements:
        tag = el.tag.rsplit("}", 1)[-1]
        out[tag] = (el.text or "").strip()
    return out


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def parse_csv(text: str) -> list[RoutePoint]:
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if reader.fieldnames is None or not {"lat", "lon"} <= {f.strip() for f in reader.fieldnames}:
        raise RouteError("CSV route needs a header row with at least 'lat' and 'lon'")
    points = []
    for row_no, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        try:
            points.append(
                RoutePoint(
                    lat=float(row["lat"]),
                    lon=float(row["lon"]),
                    ele=float(row["ele"]) if row.get("ele") else None,
                    name=row.get("name") or None,
                    stop_s=float(row["stop_s"]) if row.get("stop_s") else 0.0,
                    limit_kmh=float(row["limit_kmh"]) if row.get("limit_kmh") else None,
                    section=row.get("section") or None,
                    time=_aware(dt.datetime.fromisoformat(row["time"].replace("Z", "+00:00"))) if row.get("time") else None,
                )
            )
        except (KeyError, ValueError) as exc:
            raise RouteError(f"CSV route, data row {row_no - 1}: {exc}") from exc
    return points
