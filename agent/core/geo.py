"""Where is the incident from here: distance, bearing, compass point, wording.

The crew needs "how far, which way" at a glance, not survey precision, so the
Earth is taken as a sphere of mean radius R = 6 371 008.8 m (IUGG R1) and the
distance is the haversine great-circle distance. Against the WGS84 ellipsoid
(Vincenty's formula, checked in the tests) this is off by at most about 0.6 %
(short north-south hops near the equator are the worst); around Kénitra
(34° N) by at most 0.25 %: about 1 m on the last 500 m that matter on
arrival, 13 m on the 36 km from Kénitra to Rabat. The haversine form (rather
than the spherical law of cosines) keeps full precision for short distances,
and it is clamped so rounding can never take ``asin`` out of its domain for
antipodal points.

Bearings are initial great-circle bearings in degrees true, clockwise from
north, in [0, 360). Two conventions worth knowing:

- from a pole every direction is south (or north); the formula then returns the
  bearing measured against the meridian of the starting longitude, which is
  what a receiver sitting there would report as its longitude;
- between two identical points the bearing is undefined; 0.0 is returned and
  callers should look at the distance first (see ``agent.core.panel_view``).

Relative bearing = bearing to the target minus the vehicle's track, folded into
(-180, 180]: 0 straight ahead, +90 to the right, -90 to the left, 180 behind.

Human distances follow what the crews read. French: "850 m", "2,4 km", "37 km"
(decimal comma, narrow no-break space before the unit and between thousands,
as CLDR's fr locale does). Arabic: "850 م", "2,4 كلم", with Western digits
(the note above ``_NUMBER_SYMBOLS`` says why).
"""

from __future__ import annotations

import math
from typing import Literal

from agent.core.i18n import translate

EARTH_RADIUS_M = 6_371_008.8

# Compass roses as conventional English abbreviations; the UI translates them
# through the catalog keys ``compass.<code>`` (French uses O for ouest, Arabic
# words), so the codes here are identifiers, not display text.
COMPASS_8 = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
COMPASS_16 = (
    "N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE",
    "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW",
)

NNBSP = "\u202f"  # narrow no-break space: French thousands separator and before units


def _check_point(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ValueError(f"coordinates must be finite numbers, got ({lat!r}, {lon!r})")
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"latitude must be within [-90, 90], got {lat!r}")
    # Any finite longitude is accepted: trigonometry wraps it, so 181 is -179.


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points (haversine)."""
    _check_point(lat1, lon1)
    _check_point(lat2, lon2)
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    # Rounding can push h a hair above 1 for antipodal points.
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, max(0.0, h))))


def initial_bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from point 1 to point 2, degrees true in [0, 360)."""
    _check_point(lat1, lon1)
    _check_point(lat2, lon2)
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dlmb = math.radians(lon2 - lon1)
    y = math.sin(dlmb) * math.cos(phi2)
    x = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(dlmb)
    if abs(x) < 1e-15 and abs(y) < 1e-15:
        return 0.0  # same point (or antipodes): no defined direction
    return normalize_deg(math.degrees(math.atan2(y, x)))


def normalize_deg(angle: float) -> float:
    """Fold any angle into [0, 360)."""
    folded = math.fmod(angle, 360.0)
    if folded < 0:
        folded += 360.0
    # fmod of a tiny negative number plus 360 can round to exactly 360.0.
    return 0.0 if folded >= 360.0 else folded


def relative_bearing_deg(bearing: float, track: float) -> float:
    """Where the target is from the vehicle's nose: (-180, 180], + is to the right."""
    if not (math.isfinite(bearing) and math.isfinite(track)):
        raise ValueError(f"bearing and track must be finite, got {bearing!r}, {track!r}")
    rel = normalize_deg(bearing - track)
    return rel - 360.0 if rel > 180.0 else rel


def compass_point(bearing: float, points: int = 8) -> str:
    """The compass point code (``N``, ``NE``... or ``NNE``... with 16) nearest a bearing."""
    if points == 8:
        rose = COMPASS_8
    elif points == 16:
        rose = COMPASS_16
    else:
        raise ValueError(f"points must be 8 or 16, got {points!r}")
    if not math.isfinite(bearing):
        raise ValueError(f"bearing must be finite, got {bearing!r}")
    sector = 360.0 / len(rose)
    # Each point owns the sector centred on it: N is [-22.5, 22.5) with 8 points.
    return rose[int(normalize_deg(bearing + sector / 2) // sector) % len(rose)]


# Number symbols per UI language. Arabic: Moroccan crews read Western digits
# 0-9 (they are the digits of Moroccan schooling, road signs, plates, the press
# and of the DGSN's own documents; the Eastern Arabic-Indic digits ٠١٢ are the
# Mashriq's habit), and CLDR's ar-MA locale says the same: Latin digits with a
# decimal comma and a dot between thousands. So "2,4 كلم", not "٢٫٤ كم".
# "كلم" is the abbreviation of كيلومتر used across the Maghreb (road signs, the
# press); "كم" also reads as the question word "how much". Metres: "م".
_NUMBER_SYMBOLS = {
    "fr": {"decimal": ",", "group": NNBSP},
    "ar": {"decimal": ",", "group": "."},
}


def format_number(value: float, decimals: int, lang: str) -> str:
    """A rounded number with the language's decimal and group separators."""
    symbols = _NUMBER_SYMBOLS.get(lang, _NUMBER_SYMBOLS["fr"])
    text = f"{value:,.{decimals}f}"  # "1,234.5": swap in the locale's symbols
    return text.replace(",", "\0").replace(".", symbols["decimal"]).replace("\0", symbols["group"])


def round_distance(metres: float) -> tuple[float, Literal["m", "km"], int]:
    """(value, unit, decimals) of a distance rounded the way a crew reads it.

    Below 1 km: whole metres rounded to 10 m (to 1 m under 10 m), because GNSS
    is not better than that. From 1 km: one decimal up to 10 km, then whole
    kilometres. The switch-overs are decided on the rounded value, so 999.7 m
    reads "1,0 km" and 9.96 km reads "10 km", never "1000 m" or "10,0 km".
    """
    if not math.isfinite(metres) or metres < 0:
        raise ValueError(f"distance must be a finite, non-negative number of metres, got {metres!r}")
    rounded_m = round(metres) if metres < 10 else round(metres / 10) * 10
    if rounded_m < 1000:
        return float(rounded_m), "m", 0
    km = metres / 1000
    if round(km, 1) < 10:
        return round(km, 1), "km", 1
    return float(round(km)), "km", 0


def format_distance(metres: float, lang: str = "fr") -> str:
    """A distance as a crew reads it: "850 m", "2,4 km", "37 km"; "850 م", "2,4 كلم"."""
    value, unit, decimals = round_distance(metres)
    return translate(lang, f"unit.{unit}", value=format_number(value, decimals, lang))
