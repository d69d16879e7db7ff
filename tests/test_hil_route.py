"""Routes: loading GPX/CSV, the shipped Kénitra loop, and how the vehicle moves."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest

from hil.route import (
    ACCEL_MPS2,
    DECEL_MPS2,
    Route,
    RouteError,
    RoutePoint,
    default_route,
    distance_m,
    load_route,
)


@pytest.fixture(scope="module")
def kenitra() -> Route:
    return default_route()


def _samples(route: Route, step: float = 0.5, laps: float = 1.0):
    n = int(route.duration_s * laps / step)
    return [route.at(i * step) for i in range(n + 1)]


def test_default_route_is_a_loop_through_kenitra(kenitra: Route) -> None:
    assert kenitra.loop
    assert len(kenitra.points) >= 30
    for p in kenitra.points:
        assert 34.25 <= p.lat <= 34.27 and -6.60 <= p.lon <= -6.56
    assert 3_000 <= kenitra.length_m <= 10_000
    names = " ".join(p.name or "" for p in kenitra.points)
    assert "Mohammed V" in names and "Mohammed Diouri" in names and "Sebou" in names
    assert any(p.stop_s > 0 for p in kenitra.points)


def test_default_route_has_an_underpass_to_schedule_a_tunnel(kenitra: Route) -> None:
    (start, end), = kenitra.section_times("underpass")
    section = kenitra.sections[0]
    assert 100 <= section.d_end - section.d_start <= 400
    assert 5 <= end - start <= 60
    assert kenitra.at((start + end) / 2).section == "underpass"
    assert kenitra.at(start - 5).section is None


def test_motion_is_physically_plausible(kenitra: Route) -> None:
    step = 0.5
    samples = _samples(kenitra, step)
    for a, b in zip(samples, samples[1:]):
        moved = distance_m(a.lat, a.lon, b.lat, b.lon)
        assert moved <= max(a.speed, b.speed) * step + 0.5  # no teleporting
        assert (b.speed - a.speed) / step <= ACCEL_MPS2 + 1e-6
        assert (a.speed - b.speed) / step <= DECEL_MPS2 + 1e-6
        assert b.distance >= a.distance - 1e-6 or b.lap > a.lap
    assert max(s.speed for s in samples) <= 50 / 3.6 + 1e-6
    assert max(s.speed for s in samples) > 40 / 3.6  # it does get going


def test_stops_hold_the_vehicle(kenitra: Route) -> None:
    checkpoint = next(p for p in kenitra.points if p.name and "contrôle" in p.name)
    stopped_there = [
        s for s in _samples(kenitra, 1.0)
        if s.stopped and distance_m(s.lat, s.lon, checkpoint.lat, checkpoint.lon) < 1.0
    ]
    assert checkpoint.stop_s - 2 <= len(stopped_there) <= checkpoint.stop_s + 2


def test_a_loop_repeats_lap_after_lap(kenitra: Route) -> None:
    for t in (0.0, 17.3, 200.0, 433.7):
        a, b = kenitra.at(t), kenitra.at(t + kenitra.duration_s)
        assert math.isclose(a.lat, b.lat, abs_tol=1e-9) and math.isclose(a.lon, b.lon, abs_tol=1e-9)
        assert b.lap == a.lap + 1
    seam_before, seam_after = kenitra.at(kenitra.duration_s - 0.25), kenitra.at(kenitra.duration_s + 0.25)
    assert distance_m(seam_before.lat, seam_before.lon, seam_after.lat, seam_after.lon) < 10
    assert abs(seam_before.speed - seam_after.speed) < 1.0


def test_an_open_route_parks_at_its_end() -> None:
    route = Route([RoutePoint(34.25, -6.58), RoutePoint(34.251, -6.58)], loop=False)
    end = route.at(route.duration_s + 100)
    assert end.speed == 0.0 and math.isclose(end.lat, 34.251)
    assert 100 < route.length_m < 120
    # Starts from rest, accelerates, brakes to a stop at the end.
    assert route.at(0).speed == 0.0 and route.at(route.duration_s / 2).speed > 5


def test_recorded_gpx_times_set_the_speed(tmp_path: Path) -> None:
    gpx = tmp_path / "recorded.gpx"
    gpx.write_text(
        """<?xml version="1.0"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>
<trkpt lat="34.2500" lon="-6.5800"><time>2024-03-01T10:00:00Z</time></trkpt>
<trkpt lat="34.2509" lon="-6.5800"><time>2024-03-01T10:00:10Z</time></trkpt>
<trkpt lat="34.2509" lon="-6.5800"><time>2024-03-01T10:00:40Z</time></trkpt>
</trkseg></trk></gpx>"""
    )
    route = load_route(gpx)
    assert not route.loop
    assert route.duration_s == 40
    assert math.isclose(route.at(5).speed, 100.1 / 10, rel_tol=0.01)
    assert route.at(20).speed == 0.0 and math.isclose(route.at(20).track, 0.0, abs_tol=0.01)


def test_csv_route_with_stops_limits_and_sections(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "# test route\n"
        "lat,lon,ele,name,stop_s,limit_kmh,section\n"
        "34.2500,-6.5800,10,start,,30,\n"
        "34.2510,-6.5800,10,light,20,,tunnel\n"
        "34.2520,-6.5800,10,,,,tunnel\n"
        "34.2530,-6.5800,10,end,,,\n"
    )
    route = load_route(path)
    assert route.name == "r" and len(route.points) == 4
    assert max(s.speed for s in _samples(route)) <= 30 / 3.6 + 1e-6
    assert [s.name for s in route.sections] == ["tunnel"]
    waited = [s for s in _samples(route, 1.0) if s.stopped and abs(s.lat - 34.2510) < 1e-6]
    assert 18 <= len(waited) <= 22


@pytest.mark.parametrize(
    "body, message",
    [
        ("lon\n-6.58\n", "lat"),
        ("lat,lon\n34.25,-6.58\n", "at least 2 points"),
        ("lat,lon\n34.25,-6.58\n95,-6.58\n", "out of range"),
        ("lat,lon,stop_s\n34.25,-6.58,-1\n34.26,-6.58,\n", "stop_s"),
        ("lat,lon\n34.25,-6.58\nabc,-6.58\n", "row 2"),
    ],
)
def test_bad_csv_routes_get_clear_errors(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(RouteError, match=message):
        load_route(path)


def test_unreadable_or_unknown_route_files(tmp_path: Path) -> None:
    with pytest.raises(RouteError, match="cannot read"):
        load_route(tmp_path / "missing.gpx")
    other = tmp_path / "route.kml"
    other.write_text("<kml/>")
    with pytest.raises(RouteError, match="unknown format"):
        load_route(other)
    broken = tmp_path / "broken.gpx"
    broken.write_text("<gpx><trk>")
    with pytest.raises(RouteError, match="GPX"):
        load_route(broken)


def test_recorded_times_must_not_go_backwards() -> None:
    t = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(RouteError, match="backwards"):
        Route([RoutePoint(34.25, -6.58, time=t), RoutePoint(34.26, -6.58, time=t - dt.timedelta(seconds=1))])
