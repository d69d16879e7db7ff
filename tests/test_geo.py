"""Distance, bearing, compass point and distance wording (agent.core.geo)."""

import math

import pytest
from hypothesis import given, settings, strategies as st

from agent.core.geo import (
    EARTH_RADIUS_M, compass_point, distance_m, format_distance, initial_bearing_deg, normalize_deg,
    relative_bearing_deg,
)

KENITRA = (34.2610, -6.5802)  # city centre, Avenue Mohammed V
RABAT = (34.0209, -6.8416)  # city centre, Bab el Had
CASABLANCA = (33.5731, -7.5898)
DEG_M = math.pi * EARTH_RADIUS_M / 180  # one degree of great circle, ~111.2 km


def vincenty_m(lat1, lon1, lat2, lon2):
    """WGS84 ellipsoidal distance (Vincenty's inverse formula): the reference the sphere is judged by."""
    a, f = 6378137.0, 1 / 298.257223563
    b = (1 - f) * a
    L = math.radians(lon2 - lon1)
    U1, U2 = math.atan((1 - f) * math.tan(math.radians(lat1))), math.atan((1 - f) * math.tan(math.radians(lat2)))
    sinU1, cosU1, sinU2, cosU2 = math.sin(U1), math.cos(U1), math.sin(U2), math.cos(U2)
    lam = L
    for _ in range(200):
        sin_lam, cos_lam = math.sin(lam), math.cos(lam)
        sin_sigma = math.hypot(cosU2 * sin_lam, cosU1 * sinU2 - sinU1 * cosU2 * cos_lam)
        if sin_sigma == 0:
            return 0.0
        cos_sigma = sinU1 * sinU2 + cosU1 * cosU2 * cos_lam
        sigma = math.atan2(sin_sigma, cos_sigma)
        sin_alpha = cosU1 * cosU2 * sin_lam / sin_sigma
        cos2_alpha = 1 - sin_alpha**2
        cos_2sm = cos_sigma - 2 * sinU1 * sinU2 / cos2_alpha if cos2_alpha else 0.0
        C = f / 16 * cos2_alpha * (4 + f * (4 - 3 * cos2_alpha))
        previous = lam
        lam = L + (1 - C) * f * sin_alpha * (sigma + C * sin_sigma * (cos_2sm + C * cos_sigma * (-1 + 2 * cos_2sm**2)))
        if abs(lam - previous) < 1e-12:
            break
    u2 = cos2_alpha * (a * a - b * b) / (b * b)
    A = 1 + u2 / 16384 * (4096 + u2 * (-768 + u2 * (320 - 175 * u2)))
    B = u2 / 1024 * (256 + u2 * (-128 + u2 * (74 - 47 * u2)))
    d_sigma = B * sin_sigma * (cos_2sm + B / 4 * (cos_sigma * (-1 + 2 * cos_2sm**2)
                                                - B / 6 * cos_2sm * (-3 + 4 * sin_sigma**2) * (-3 + 4 * cos_2sm**2)))
    return b * A * (sigma - d_sigma)


# ------------------------------------------------------------------ distance


def test_kenitra_rabat():
    d = distance_m(*KENITRA, *RABAT)
    assert 35_000 < d < 37_500  # centre to centre; ~40 km by the road
    assert d == pytest.approx(distance_m(*RABAT, *KENITRA), abs=1e-6)


def test_published_spherical_example():
    # Land's End to John o' Groats: 968.9 km, initial bearing 009°07′11″ on a sphere of radius 6371 km.
    lands_end = (50 + 3 / 60 + 59 / 3600, -(5 + 42 / 60 + 53 / 3600))
    john_o_groats = (58 + 38 / 60 + 38 / 3600, -(3 + 4 / 60 + 12 / 3600))
    assert distance_m(*lands_end, *john_o_groats) == pytest.approx(968_900, abs=150)
    assert initial_bearing_deg(*lands_end, *john_o_groats) == pytest.approx(9 + 7 / 60 + 11 / 3600, abs=0.01)


@pytest.mark.parametrize("a, b, tolerance", [
    (KENITRA, RABAT, 0.003),
    (KENITRA, CASABLANCA, 0.003),
    (KENITRA, (34.2655, -6.5802), 0.003),  # 500 m due north
    (KENITRA, (34.2610, -6.5748), 0.003),  # 500 m due east
    ((0.0, 10.0), (0.0, 40.0), 0.006),  # along the equator
    ((80.0, 0.0), (89.0, 0.0), 0.006),  # along a meridian near the pole
    ((-1.0, 0.0), (1.0, 0.0), 0.006),  # north-south across the equator: the worst case
])
def test_sphere_against_the_wgs84_ellipsoid(a, b, tolerance):
    """The documented accuracy: within 0.3 % around Morocco, 0.6 % anywhere."""
    reference = vincenty_m(*a, *b)
    assert abs(distance_m(*a, *b) - reference) / reference < tolerance


def test_across_the_antimeridian():
    assert distance_m(0.0, 179.5, 0.0, -179.5) == pytest.approx(DEG_M, rel=1e-9)
    assert initial_bearing_deg(0.0, 179.5, 0.0, -179.5) == pytest.approx(90.0)
    assert initial_bearing_deg(0.0, -179.5, 0.0, 179.5) == pytest.approx(270.0)
    assert distance_m(10.0, 540.0, 10.0, 180.0) == pytest.approx(0.0, abs=1e-6)  # longitudes wrap


def test_poles_and_antipodes():
    assert distance_m(90.0, 0.0, 34.0, -6.5) == pytest.approx((90 - 34) * DEG_M, rel=1e-9)
    assert distance_m(90.0, 0.0, -90.0, 123.0) == pytest.approx(math.pi * EARTH_RADIUS_M)
    assert distance_m(*KENITRA, -KENITRA[0], KENITRA[1] + 180) == pytest.approx(math.pi * EARTH_RADIUS_M)
    assert initial_bearing_deg(34.0, -6.5, 90.0, 0.0) == pytest.approx(0.0)  # to the North Pole: north
    assert initial_bearing_deg(34.0, -6.5, -90.0, 0.0) == pytest.approx(180.0)
    # From the North Pole everything is south; along the starting meridian it reads 180.
    assert initial_bearing_deg(90.0, 0.0, 34.0, 0.0) == pytest.approx(180.0)


def test_same_point():
    assert distance_m(*KENITRA, *KENITRA) == 0.0
    assert initial_bearing_deg(*KENITRA, *KENITRA) == 0.0


@pytest.mark.parametrize("lat, lon", [(91.0, 0.0), (-90.5, 0.0), (math.nan, 0.0), (0.0, math.inf)])
def test_bad_coordinates_are_refused(lat, lon):
    with pytest.raises(ValueError):
        distance_m(lat, lon, 0.0, 0.0)
    with pytest.raises(ValueError):
        initial_bearing_deg(0.0, 0.0, lat, lon)


# ------------------------------------------------------------------- bearing


@pytest.mark.parametrize("dlat, dlon, expected", [
    (0.01, 0.0, 0.0),
    (0.01, 0.01 / math.cos(math.radians(34.261)), 45.0),
    (0.0, 0.01, 90.0),
    (-0.01, 0.01 / math.cos(math.radians(34.261)), 135.0),
    (-0.01, 0.0, 180.0),
    (-0.01, -0.01 / math.cos(math.radians(34.261)), 225.0),
    (0.0, -0.01, 270.0),
    (0.01, -0.01 / math.cos(math.radians(34.261)), 315.0),
])
def test_bearing_in_each_quadrant(dlat, dlon, expected):
    lat, lon = KENITRA
    assert initial_bearing_deg(lat, lon, lat + dlat, lon + dlon) == pytest.approx(expected, abs=0.3)


def test_kenitra_to_rabat_is_south_west():
    bearing = initial_bearing_deg(*KENITRA, *RABAT)
    assert 215 < bearing < 230
    assert compass_point(bearing) == "SW"


@pytest.mark.parametrize("bearing, track, expected", [
    (10, 350, 20), (350, 10, -20), (90, 0, 90), (0, 90, -90), (180, 0, 180), (0, 180, 180),
    (45, 45, 0), (725, -10, 15),
])
def test_relative_bearing(bearing, track, expected):
    assert relative_bearing_deg(bearing, track) == pytest.approx(expected)


def test_normalize_never_returns_360():
    assert normalize_deg(-1e-15) == 0.0 or normalize_deg(-1e-15) < 360.0
    assert normalize_deg(-1e-15) != 360.0
    assert normalize_deg(720.0) == 0.0 and normalize_deg(-90.0) == 270.0


@pytest.mark.parametrize("bearing, points, expected", [
    (0, 8, "N"), (22.4, 8, "N"), (22.5, 8, "NE"), (90, 8, "E"), (200, 8, "S"), (337.4, 8, "NW"),
    (337.5, 8, "N"), (359.9, 8, "N"), (-45, 8, "NW"), (11.25, 16, "NNE"), (11.2, 16, "N"), (247.5, 16, "WSW"),
])
def test_compass_point(bearing, points, expected):
    assert compass_point(bearing, points) == expected


def test_compass_point_refuses_other_roses():
    with pytest.raises(ValueError):
        compass_point(10, 4)
    with pytest.raises(ValueError):
        compass_point(math.nan)


# ------------------------------------------------------------------ wording

NNBSP = "\u202f"


@pytest.mark.parametrize("metres, fr, ar", [
    (0, f"0{NNBSP}m", "0 م"),
    (5.4, f"5{NNBSP}m", "5 م"),
    (847, f"850{NNBSP}m", "850 م"),
    (999.7, f"1,0{NNBSP}km", "1,0 كلم"),  # decided on the rounded value: never "1000 m"
    (2_400, f"2,4{NNBSP}km", "2,4 كلم"),
    (9_960, f"10{NNBSP}km", "10 كلم"),  # never "10,0 km"
    (37_000, f"37{NNBSP}km", "37 كلم"),
    (1_234_567, f"1{NNBSP}235{NNBSP}km", "1.235 كلم"),
])
def test_format_distance(metres, fr, ar):
    assert format_distance(metres, "fr") == fr
    assert format_distance(metres, "ar") == ar


def test_format_distance_uses_western_digits_in_arabic():
    text = format_distance(2_400, "ar")
    assert not any("\u0660" <= ch <= "\u0669" for ch in text)  # no Arabic-Indic digits


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_format_distance_refuses_nonsense(bad):
    with pytest.raises(ValueError):
        format_distance(bad, "fr")


points = st.tuples(st.floats(-90, 90), st.floats(-180, 180))


@settings(max_examples=200, deadline=None)
@given(points, points, points)
def test_metric_properties(a, b, c):
    ab, ba = distance_m(*a, *b), distance_m(*b, *a)
    assert ab == pytest.approx(ba, abs=1e-6)
    assert 0.0 <= ab <= math.pi * EARTH_RADIUS_M + 1e-6
    assert ab <= distance_m(*a, *c) + distance_m(*c, *b) + 1e-3  # triangle inequality
    assert 0.0 <= initial_bearing_deg(*a, *b) < 360.0
