"""The NMEA builder: framing, field formats, both dialects, decodable by pynmea2."""

from __future__ import annotations

import datetime as dt
import math

import pynmea2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil import nmea_gen
from hil.nmea_gen import NavEpoch, SatView, checksum, dops, epoch_sentences, frame, verify
from hil.sky import Sky

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, 10, 20, 30, 456789, tzinfo=UTC)

# Real sentences from gpsd's regression captures (tests/data/hil/README.md):
# bu353-glonass.log, GlobalSat BU-353 GLONASS, 2014.
REAL = [
    "$GNRMC,081411.000,A,5541.1955,N,03737.2872,E,0.60,301.29,260514,,,A*74",
    "$GPZDA,081411.000,26,05,2014,,*5D",
    "$GNGSA,A,3,03,19,27,13,,,,,,,,,2.75,2.56,1.00*10",
]


def _sky_epoch(**overrides) -> NavEpoch:
    view = Sky(seed=3).view(T0, 10.0)
    fields = dict(
        utc=T0, fix=True, lat=34.2601234, lon=-6.5801, alt=24.3, geoid_sep=46.0,
        speed=12.5, track=271.3, sats=view.sats, hdop=view.hdop, vdop=view.vdop, pdop=view.pdop,
    )
    fields.update(overrides)
    return NavEpoch(**fields)


def _parse_all(lines: list[str]) -> list[pynmea2.NMEASentence]:
    return [pynmea2.parse(line.strip(), check=True) for line in lines]


# ------------------------------------------------------------------ framing


@pytest.mark.parametrize("sentence", REAL)
def test_checksum_matches_real_receivers(sentence: str) -> None:
    body, cs = sentence[1:].split("*")
    assert checksum(body) == cs
    assert verify(sentence)
    assert frame(body) == sentence + "\r\n"


def test_verify_rejects_damaged_and_unframed_lines() -> None:
    good = REAL[0]
    assert not verify(good[:-2] + "00")
    assert not verify(good.replace("5541", "5542"))
    assert not verify(good[:30])
    assert not verify(b"\xff\xfe$GPGGA*00")
    assert verify(good.encode() + b"\r\n")


# ------------------------------------------------------------------- fields


def test_latitude_longitude_fields() -> None:
    assert nmea_gen.lat_fields(34.2601234) == ("3415.60740", "N")
    assert nmea_gen.lon_fields(-6.5801) == ("00634.80600", "W")
    assert nmea_gen.lat_fields(-33.5) == ("3330.00000", "S")
    # Rounding that carries into the degrees must not print "60" minutes.
    assert nmea_gen.lat_fields(34.999999999) == ("3500.00000", "N")


def test_time_is_truncated_to_centiseconds() -> None:
    rmc = pynmea2.parse(nmea_gen.rmc(_sky_epoch(utc=T0.replace(microsecond=999_999))).strip())
    assert rmc.data[0] == "102030.99"


@settings(max_examples=200, deadline=None)
@given(
    lat=st.floats(-89.9, 89.9, allow_nan=False),
    lon=st.floats(-179.9, 179.9, allow_nan=False),
    speed=st.floats(0.0, 60.0),
    track=st.floats(0.0, 359.99),
)
def test_every_sentence_decodes_to_the_epoch(lat: float, lon: float, speed: float, track: float) -> None:
    epoch = _sky_epoch(lat=lat, lon=lon, speed=speed, track=track)
    msgs = _parse_all(epoch_sentences(epoch, "GN"))
    rmc = next(m for m in msgs if m.sentence_type == "RMC")
    gga = next(m for m in msgs if m.sentence_type == "GGA")
    vtg = next(m for m in msgs if m.sentence_type == "VTG")
    assert rmc.status == "A"
    assert math.isclose(rmc.latitude, lat, abs_tol=2e-7)
    assert math.isclose(rmc.longitude, lon, abs_tol=2e-7)
    assert math.isclose(gga.latitude, lat, abs_tol=2e-7)
    assert math.isclose(rmc.spd_over_grnd, speed * nmea_gen.KNOTS_PER_MPS, abs_tol=1e-3)
    assert math.isclose(vtg.spd_over_grnd_kmph, speed * 3.6, abs_tol=1e-3)
    if speed >= nmea_gen.COURSE_MIN_SPEED:
        assert math.isclose(rmc.true_course, track, abs_tol=0.006)
    else:
        assert rmc.true_course is None  # blanked at a standstill
    assert rmc.datestamp == T0.date()
    assert int(gga.num_sats) == len(epoch.used)
    assert gga.gps_qual == 1


def test_no_fix_keeps_talking_with_void_status() -> None:
    epoch = _sky_epoch(fix=False)
    msgs = _parse_all(epoch_sentences(epoch, "GN"))
    rmc = next(m for m in msgs if m.sentence_type == "RMC")
    gga = next(m for m in msgs if m.sentence_type == "GGA")
    vtg = next(m for m in msgs if m.sentence_type == "VTG")
    gsas = [m for m in msgs if m.sentence_type == "GSA"]
    assert rmc.status == "V" and rmc.lat == "" and rmc.lon == ""
    assert rmc.datestamp == T0.date()  # the clock keeps running
    assert gga.gps_qual == 0 and gga.lat == "" and gga.num_sats == "00"
    assert vtg.faa_mode == "N"
    assert all(m.mode_fix_type == "1" and m.sv_id01 == "" for m in gsas)


def test_gn_dialect_reports_each_constellation() -> None:
    epoch = _sky_epoch()
    lines = epoch_sentences(epoch, "GN")
    msgs = _parse_all(lines)
    assert [m.sentence_type for m in msgs[:3]] == ["RMC", "VTG", "GGA"]
    assert all(m.talker == "GN" for m in msgs if m.sentence_type in ("RMC", "VTG", "GGA", "GSA", "ZDA"))
    gsa_ids = [line.split("*")[0].split(",")[-1] for line in lines if line[3:6] == "GSA"]
    assert gsa_ids == ["1", "2", "3"]  # GPS, GLONASS, Galileo
    assert lines[0].split("*")[0].endswith(",A,V")  # mode, navigational status
    for system, talker, system_id in (("GPS", "GP", "1"), ("GLONASS", "GL", "2"), ("GALILEO", "GA", "3")):
        gsv = [m for m in msgs if m.sentence_type == "GSV" and m.talker == talker]
        in_view = [s for s in epoch.sats if s.system == system]
        assert gsv and int(gsv[0].num_sv_in_view) == len(in_view)
        assert [int(m.msg_num) for m in gsv] == list(range(1, len(gsv) + 1))
        assert all(int(m.num_messages) == len(gsv) for m in gsv)
        prns = [int(getattr(m, f"sv_prn_num_{k}")) for m in gsv for k in range(1, 5) if getattr(m, f"sv_prn_num_{k}", "")]
        assert prns == [s.prn for s in in_view]
        gsa = next(line.split("*")[0].split(",") for line in lines if line[3:6] == "GSA" and line.split("*")[0].endswith("," + system_id))
        assert [int(x) for x in gsa[3:15] if x] == [s.prn for s in in_view if s.used][:12]


def test_gp_dialect_is_gps_only_nmea3() -> None:
    epoch = _sky_epoch()
    lines = epoch_sentences(epoch, "GP")
    msgs = _parse_all(lines)
    assert {m.talker for m in msgs} == {"GP"}
    gsa = [line for line in lines if line[3:6] == "GSA"]
    assert len(gsa) == 1 and len(gsa[0].split("*")[0].split(",")) == 18  # no system id
    assert lines[0].split("*")[0].endswith(",A")  # no navigational status
    gps = [s for s in epoch.sats if s.system == "GPS"]
    gsv = [m for m in msgs if m.sentence_type == "GSV"]
    assert int(gsv[0].num_sv_in_view) == len(gps)
    gga = next(m for m in msgs if m.sentence_type == "GGA")
    assert int(gga.num_sats) == sum(1 for s in gps if s.used)


def test_gsv_and_zda_can_be_left_out_for_fast_rates() -> None:
    lines = epoch_sentences(_sky_epoch(), "GN", with_gsv=False, with_zda=False)
    assert {line[3:6] for line in lines} == {"RMC", "VTG", "GGA", "GSA"}


def test_zda_carries_the_date() -> None:
    zda = pynmea2.parse(nmea_gen.zda(_sky_epoch()).strip(), check=True)
    assert (zda.year, zda.month, zda.day) == (2024, 3, 1)
    assert zda.timestamp.replace(tzinfo=None) == dt.time(10, 20, 30, 450000)


def test_unknown_talker_is_refused() -> None:
    with pytest.raises(ValueError, match="talker"):
        epoch_sentences(_sky_epoch(), "BD")


# --------------------------------------------------------------------- DOPs


def _sat(el: float, az: float, prn: int = 1) -> SatView:
    return SatView("GPS", prn, int(el), int(az), 40, True)


def test_dops_of_a_known_geometry() -> None:
    # Zenith plus three on the horizon 120° apart: HDOP = VDOP = sqrt(4/3).
    d = dops([_sat(90, 0, 1), _sat(0, 0, 2), _sat(0, 120, 3), _sat(0, 240, 4)])
    assert d is not None
    pdop, hdop, vdop = d
    assert math.isclose(hdop, math.sqrt(4 / 3), rel_tol=1e-9)
    assert math.isclose(vdop, math.sqrt(4 / 3), rel_tol=1e-9)
    assert math.isclose(pdop, math.sqrt(8 / 3), rel_tol=1e-9)


def test_dops_need_four_satellites() -> None:
    assert dops([_sat(90, 0), _sat(30, 0), _sat(30, 120)]) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(5, 89), st.integers(0, 359)), min_size=5, max_size=14, unique=True))
def test_more_satellites_never_worsen_hdop(geometry: list[tuple[int, int]]) -> None:
    sats = [_sat(el, az, i + 1) for i, (el, az) in enumerate(geometry)]
    fewer, more = dops(sats[:-1]), dops(sats)
    if fewer is not None and more is not None:
        assert more[1] <= fewer[1] + 1e-6


# ---------------------------------------------------------------------- sky


def test_sky_is_reproducible_and_plausible() -> None:
    a, b = Sky(seed=9), Sky(seed=9)
    counts = []
    for hour in range(0, 24, 2):
        t = T0 + dt.timedelta(hours=hour)
        va, vb = a.view(t, 12.0), b.view(t, 12.0)
        assert va == vb
        gps_up = sum(1 for s in va.sats if s.system == "GPS")
        counts.append(gps_up)
        assert 6 <= gps_up <= 18
        assert va.can_fix and 0.4 <= va.hdop <= 3.0
    assert len(set(counts)) > 1  # the sky moves


def test_buildings_hide_satellites_and_a_tunnel_hides_all() -> None:
    sky = Sky(seed=4)
    for minute in range(0, 600, 37):
        t = T0 + dt.timedelta(minutes=minute)
        open_sky, street, tunnel = sky.view(t, 5.0), sky.view(t, 25.0), sky.view(t, 5.0, blocked=True)
        assert street.used <= open_sky.used
        assert tunnel.used == 0 and not tunnel.can_fix
        assert len(tunnel.sats) == len(open_sky.sats)  # still in the almanac view
        assert all(s.snr is None for s in tunnel.sats)
