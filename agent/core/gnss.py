"""GNSS epoch assembly: NMEA sentences in, one :class:`Fix` per epoch out.

Theory of operation
-------------------
A receiver reports each navigation solution (an *epoch*, usually one per
second) as a burst of sentences: GGA, RMC, GLL, GNS, VTG, GSA, ZDA... in an
order that depends on the make. None of them says "this burst is over", so
the decoder has to infer where an epoch starts and ends. The rules below are
those of gpsd 3.22 (``drivers/driver_nmea0183.c``, ``gpsd/libgpsd_core.c``),
the reference decoder on Linux, restated for one fix per epoch:

Epoch boundaries
  * GGA, GLL, GNS and GBS with a readable time, and RMC that is valid (status
    A/D) with a readable time, *register* their timestamp. RMC with status V
    does not (some chipsets send bogus times while invalid), nor does ZDA
    (some receivers send it only with a fix).
  * A registered timestamp 10 ms or more away from the previous one starts a
    new epoch; the pending one is emitted first. Closer ones belong to the
    same epoch, whose time is the latest of them.
  * The sentence type that carried the last timestamp of an epoch *closes*
    the epochs after it: when it arrives, the epoch is emitted at once
    instead of waiting for the next second. This is gpsd's "cycle ender"
    (the type seen just before the time changed), learned afresh from each
    epoch, so a receiver whose cycle grows (RMC turning valid after GGA and
    GNS) is followed, and split cycles (RMC+GGA one second, GLL the next)
    emit at the time change. Sentences after the ender in the same second
    still update the receiver state (satellites used, last mode) but not the
    emitted fix, exactly as gpsd has already reported by then.
  * A receiver without time sends GGA with quality 0 or RMC with status V and
    empty time fields: such a sentence starts a new epoch without a time, as
    does a repeat of one of them within a time-less epoch. The date learned
    so far is forgotten (the receiver lost it too).
  * Only epochs that contain a position sentence (RMC, GGA, GLL, GNS), valid
    or not, are emitted; GSA or VTG alone make no epoch.

Mode (1 no fix, 2 2D, 3 3D)
  * RMC status V, GLL status V, GNS mode N, GGA quality 0 or empty, a GGA
    without position or with fewer than 3 satellites: no fix.
  * GGA with a position: 2D; 3D when it has an altitude and 4+ satellites.
    GNS likewise. GSA's mode field sets the mode, except a GPGSA once the
    receiver has sent GSA for other constellations (those report per
    system, and GPGSA then speaks for GPS alone).
  * RMC and GLL carry no altitude, so they keep the 3D of the previous
    epoch, and say 3D when GSA counted 4+ satellites used or an altitude was
    seen this epoch. A 3D fix is not downgraded to 2D within an epoch once
    the receiver has given altitudes.
  * The one place this decoder is stricter than gpsd: a GGA whose quality is
    0 or empty never gives a position (gpsd takes it and lets the mode come
    from the other sentences).
  * An emitted fix without position has mode 1 at most, and a fix with mode
    below 2 carries no position, altitude, speed or track.

Values: time of day in UTC from the registering sentences; the date from RMC
or ZDA (rolled over at midnight); altitude above mean sea level from GGA/GNS;
speed (knots to m/s) and track from RMC and VTG; HDOP from GGA/GNS/GSA;
satellites used from GGA/GNS, else the PRNs counted in the latest GSAs.
The last sentence of the epoch that carries a value wins. Nothing is derived:
where the receiver sends no speed, there is none (gpsd computes one from
successive positions).

Everything here is pure: bytes and sentences in, :class:`Fix` out, no I/O,
no clocks, no threads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from agent.core.events import Fix
from agent.core.nmea import (
    KNOTS_TO_MPS,
    Gbs,
    Gga,
    GnssCounters,
    Gll,
    Gns,
    Gsa,
    NmeaFramer,
    Rmc,
    Sentence,
    Unparsable,
    Vtg,
    Zda,
    parse,
)

__all__ = ["GnssCounters", "GnssDecoder", "EpochAssembler", "fix_to_json"]

_DAY_US = 86_400_000_000
_HALF_DAY_US = _DAY_US // 2
_SAME_TIME_US = 10_000  # gpsd: timestamps closer than 10 ms are the same epoch
# Second character of GSA talkers that report one constellation, or all.
_NON_GPS_GSA = frozenset("ABDILNQZ")


@dataclass(slots=True)
class _Epoch:
    """The epoch being accumulated (gpsd's ``gpsdata.fix``)."""

    time_us: int | None = None
    date: dt.date | None = None
    mode: int = 0
    lat: float | None = None
    lon: float | None = None
    alt: float | None = None
    speed: float | None = None
    track: float | None = None
    hdop: float | None = None
    sats: int | None = None
    gsa_sats: int | None = None
    kinds: set[str] = field(default_factory=set)  # position sentence types
    timed_kinds: list[str] = field(default_factory=list)  # registering, in order
    emitted: bool = False


class _Delta:
    """What one sentence contributes, worked out before it is merged."""

    __slots__ = ("kind", "reg", "date", "timeless", "mode", "pos", "alt", "speed", "track", "hdop", "sats", "gsa_sats")

    def __init__(self, kind: str | None = None) -> None:
        self.kind = kind  # position sentence type, or None
        self.reg: int | None = None  # registered timestamp (us of day)
        self.date: dt.date | None = None  # a date the sentence carries
        self.timeless = False  # a no-fix report without any time
        self.mode: int | None = None
        self.pos: tuple[float, float] | None = None
        self.alt: float | None = None
        self.speed: float | None = None
        self.track: float | None = None
        self.hdop: float | None = None
        self.sats: int | None = None
        self.gsa_sats: int | None = None


def _tod(us: int) -> dt.time:
    s, us = divmod(us, 1_000_000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return dt.time(h, m, s, us, tzinfo=dt.timezone.utc)


def _rmc_date(d: tuple[int, int, int]) -> dt.date | None:
    day, month, yy = d
    year = 2000 + yy if yy < 80 else 1900 + yy  # GPS time starts in 1980
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


class EpochAssembler:
    """Turns parsed sentences into one :class:`Fix` per epoch (rules above)."""

    def __init__(self, counters: GnssCounters | None = None) -> None:
        self.counters = counters if counters is not None else GnssCounters()
        self._cur = _Epoch()
        self._date: dt.date | None = None  # last known UTC date
        self._reg_time: int | None = None  # last registered timestamp
        # kind -> it carried the last timestamp of the latest epoch it was in
        self._closes: dict[str, bool] = {}
        # GSA bookkeeping: satellites used accumulate over consecutive GSAs.
        self._gsa_talker: str | None = None  # set while GSAs follow each other
        self._sats_used = 0
        self._gsa_seen = False
        self._seen_non_gps_gsa = False
        # GGA repeating its previous timestamp: the receiver is stuck.
        self._gga_talker: str | None = None
        self._gga_time: str | None = None
        self._gga_latch = False
        # The previous stamped state (gpsd's lastfix) and the one before a
        # time step (gpsd's oldfix), as far as the mode rules use them.
        self._last_mode = 0
        self._last_alt = False
        self._last_stamp: int | None = None
        self._old_alt = False

    # -------------------------------------------------------------- input

    def other(self) -> None:
        """A well-formed sentence of a type the assembler does not use."""
        self._gsa_talker = None

    def push(self, s: Sentence) -> list[Fix]:
        out: list[Fix] = []
        if not isinstance(s, Gsa):
            self._gsa_talker = None
        handler = _HANDLERS[type(s)]
        d: _Delta = handler(self, s)
        cur = self._cur
        # A 3D fix is not downgraded within an epoch once altitudes were seen.
        if d.mode is not None and cur.mode == 3 and d.mode != 1 and (self._last_alt or self._old_alt):
            d.mode = 3

        if d.reg is not None:
            changed = self._reg_time is None or abs(d.reg - self._reg_time) >= _SAME_TIME_US
            if (
                changed
                and d.date is None
                and self._reg_time is not None
                and self._date is not None
                and d.reg < self._reg_time - _HALF_DAY_US
            ):
                self._date += dt.timedelta(days=1)  # past midnight
            if d.date is not None:
                self._date = d.date
            self._reg_time = d.reg
            if changed or cur.time_us is None:
                cur = self._new_epoch(out, d.reg)
            else:
                cur.time_us = d.reg  # the latest stamp of the epoch is its time
        elif d.timeless:
            self._date = None
            if cur.time_us is not None or d.kind in cur.kinds:
                cur = self._new_epoch(out, None)
        self._merge(cur, d)
        if d.reg is not None:
            kind = type(s).__name__.upper()
            cur.timed_kinds.append(kind)
            if self._closes.get(kind, False):
                self._close(out)
        return out

    def flush(self) -> list[Fix]:
        out: list[Fix] = []
        self._close(out)
        return out

    # ----------------------------------------------------------- handlers

    def _rmc(self, s: Rmc) -> _Delta:
        d = _Delta("RMC")
        if s.status not in ("A", "D"):
            d.mode = 1
            d.timeless = not s.time_field or not s.date_field
            return d
        if s.time_us is not None:
            d.reg = s.time_us
            d.date = _rmc_date(s.date) if s.date is not None else None
        if s.lat is not None and s.lon is not None:
            d.pos = (s.lat, s.lon)
            d.mode = 3 if self._last_mode == 3 else 2
            if self._sats_used > 3 or self._cur.alt is not None:
                d.mode = 3
        else:
            d.mode = 1
        if s.speed_kn is not None:
            d.speed = s.speed_kn * KNOTS_TO_MPS
        d.track = s.track
        return d

    def _gga(self, s: Gga) -> _Delta:
        d = _Delta("GGA")
        if s.quality == 0 and not s.time_raw:
            d.timeless = True
        if self._gga_talker is not None and self._gga_talker != s.talker:
            self._gga_latch = False  # several talkers each send a GGA
        else:
            self._gga_latch = s.time_raw == self._gga_time
        self._gga_talker = s.talker
        if not self._gga_latch:
            self._gga_time = s.time_raw
        d.reg = s.time_us
        if s.lat is not None and s.lon is not None and s.quality:
            d.pos = (s.lat, s.lon)
            d.mode = 2
            if s.alt is not None:
                d.alt = s.alt
                if s.sats >= 4:
                    d.mode = 3
            if s.sats < 3:
                d.mode = 1
        else:
            d.mode = 1
        d.hdop = s.hdop
        if s.sats_field:
            d.sats = s.sats
        return d

    def _gll(self, s: Gll) -> _Delta:
        d = _Delta("GLL")
        d.reg = s.time_us
        if s.status == "A" and s.faa != "N" and s.lat is not None and s.lon is not None:
            d.pos = (s.lat, s.lon)
            if self._cur.alt is not None or self._sats_used > 3:
                d.mode = 3
            elif self._cur.mode < 2 or not self._old_alt:
                d.mode = 2
            else:
                d.mode = 0  # gpsd leaves the mode unknown here
        else:
            d.mode = 1
        return d

    def _gns(self, s: Gns) -> _Delta:
        d = _Delta("GNS")
        d.reg = s.time_us
        if not s.modes or s.modes[0] == "N":
            d.mode = 1
            return d
        if s.nav_status in ("U", "V"):
            return d
        if s.lat is not None and s.lon is not None:
            d.pos = (s.lat, s.lon)
            d.mode = 2
            if s.alt is not None:
                d.alt = s.alt
                if s.sats > 3:
                    d.mode = 3
        else:
            d.mode = 1
        d.hdop = s.hdop
        if s.sats_field:
            d.sats = s.sats
        return d

    def _gsa(self, s: Gsa) -> _Delta:
        d = _Delta()
        if self._gga_latch:
            return d  # the last GGA repeated its timestamp: don't trust this
        system = s.talker[1]
        self._gsa_seen = True
        previous = self._gsa_talker
        if previous is None or (previous == system and system != "N"):
            self._sats_used = 0
        self._gsa_talker = system
        if system in _NON_GPS_GSA:
            self._seen_non_gps_gsa = True
        self._sats_used += len(s.prns)
        d.gsa_sats = self._sats_used
        d.hdop = s.hdop
        if not s.mode_field.startswith("E") and not (self._seen_non_gps_gsa and system == "P"):
            d.mode = s.mode
        return d

    def _vtg(self, s: Vtg) -> _Delta:
        d = _Delta()
        if s.track is None or s.speed_kn is None or s.faa in ("E", "N"):
            return d
        d.track = s.track
        d.speed = s.speed_kn * KNOTS_TO_MPS
        return d

    def _zda(self, s: Zda) -> _Delta:
        if s.time_us is not None and s.date is not None and _valid_ymd(s.date):
            self._date = dt.date(*s.date)
            if self._cur.time_us is not None:
                self._cur.date = self._date
        return _Delta()

    def _gbs(self, s: Gbs) -> _Delta:
        d = _Delta()
        d.reg = s.time_us
        return d

    # ------------------------------------------------------------ helpers

    def _merge(self, cur: _Epoch, d: _Delta) -> None:
        if d.kind is not None:
            cur.kinds.add(d.kind)
        if d.pos is not None:
            cur.lat, cur.lon = d.pos
        if d.alt is not None:
            cur.alt = d.alt
        if d.speed is not None:
            cur.speed = d.speed
        if d.track is not None:
            cur.track = d.track
        if d.hdop is not None:
            cur.hdop = d.hdop
        if d.sats is not None:
            cur.sats = d.sats
        if d.gsa_sats is not None:
            cur.gsa_sats = d.gsa_sats
        if d.mode is not None:
            cur.mode = d.mode
        if d.reg is not None and cur.time_us is not None:
            cur.date = self._date
        # Remember the stamped state for the next sentences' mode rules.
        if cur.time_us is not None and cur.date is not None:
            stamp = cur.date.toordinal() * _DAY_US + cur.time_us
            if self._last_stamp is None or abs(stamp - self._last_stamp) > _SAME_TIME_US - 100:
                self._old_alt = self._last_alt
            self._last_mode = cur.mode
            self._last_alt = cur.alt is not None
            self._last_stamp = stamp

    def _new_epoch(self, out: list[Fix], time_us: int | None) -> _Epoch:
        """The current epoch is over: learn its shape, emit it, start anew."""
        timed = self._cur.timed_kinds
        for i, kind in enumerate(timed):  # a repeated kind keeps its last verdict
            self._closes[kind] = i == len(timed) - 1
        self._close(out)
        self._cur = _Epoch(time_us=time_us, date=self._date)
        return self._cur

    def _close(self, out: list[Fix]) -> None:
        cur = self._cur
        if cur.emitted or not cur.kinds:
            return
        cur.emitted = True
        if cur.sats is None and cur.gsa_sats is None and self._gsa_seen:
            cur.gsa_sats = self._sats_used  # GSA came in another part of the cycle
        fix = _to_fix(cur)
        self.counters.epochs += 1
        if fix.valid:
            self.counters.fixes += 1
        out.append(fix)


def _valid_ymd(ymd: tuple[int, int, int]) -> bool:
    try:
        dt.date(*ymd)
    except ValueError:
        return False
    return True


_HANDLERS = {
    Rmc: EpochAssembler._rmc,
    Gga: EpochAssembler._gga,
    Gll: EpochAssembler._gll,
    Gns: EpochAssembler._gns,
    Gsa: EpochAssembler._gsa,
    Vtg: EpochAssembler._vtg,
    Zda: EpochAssembler._zda,
    Gbs: EpochAssembler._gbs,
}


def _to_fix(e: _Epoch) -> Fix:
    mode = e.mode
    has_pos = e.lat is not None and e.lon is not None
    if mode >= 2 and not has_pos:
        mode = 1
    time = _tod(e.time_us) if e.time_us is not None else None
    sats = e.sats if e.sats is not None else e.gsa_sats
    if mode < 2:
        return Fix(mode=mode, time=time, date=e.date if time else None, hdop=e.hdop, sats=sats)
    return Fix(
        mode=mode,
        time=time,
        date=e.date if time else None,
        lat=e.lat,
        lon=e.lon,
        alt=e.alt,
        speed=e.speed,
        track=e.track,
        hdop=e.hdop,
        sats=sats,
    )


class GnssDecoder:
    """Sans-I/O NMEA decoder: bytes in (any chunking), :class:`Fix` epochs out.

    ``comments=True`` skips lines starting with ``#`` (offline captures).
    ``feed`` never raises on any input bytes; what went wrong is counted in
    :attr:`counters`.
    """

    def __init__(self, *, comments: bool = False) -> None:
        self.counters = GnssCounters()
        self._comments = comments
        self._framer = NmeaFramer(self.counters, comments=comments)
        self._assembler = EpochAssembler(self.counters)

    def reset(self) -> None:
        """Forget partial input and epoch state (the port was reopened); keep counters."""
        self._framer = NmeaFramer(self.counters, comments=self._comments)
        self._assembler = EpochAssembler(self.counters)

    def feed(self, data: bytes) -> list[Fix]:
        out: list[Fix] = []
        for body, checked in self._framer.feed_frames(data):
            out.extend(self.feed_sentence(body, checked))
        return out

    def feed_sentence(self, body: str, checked: bool = True) -> list[Fix]:
        """Feed one framed sentence (no ``$``, no ``*hh``); ``checked``: it had a checksum."""
        c = self.counters
        try:
            s = parse(body, checked)
        except Unparsable:
            c.unparsable += 1
            return []
        c.sentences_ok += 1
        if s is None:
            c.ignored += 1
            self._assembler.other()
            return []
        return self._assembler.push(s)

    def flush(self) -> list[Fix]:
        """End of input: emit the epoch still pending, if any."""
        return self._assembler.flush()


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(v, nd)


def fix_to_json(fix: Fix) -> dict:
    """The ``gnss decode`` record of one epoch (``None`` becomes ``null``)."""
    return {
        "time": fix.iso_time(),
        "mode": fix.mode,
        "lat": _round(fix.lat, 9),
        "lon": _round(fix.lon, 9),
        "alt": _round(fix.alt, 3),
        "speed": _round(fix.speed, 3),
        "track": _round(fix.track, 3),
        "hdop": _round(fix.hdop, 2),
        "sats": fix.sats,
    }
