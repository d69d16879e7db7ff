"""NMEA 0183 framing and sentence parsing: bytes in, typed sentences out.

Theory of operation
-------------------
A GNSS receiver's serial stream is not clean text. Real captures hold binary
protocol frames (u-blox UBX, SiRF) between sentences, bursts of NULs after a
power cycle, lines cut short by a buffer overflow with the next sentence glued
on, CR, LF, CRLF or CRCRLF endings, and boot banners. The framer therefore
works like gpsd's packet lexer rather than like ``readline()``:

* Outside a sentence every byte is skipped (and counted) until a ``$`` or
  ``!`` starts one.
* Inside a sentence only printable ASCII is allowed. A CR or LF ends it; any
  other control or 8-bit byte (a binary frame barging in) abandons it, and a
  new ``$`` restarts it, because a receiver that dropped bytes glues the next
  sentence onto the remains of the last.
* A finished sentence longer than :data:`MAX_SENTENCE` is dropped: two
  sentences merged by a lossy link can carry a valid checksum (gpsd's limit,
  which already admits lines longer than NMEA's nominal 82 characters).
* ``*hh`` at the end is the checksum: XOR of everything between ``$`` and
  ``*``. A wrong one drops the sentence (counted); a sentence without any
  checksum is accepted, as gpsd does for old receivers that send none, but
  must then carry one field more than its type's minimum (a line cut short
  has no checksum either).
* With ``comments=True`` (offline captures) a line that starts with ``#`` is a
  comment and skipped whole, even if it contains a ``$``.

:func:`parse` turns one framed sentence into a small frozen record for the
sentence types the epoch assembler uses (RMC, GGA, GLL, GNS, VTG, GSA, ZDA,
GBS), for any talker (GP, GN, GL, GA, GB, BD, GQ, IN, ...). Fields keep the
receiver's meaning; deciding what is a fix is the job of ``agent.core.gnss``.
Empty or malformed numeric fields become ``None``. Sentences with fewer
fields than their type needs are unparsable (gpsd's minimum field counts).

pynmea2 and what stays here
---------------------------
pynmea2 parses each sentence: it recognises the talker and the type, splits
the fields and names them (``num_sats``, ``spd_over_grnd``...), and converts
the numeric fields it has a converter for (floats, integers, decimals). The
framer (pynmea2 reads lines, not a byte stream with binary frames in it) and
the epoch assembler (``agent.core.gnss``; pynmea2 has none) are this
package's. So are the field rules where pynmea2's would change what the unit
reports, each one checked against gpsd on the shared captures:

* time of day: pynmea2 goes through a float, so ``.57`` s becomes 569,999 µs,
  and a leap second (``235960``) fails; here the digits are read exactly and
  a leap second holds the day's last instant, as gpsd does;
* latitude and longitude: pynmea2 answers 0.0 for an empty field or a
  missing hemisphere (a fix at 0° N 0° E instead of no position) and takes
  minutes of 60 and more; here those are no position;
* the date: pynmea2 picks the century with ``strptime``; here the day, month
  and two-digit year go to the epoch assembler, which picks it as gpsd does;
* satellite counts and GSA's fix mode are read like C's ``atoi``, as gpsd
  reads them (pynmea2 leaves them as text); GSA's PRNs and DOPs are read by
  position, because pynmea2's GSA has 12 PRN slots and NMEA 4.10 appends a
  system id (and some receivers send 24 slots); GNS's navigational status
  (NMEA 4.10) is past the fields pynmea2 names;
* a non-finite number (``nan``, ``inf``) is malformed here, as in gpsd.

One difference from this module's own former hand-written splitter: a ``*``
inside the fields (a corrupted line whose last checksum still matches) makes
the sentence unparsable (counted), since pynmea2 takes ``*`` for the start of
the checksum.

Everything here is pure: no I/O, no clocks.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import reduce
from operator import xor

import pynmea2

__all__ = [
    "GnssCounters",
    "NmeaFramer",
    "parse",
    "Gbs",
    "Gga",
    "Gll",
    "Gns",
    "Gsa",
    "Rmc",
    "Vtg",
    "Zda",
    "KNOTS_TO_MPS",
    "MAX_SENTENCE",
]

#: Longest accepted sentence, ``$`` to the end of the checksum, in bytes.
#: gpsd 3.22 rejects packets over 102 bytes including CR LF.
MAX_SENTENCE = 100

KNOTS_TO_MPS = 1852.0 / 3600.0


@dataclass
class GnssCounters:
    """What the decoder saw, for installers and the health check.

    ``sentences_ok`` counts every framed sentence whose checksum was right or
    absent and whose address was well formed (``ignored`` is the part of
    those whose type the decoder does not use, GSV, TXT, PUBX...).
    ``unparsable`` counts sentences that passed the checksum but could not be
    read (bad address, too few fields). ``skipped_bytes`` counts bytes that
    belonged to no sentence (binary frames, noise, abandoned fragments), line
    endings excluded.
    """

    sentences_ok: int = 0
    bad_checksum: int = 0
    unparsable: int = 0
    no_checksum: int = 0
    skipped_bytes: int = 0
    overlong: int = 0
    comments: int = 0
    ignored: int = 0
    epochs: int = 0
    fixes: int = 0


# ------------------------------------------------------------------ framing

_HEX = frozenset(b"0123456789ABCDEFabcdef")
_WS = frozenset(b"\r\n")
# Inside a sentence: anything that is not printable ASCII, or a '$'.
_SENTENCE_STOP = re.compile(rb"[^\x20-\x23\x25-\x7e]")
_START = re.compile(rb"[$!]")
_START_OR_COMMENT = re.compile(rb"[$!]|^#", re.M)


def _count_noise(chunk: bytes) -> int:
    """Bytes of ``chunk`` that are neither CR nor LF."""
    return len(chunk) - chunk.count(b"\r") - chunk.count(b"\n")


class NmeaFramer:
    """Incremental NMEA framer; feed it any chunking of the byte stream.

    ``feed()`` returns the sentences completed by this chunk as ``str``
    without the ``$`` and without the ``*hh`` checksum (checksum already
    verified). Partial sentences are kept for the next call.
    """

    def __init__(self, counters: GnssCounters | None = None, *, comments: bool = False) -> None:
        self.counters = counters if counters is not None else GnssCounters()
        self._comments = comments
        self._partial = bytearray()  # a sentence in progress, starting at '$'
        self._in_comment = False
        self._at_line_start = True

    def feed(self, data: bytes) -> list[str]:
        return [body for body, _ in self.feed_frames(data)]

    def feed_frames(self, data: bytes) -> list[tuple[str, bool]]:
        """Like :meth:`feed`, each body paired with whether it carried a checksum."""
        out: list[tuple[str, bool]] = []
        c = self.counters
        buf = bytes(data)
        n = len(buf)
        pos = 0
        if self._partial:
            pos = self._continue(buf, 0, out)
        elif self._in_comment:
            pos = self._skip_comment(buf, 0)
        pattern = _START_OR_COMMENT if self._comments else _START
        while pos < n:
            m = pattern.search(buf, pos)
            if m is None:
                c.skipped_bytes += _count_noise(buf[pos:])
                break
            m_start = m.start()
            c.skipped_bytes += _count_noise(buf[pos:m_start])
            is_comment = buf[m_start] == 0x23
            if is_comment and m_start == 0 and not self._at_line_start:
                # '^' matched the start of a chunk that continues a line.
                c.skipped_bytes += 1
                pos = 1
                continue
            if is_comment:
                c.comments += 1
                self._in_comment = True
                pos = self._skip_comment(buf, m_start)
                continue
            pos = self._continue(buf, m_start, out, start=True)
        if n:
            self._at_line_start = buf[-1] in (0x0A, 0x0D) and not self._partial
        return out

    def _skip_comment(self, buf: bytes, pos: int) -> int:
        end = buf.find(b"\n", pos)
        if end < 0:
            return len(buf)
        self._in_comment = False
        return end + 1

    def _continue(self, buf: bytes, pos: int, out: list[tuple[str, bool]], start: bool = False) -> int:
        """Extend the sentence in progress from ``buf[pos:]``; return the next position."""
        search_from = pos + 1 if start else pos
        m = _SENTENCE_STOP.search(buf, search_from)
        if m is None:
            self._partial += buf[pos:]
            if len(self._partial) > 4 * MAX_SENTENCE:
                # Printable junk with no line ending: give up on it.
                self.counters.overlong += 1
                self.counters.skipped_bytes += len(self._partial)
                self._partial.clear()
            return len(buf)
        end = m.start()
        self._partial += buf[pos:end]
        stop = buf[end]
        sentence = bytes(self._partial)
        self._partial.clear()
        if stop in _WS:
            self._finish(sentence, out)
            return end + 1
        # A control/binary byte or a new '$' cut the sentence short.
        self.counters.skipped_bytes += len(sentence)
        return end if stop == 0x24 else end + 1

    def _finish(self, raw: bytes, out: list[tuple[str, bool]]) -> None:
        c = self.counters
        if len(raw) > MAX_SENTENCE:
            c.overlong += 1
            return
        star = raw.rfind(b"*")
        if star < 0:
            body = raw[1:]
            c.no_checksum += 1
        else:
            cs = raw[star + 1 :]
            if len(cs) != 2 or cs[0] not in _HEX or cs[1] not in _HEX:
                c.bad_checksum += 1
                return
            body = raw[1:star]
            if checksum(body) != int(cs, 16):
                c.bad_checksum += 1
                return
        out.append((body.decode("ascii"), star >= 0))


def checksum(body: bytes) -> int:
    """The NMEA checksum of ``body`` (what lies between ``$`` and ``*``): the XOR of its bytes."""
    return reduce(xor, body, 0)


# ------------------------------------------------------------------ parsing


@dataclass(frozen=True, slots=True)
class Rmc:
    talker: str
    time_us: int | None  # UTC time of day in microseconds
    time_field: bool  # the time field was non-empty
    status: str  # 'A', 'D' valid; 'V' or '' invalid
    lat: float | None
    lon: float | None
    speed_kn: float | None
    track: float | None
    date: tuple[int, int, int] | None  # (day, month, two-digit year)
    date_field: bool
    faa: str  # mode indicator, '' when absent


@dataclass(frozen=True, slots=True)
class Gga:
    talker: str
    time_us: int | None
    time_raw: str  # the field as sent; repeated timestamps are a receiver fault
    lat: float | None
    lon: float | None
    quality: int | None
    sats: int  # satellites used, 0 when empty (as gpsd's atoi)
    sats_field: bool
    hdop: float | None
    alt: float | None  # metres above mean sea level


@dataclass(frozen=True, slots=True)
class Gll:
    talker: str
    time_us: int | None
    time_field: bool
    status: str
    lat: float | None
    lon: float | None
    faa: str


@dataclass(frozen=True, slots=True)
class Gns:
    talker: str
    time_us: int | None
    time_field: bool
    lat: float | None
    lon: float | None
    modes: str  # one mode indicator per constellation
    sats: int
    sats_field: bool
    hdop: float | None
    alt: float | None
    nav_status: str


@dataclass(frozen=True, slots=True)
class Vtg:
    talker: str
    track: float | None
    speed_kn: float | None
    faa: str


@dataclass(frozen=True, slots=True)
class Gsa:
    talker: str
    mode: int  # 1 no fix, 2 2D, 3 3D; 0 when unreadable
    mode_field: str
    prns: tuple[int, ...]
    hdop: float | None


@dataclass(frozen=True, slots=True)
class Zda:
    talker: str
    time_us: int | None
    date: tuple[int, int, int] | None  # (year, month, day)


@dataclass(frozen=True, slots=True)
class Gbs:
    """Error estimates; only its timestamp matters here (epoch detection)."""

    talker: str
    time_us: int | None


Sentence = Rmc | Gga | Gll | Gns | Vtg | Gsa | Zda | Gbs

# Talker + type (GPGGA, BDGSA, GQRMC...) or a proprietary address (PUBX,
# PSRFEPE, PMTK001...). Quectel's PQGSA is a GSA from the "PQ" talker.
_ADDRESS = re.compile(r"[A-Z][A-Z0-9]{1,9}\Z")


def _time_us(s: str) -> int | None:
    """``hhmmss[.sss]`` to microseconds since midnight, None if malformed."""
    if len(s) < 6 or not s[:6].isdecimal():
        return None
    hh, mm, ss = int(s[0:2]), int(s[2:4]), int(s[4:6])
    if hh > 23 or mm > 59 or ss > 60:
        return None
    us = 0
    if len(s) > 7 and s[6] == "." and s[7].isdecimal():
        frac = s[7:]
        i = 0
        while i < len(frac) and frac[i].isdecimal():
            i += 1
        digits = (frac[:i] + "000000")[:6]
        us = int(digits)
    elif len(s) > 6 and s[6] != ".":
        return None
    if ss == 60:  # a leap second cannot be represented; hold the last instant
        ss, us = 59, 999_999
    return ((hh * 60 + mm) * 60 + ss) * 1_000_000 + us


def _float(s: str) -> float | None:
    if not s:
        return None
    try:
        v = float(s)
    except ValueError:
        return None
    if v != v or v in (float("inf"), float("-inf")):
        return None
    return v


def _atoi(s: str) -> int:
    """C ``atoi``: leading digits, 0 when none (how receivers' counts are read)."""
    if s.isdecimal():
        return int(s)
    i = 0
    while i < len(s) and s[i].isdecimal():
        i += 1
    return int(s[:i]) if i else 0


def _coord(value: str, hemi: str, limit: float) -> float | None:
    """``DDDMM.mmmm`` + hemisphere to signed degrees."""
    if not value or not hemi:
        return None
    v = _float(value)
    if v is None or v < 0:
        return None
    deg = int(v // 100)
    minutes = v - deg * 100
    if minutes >= 60.0:
        return None
    d = deg + minutes / 60.0
    if d > limit:
        return None
    return -d if hemi[0] in "SW" else d


def _ddmmyy(s: str) -> tuple[int, int, int] | None:
    if len(s) != 6 or not s.isdecimal():
        return None
    dd, mm, yy = int(s[0:2]), int(s[2:4]), int(s[4:6])
    if not (1 <= mm <= 12 and 1 <= dd <= 31):
        return None
    return (dd, mm, yy)


# The fields, named by pynmea2's sentence classes. ``_text`` is a field as
# sent ("" when the sentence is short of it); ``_number`` and ``_integer`` go
# through pynmea2's converter where the field has one (it answers the text
# unchanged when the conversion fails, which here means "malformed": None).


def _text(msg: pynmea2.TalkerSentence, name: str) -> str:
    index = type(msg).name_to_idx[name]
    return msg.data[index] if index < len(msg.data) else ""


def _number(msg: pynmea2.TalkerSentence, name: str) -> float | None:
    value = getattr(msg, name)
    if value is None or isinstance(value, str):
        return _float(value or "")  # a field pynmea2 keeps as text, or one its converter refused
    value = float(value)  # float, int or Decimal
    return value if math.isfinite(value) else None


def _integer(msg: pynmea2.TalkerSentence, name: str) -> int | None:
    value = getattr(msg, name)
    return value if isinstance(value, int) else None


def _position(msg: pynmea2.TalkerSentence) -> tuple[float | None, float | None]:
    return (_coord(_text(msg, "lat"), _text(msg, "lat_dir"), 90.0),
            _coord(_text(msg, "lon"), _text(msg, "lon_dir"), 180.0))


def _rmc(msg: pynmea2.TalkerSentence) -> Rmc:
    time, date = _text(msg, "timestamp"), _text(msg, "datestamp")
    lat, lon = _position(msg)
    return Rmc(
        talker=msg.talker,
        time_us=_time_us(time),
        time_field=bool(time),
        status=_text(msg, "status")[:1],
        lat=lat,
        lon=lon,
        speed_kn=_number(msg, "spd_over_grnd"),
        track=_number(msg, "true_course"),
        date=_ddmmyy(date),
        date_field=bool(date),
        faa=_text(msg, "mode_indicator")[:1],
    )


def _gga(msg: pynmea2.TalkerSentence) -> Gga:
    time, sats = _text(msg, "timestamp"), _text(msg, "num_sats")
    lat, lon = _position(msg)
    return Gga(
        talker=msg.talker,
        time_us=_time_us(time),
        time_raw=time,
        lat=lat,
        lon=lon,
        quality=_integer(msg, "gps_qual"),
        sats=_atoi(sats),
        sats_field=bool(sats),
        hdop=_number(msg, "horizontal_dil"),
        alt=_number(msg, "altitude"),
    )


def _gll(msg: pynmea2.TalkerSentence) -> Gll:
    time = _text(msg, "timestamp")
    lat, lon = _position(msg)
    return Gll(
        talker=msg.talker,
        time_us=_time_us(time),
        time_field=bool(time),
        status=_text(msg, "status")[:1],
        lat=lat,
        lon=lon,
        faa=_text(msg, "faa_mode")[:1],
    )


def _gns(msg: pynmea2.TalkerSentence) -> Gns:
    time, sats = _text(msg, "timestamp"), _text(msg, "num_sats")
    lat, lon = _position(msg)
    return Gns(
        talker=msg.talker,
        time_us=_time_us(time),
        time_field=bool(time),
        lat=lat,
        lon=lon,
        modes=_text(msg, "mode_indicator"),
        sats=_atoi(sats),
        sats_field=bool(sats),
        hdop=_number(msg, "hdop"),
        alt=_number(msg, "altitude"),
        # NMEA 4.10's navigational status, after the fields pynmea2 names.
        nav_status=(msg.data[12] if len(msg.data) > 12 else "")[:1],
    )


def _vtg(msg: pynmea2.TalkerSentence) -> Vtg:
    return Vtg(talker=msg.talker, track=_number(msg, "true_track"), speed_kn=_number(msg, "spd_over_grnd_kts"),
               faa=_text(msg, "faa_mode")[:1])


def _gsa(msg: pynmea2.TalkerSentence) -> Gsa:
    # By position, not by pynmea2's names: its GSA has 12 PRN slots, then PDOP,
    # HDOP, VDOP, but NMEA 4.10 appends a system id and some receivers (Navior
    # CH-4701) send 24 PRN slots.
    f = msg.data
    dops = 14 if len(f) == 18 else len(f) - 3
    # tuple() of a list, not of a generator: CPython builds a generator's tuple at a guessed size
    # of 10 and resizes it, so each GSA took a 10-slot tuple and gave back one of its own size to
    # the interpreter's tuple free lists, which then filled (2,000 per size) at the 10 Hz rate.
    prns = tuple([p for p in (_atoi(x) for x in f[2:dops]) if p > 0])
    mode = _text(msg, "mode_fix_type")
    return Gsa(talker=msg.talker, mode=_atoi(mode), mode_field=mode, prns=prns, hdop=_float(f[dops + 1]))


def _zda(msg: pynmea2.TalkerSentence) -> Zda:
    date = None
    y, m, d = _integer(msg, "year"), _integer(msg, "month"), _integer(msg, "day")
    if y is not None and m is not None and d is not None and 1900 <= y <= 2200 and 1 <= m <= 12 and 1 <= d <= 31:
        date = (y, m, d)
    return Zda(talker=msg.talker, time_us=_time_us(_text(msg, "timestamp")), date=date)


def _gbs(msg: pynmea2.TalkerSentence) -> Gbs:
    return Gbs(talker=msg.talker, time_us=_time_us(_text(msg, "timestamp")))


# type -> (minimum fields after the address, parser). Minimums follow gpsd.
_PARSERS = {
    "RMC": (7, _rmc),
    "GGA": (12, _gga),
    "GLL": (6, _gll),
    "GNS": (12, _gns),
    "VTG": (4, _vtg),
    "GSA": (17, _gsa),
    "ZDA": (4, _zda),
    "GBS": (6, _gbs),
}


class Unparsable(ValueError):
    """A sentence that passed the checksum but cannot be read."""


def parse(body: str, checked: bool = True) -> Sentence | None:
    """Parse one framed sentence (no ``$``, no checksum).

    Returns a record, or ``None`` for a well-formed sentence of a type the
    decoder does not use; raises :class:`Unparsable` for a malformed one.
    ``checked=False`` says the sentence came without a checksum: it must then
    carry one field more than the minimum, so that a line cut short (the last
    one of a capture, a glitch) is not taken for a complete one (gpsd counts
    the checksum separator as a field, to the same effect).
    """
    f = body.split(",")
    address = f[0]
    if not _ADDRESS.match(address):
        raise Unparsable(f"bad address {address[:12]!r}")
    if len(address) != 5:
        return None
    entry = _PARSERS.get(address[2:])
    if entry is None:
        return None
    minimum, parser = entry
    if not checked:
        minimum += 1
    if len(f) - 1 < minimum:
        raise Unparsable(f"{address}: {len(f) - 1} fields, needs {minimum}")
    try:
        msg = pynmea2.parse(body)
    except pynmea2.ParseError as exc:
        raise Unparsable(f"{address}: {exc.args[0][0]}") from None
    return parser(msg)
