"""Build NMEA 0183 sentences from one navigation epoch: pure formatting.

A GNSS receiver reports each epoch as a burst of sentences. This module turns
a :class:`NavEpoch` (time, position, speed, track, the satellites in view and
the dilutions of precision) into those sentences, the way a u-blox class
receiver writes them:

- ``RMC`` recommended minimum (status ``A`` valid / ``V`` void, mode indicator);
- ``VTG`` course and speed over ground;
- ``GGA`` fix quality, satellites used, HDOP, altitude and geoid separation;
- ``GSA`` DOPs and the satellites used (one per constellation with ``GN``);
- ``GSV`` satellites in view, four per sentence, under each constellation's own
  talker (``GP`` GPS, ``GL`` GLONASS, ``GA`` Galileo, ``GB`` BeiDou);
- ``ZDA`` date and time.

Two dialects, chosen by the talker of the navigation sentences:

- ``GP``: a GPS-only receiver in the NMEA 3.0 style (no GSA system id, no RMC
  navigational status); only GPS satellites are reported.
- ``GN``: a multi-constellation receiver in the NMEA 4.10 style: navigation
  sentences under ``GN``, one GSA per constellation ending with the system id
  (1 GPS, 2 GLONASS, 3 Galileo, 4 BeiDou), RMC ending with the navigational
  status field.

Without a fix the receiver keeps talking: RMC status ``V`` with an empty
position, GGA quality 0, GSA mode 1, VTG mode ``N``; time and date stay valid
(the receiver keeps its clock running). Course over ground is left empty below
walking speed, as real receivers do, because it is noise there.

Every sentence is returned as ``str`` framed as ``$<body>*<checksum>\\r\\n``.
No clocks, no I/O, no randomness: the same epoch always gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from agent.core import nmea

UTC = dt.timezone.utc

KNOTS_PER_MPS = 3600.0 / 1852.0
# Course is not reported below this speed (m/s): receivers blank it because a
# stationary antenna's "course" is just position noise.
COURSE_MIN_SPEED = 0.15

TALKERS = ("GP", "GN")
# Constellation -> (GSV talker, GSA system id of NMEA 4.10).
SYSTEMS: dict[str, tuple[str, int]] = {
    "GPS": ("GP", 1),
    "GLONASS": ("GL", 2),
    "GALILEO": ("GA", 3),
    "BEIDOU": ("GB", 4),
}
_SYSTEM_ORDER = tuple(SYSTEMS)


@dataclass(frozen=True, slots=True)
class SatView:
    """One satellite as the receiver sees it.

    ``prn`` is the NMEA satellite id (GPS 1-32, GLONASS 65-96, Galileo 1-36,
    BeiDou 1-63 under their own talkers). ``snr`` is C/N0 in dB-Hz, ``None``
    when the satellite is predicted in view but not tracked.
    """

    system: str
    prn: int
    elevation: int
    azimuth: int
    snr: int | None
    used: bool


@dataclass(frozen=True, slots=True)
class NavEpoch:
    """What the receiver knows at one epoch.

    ``alt`` is height above mean sea level and ``geoid_sep`` the geoid
    separation, both in metres. ``speed`` is m/s over ground, ``track`` degrees
    true. Position fields are ignored when ``fix`` is false.
    """

    utc: dt.datetime
    fix: bool
    lat: float = 0.0
    lon: float = 0.0
    alt: float = 0.0
    geoid_sep: float = 0.0
    speed: float = 0.0
    track: float = 0.0
    sats: tuple[SatView, ...] = ()
    hdop: float = 99.99
    vdop: float = 99.99
    pdop: float = 99.99
    quality: int = 1  # GGA quality when fixed: 1 autonomous, 2 differential

    @property
    def used(self) -> tuple[SatView, ...]:
        return tuple(s for s in self.sats if s.used)


# ------------------------------------------------------------------ framing


def checksum(body: str) -> str:
    """The two hex digits of the agent's NMEA checksum of ``body`` (what lies between ``$`` and ``*``)."""
    return f"{nmea.checksum(body.encode('ascii')):02X}"


def frame(body: str) -> str:
    """``$body*CS\\r\\n``."""
    return f"${body}*{checksum(body)}\r\n"


def verify(line: str | bytes) -> bool:
    """True when ``line`` is a framed sentence whose checksum matches."""
    if isinstance(line, bytes):
        try:
            line = line.decode("ascii")
        except UnicodeDecodeError:
            return False
    line = line.strip()
    if not line.startswith(("$", "!")) or len(line) < 4 or line[-3] != "*":
        return False
    return checksum(line[1:-3]) == line[-2:].upper()


# --------------------------------------------------------------- the fields


def _time_field(t: dt.datetime) -> str:
    # Centiseconds, truncated (never rounded up into the next second).
    return f"{t.hour:02d}{t.minute:02d}{t.second:02d}.{t.microsecond // 10000:02d}"


def _date_field(t: dt.datetime) -> str:
    return f"{t.day:02d}{t.month:02d}{t.year % 100:02d}"


def _angle(value: float, degree_digits: int) -> str:
    # Round the total minutes first so 59.999996' never prints as "60.00000".
    minutes_total = round(abs(value) * 60.0, 5)
    degrees = int(minutes_total // 60)
    minutes = minutes_total - degrees * 60
    return f"{degrees:0{degree_digits}d}{minutes:08.5f}"


def lat_fields(lat: float) -> tuple[str, str]:
    return _angle(lat, 2), ("N" if lat >= 0 else "S")


def lon_fields(lon: float) -> tuple[str, str]:
    return _angle(lon, 3), ("E" if lon >= 0 else "W")


def _course(epoch: NavEpoch) -> str:
    if epoch.speed < COURSE_MIN_SPEED:
        return ""
    return f"{epoch.track % 360.0:.2f}"


def _dop(value: float) -> str:
    return f"{min(value, 99.99):.2f}"


def _check_talker(talker: str) -> None:
    if talker not in TALKERS:
        raise ValueError(f"talker must be one of {TALKERS}, not {talker!r}")


def _visible(epoch: NavEpoch, talker: str) -> tuple[SatView, ...]:
    # A GPS-only receiver knows nothing of the other constellations.
    if talker == "GP":
        return tuple(s for s in epoch.sats if s.system == "GPS")
    return epoch.sats


# ---------------------------------------------------------------- sentences


def rmc(epoch: NavEpoch, talker: str = "GN") -> str:
    _check_talker(talker)
    t = epoch.utc
    if epoch.fix:
        lat, ns = lat_fields(epoch.lat)
        lon, ew = lon_fields(epoch.lon)
        fields = [
            _time_field(t), "A", lat, ns, lon, ew,
            f"{epoch.speed * KNOTS_PER_MPS:.3f}", _course(epoch), _date_field(t),
            "", "", "A" if epoch.quality == 1 else "D",
        ]
    else:
        fields = [_time_field(t), "V", "", "", "", "", "", "", _date_field(t), "", "", "N"]
    if talker == "GN":
        fields.append("V")  # navigational status: not provided (NMEA 4.10)
    return frame(f"{talker}RMC," + ",".join(fields))


def vtg(epoch: NavEpoch, talker: str = "GN") -> str:
    _check_talker(talker)
    if epoch.fix:
        fields = [
            _course(epoch), "T", "", "M",
            f"{epoch.speed * KNOTS_PER_MPS:.3f}", "N", f"{epoch.speed * 3.6:.3f}", "K",
            "A" if epoch.quality == 1 else "D",
        ]
    else:
        fields = ["", "T", "", "M", "", "N", "", "K", "N"]
    return frame(f"{talker}VTG," + ",".join(fields))


def gga(epoch: NavEpoch, talker: str = "GN") -> str:
    _check_talker(talker)
    t = epoch.utc
    if epoch.fix:
        used = [s for s in _visible(epoch, talker) if s.used]
        lat, ns = lat_fields(epoch.lat)
        lon, ew = lon_fields(epoch.lon)
        fields = [
            _time_field(t), lat, ns, lon, ew, str(epoch.quality), f"{len(used):02d}",
            _dop(epoch.hdop), f"{epoch.alt:.1f}", "M", f"{epoch.geoid_sep:.1f}", "M", "", "",
        ]
    else:
        fields = [_time_field(t), "", "", "", "", "0", "00", "99.99", "", "", "", "", "", ""]
    return frame(f"{talker}GGA," + ",".join(fields))


def gsa(epoch: NavEpoch, talker: str = "GN") -> list[str]:
    """One GSA (``GP``) or one per constellation (``GN``, with system id)."""
    _check_talker(talker)
    mode = "3" if epoch.fix else "1"
    dops = [_dop(epoch.pdop), _dop(epoch.hdop), _dop(epoch.vdop)] if epoch.fix else ["99.99"] * 3
    systems = ("GPS",) if talker == "GP" else _systems_present(epoch)
    out = []
    for system in systems:
        ids = [f"{s.prn:02d}" for s in epoch.sats if s.system == system and s.used and epoch.fix][:12]
        ids += [""] * (12 - len(ids))
        fields = ["A", mode, *ids, *dops]
        if talker == "GN":
            fields.append(str(SYSTEMS[system][1]))
        out.append(frame(f"{talker}GSA," + ",".join(fields)))
    return out


def gsv(epoch: NavEpoch, talker: str = "GN") -> list[str]:
    """Satellites in view, four per sentence, under each constellation's talker."""
    _check_talker(talker)
    systems = ("GPS",) if talker == "GP" else _systems_present(epoch)
    out: list[str] = []
    for system in systems:
        sys_talker = SYSTEMS[system][0]
        sats = [s for s in epoch.sats if s.system == system]
        if not sats:
            out.append(frame(f"{sys_talker}GSV,1,1,00"))
            continue
        chunks = [sats[i:i + 4] for i in range(0, len(sats), 4)]
        for number, chunk in enumerate(chunks, start=1):
            fields = [str(len(chunks)), str(number), f"{len(sats):02d}"]
            for s in chunk:
                snr = "" if s.snr is None else f"{s.snr:02d}"
                fields += [f"{s.prn:02d}", f"{s.elevation:02d}", f"{s.azimuth:03d}", snr]
            out.append(frame(f"{sys_talker}GSV," + ",".join(fields)))
    return out


def zda(epoch: NavEpoch, talker: str = "GN") -> str:
    _check_talker(talker)
    t = epoch.utc
    return frame(f"{talker}ZDA,{_time_field(t)},{t.day:02d},{t.month:02d},{t.year:04d},00,00")


def _systems_present(epoch: NavEpoch) -> tuple[str, ...]:
    present = {s.system for s in epoch.sats} | {"GPS"}
    return tuple(name for name in _SYSTEM_ORDER if name in present)


def epoch_sentences(
    epoch: NavEpoch,
    talker: str = "GN",
    *,
    with_gsv: bool = True,
    with_zda: bool = True,
) -> list[str]:
    """The whole burst for one epoch, in u-blox order: RMC VTG GGA GSA GSV ZDA.

    At 5 or 10 Hz receivers usually send GSV (and ZDA) once a second only, to
    fit the serial line's bandwidth; the caller decides with the flags.
    """
    _check_talker(talker)
    out = [rmc(epoch, talker), vtg(epoch, talker), gga(epoch, talker), *gsa(epoch, talker)]
    if with_gsv:
        out += gsv(epoch, talker)
    if with_zda:
        out.append(zda(epoch, talker))
    return out


# --------------------------------------------------------------------- DOPs


def dops(sats: Iterable[SatView]) -> tuple[float, float, float] | None:
    """(PDOP, HDOP, VDOP) from the geometry of the used satellites.

    Classic least-squares geometry: rows ``[e, n, u, 1]`` of line-of-sight unit
    vectors, ``Q = (GᵀG)⁻¹``; one receiver clock for all constellations (a
    simplification; real multi-GNSS solutions add a bias per system). ``None``
    with fewer than four satellites or a degenerate geometry: no fix.
    """
    rows = []
    for s in sats:
        el = math.radians(s.elevation)
        az = math.radians(s.azimuth)
        rows.append((math.cos(el) * math.sin(az), math.cos(el) * math.cos(az), math.sin(el), 1.0))
    if len(rows) < 4:
        return None
    gtg = [[sum(r[i] * r[j] for r in rows) for j in range(4)] for i in range(4)]
    q = _invert4(gtg)
    if q is None:
        return None
    hdop = math.sqrt(max(q[0][0] + q[1][1], 0.0))
    vdop = math.sqrt(max(q[2][2], 0.0))
    pdop = math.sqrt(max(q[0][0] + q[1][1] + q[2][2], 0.0))
    return pdop, hdop, vdop


def _invert4(m: Sequence[Sequence[float]]) -> list[list[float]] | None:
    """Gauss-Jordan inverse of a 4x4 matrix with partial pivoting."""
    n = 4
    a = [list(map(float, row)) + [1.0 if i == j else 0.0 for j in range(n)] for i, row in enumerate(m)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-9:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        p = a[col][col]
        a[col] = [v / p for v in a[col]]
        for r in range(n):
            if r != col and a[r][col] != 0.0:
                f = a[r][col]
                a[r] = [v - f * w for v, w in zip(a[r], a[col])]
    return [row[n:] for row in a]
