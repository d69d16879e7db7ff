"""NMEA framing and sentence parsing (agent.core.nmea).

The byte patterns come from real receivers: the glued sentences and NUL runs
are those of the gp-320fw cold-boot capture, the UBX frame from ublox-8.log
(tests/data/gnss-corpus, from gpsd's regression suite).
"""

from __future__ import annotations


import pytest

from agent.core.nmea import (
    MAX_SENTENCE,
    GnssCounters,
    Gga,
    Gll,
    Gns,
    Gsa,
    NmeaFramer,
    Rmc,
    Unparsable,
    Vtg,
    Zda,
    parse,
)
from hil.nmea_gen import checksum


def cs(body: str) -> str:
    return checksum(body)


def nmea(body: str, end: str = "\r\n") -> bytes:
    return f"${body}*{cs(body)}{end}".encode()


GGA = "GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,"
RMC = "GPRMC,092750.000,A,5321.6802,N,00630.3372,W,0.02,31.66,280511,,,A"
# A UBX NAV frame as it sits between NMEA lines in ublox-8.log.
UBX = bytes.fromhex("b562013c2800001f0000e8a0a80d0000000000000000000000000000000000000000000000000000000000000000000000007d48")


def frame(*chunks: bytes, comments: bool = False) -> tuple[list[str], GnssCounters]:
    c = GnssCounters()
    f = NmeaFramer(c, comments=comments)
    out: list[str] = []
    for chunk in chunks:
        out += f.feed(chunk)
    return out, c


@pytest.mark.parametrize("end", ["\r\n", "\n", "\r", "\r\r\n"])
def test_any_line_ending_ends_a_sentence(end: str) -> None:
    out, c = frame(nmea(GGA, end) + nmea(RMC, end))
    assert out == [GGA, RMC]
    assert c.bad_checksum == 0 and c.skipped_bytes == 0


def test_wrong_checksum_is_dropped_and_counted() -> None:
    bad = f"${GGA}*00\r\n".encode()
    out, c = frame(bad + nmea(RMC))
    assert out == [RMC]
    assert c.bad_checksum == 1


@pytest.mark.parametrize("tail", ["*", "*4", "*4G", "*123"])
def test_malformed_checksum_field_is_a_bad_checksum(tail: str) -> None:
    out, c = frame(f"${GGA}{tail}\r\n".encode())
    assert out == []
    assert c.bad_checksum == 1


def test_sentence_without_checksum_is_accepted_and_counted() -> None:
    out, c = frame(f"${GGA}\r\n".encode())
    assert out == [GGA]
    assert c.no_checksum == 1


def test_lowercase_checksum_is_accepted() -> None:
    out, _ = frame(f"${GGA}*{cs(GGA).lower()}\r\n".encode())
    assert out == [GGA]


def test_binary_frames_and_nuls_between_sentences_are_skipped() -> None:
    stream = b"\x00" * 40 + nmea(GGA) + UBX + nmea(RMC) + b"\xff\xfe\x00"
    out, c = frame(stream)
    assert out == [GGA, RMC]
    # Line-ending bytes are not counted as noise, even inside a binary frame.
    assert c.skipped_bytes == 40 + len(UBX) - UBX.count(b"\r") - UBX.count(b"\n") + 3


def test_binary_bytes_inside_a_sentence_abandon_it() -> None:
    cut = nmea(GGA)[:30] + UBX
    out, c = frame(cut + nmea(RMC))
    assert out == [RMC]
    assert c.skipped_bytes >= 30


def test_a_dollar_restarts_a_sentence_cut_short() -> None:
    # gp-320fw cold boot: "$GPGSA,A,1,,,,,,,,,,,,,,,*1E$GPRMC,235949.00,V,..."
    glued = b"$GPGSA,A,1,,,,,,,,,,,,,,,*1E" + nmea("GPRMC,235949.00,V,0000.0000,N,00000.0000,E,,,161206,,,N")
    out, c = frame(glued)
    assert out == ["GPRMC,235949.00,V,0000.0000,N,00000.0000,E,,,161206,,,N"]
    assert c.skipped_bytes == len("$GPGSA,A,1,,,,,,,,,,,,,,,*1E")


def test_byte_by_byte_feeding_gives_the_same_sentences() -> None:
    stream = b"junk" + nmea(GGA) + UBX + nmea(RMC, "\r\r\n") + b"\x00\x00" + nmea(GGA, "\n")
    whole, c1 = frame(stream)
    pieces, c2 = frame(*(stream[i : i + 1] for i in range(len(stream))))
    assert whole == pieces == [GGA, RMC, GGA]
    assert c1 == c2


def test_lines_longer_than_82_characters_are_accepted() -> None:
    # CH-4701 sends 24 PRN slots in GSA; u-blox GSV with signal ids run past 82.
    body = "GPGSA,A,3,27,23,13,07,25,,,,,,,,,,,,,,,,,,,,07.9,06.0,05.2" + ",1" * 14
    assert 82 < len(nmea(body)) - 2 <= MAX_SENTENCE
    out, c = frame(nmea(body))
    assert out == [body]


def test_lines_over_the_limit_are_dropped_as_overlong() -> None:
    body = "GPGGA," + "1," * 60
    out, c = frame(nmea(body) + nmea(RMC))
    assert out == [RMC]
    assert c.overlong == 1


def test_endless_printable_junk_does_not_grow_the_buffer() -> None:
    framer = NmeaFramer()
    framer.feed(b"$" + b"A" * 10_000)
    assert len(framer._partial) <= 4 * MAX_SENTENCE
    assert framer.feed(b"\r\n" + nmea(RMC)) == [RMC]


def test_comment_lines_are_skipped_when_asked() -> None:
    text = b"# Notes: $GLGSV for GLONASS sats, $GPGSV for GNSS\n" + nmea(GGA) + b"#x $GPRMC\n"
    out, c = frame(text, comments=True)
    assert out == [GGA]
    assert c.comments == 2


def test_comment_split_across_chunks() -> None:
    out, c = frame(b"# header with $GPGGA", b",1,2,3*00\n", nmea(RMC), comments=True)
    assert out == [RMC]
    assert c.comments == 1


def test_hash_is_not_a_comment_on_a_live_port() -> None:
    out, _ = frame(b"#" + nmea(GGA))
    assert out == [GGA]


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "GB", "BD", "GQ", "IN", "GI", "QZ"])
def test_every_talker_is_read(talker: str) -> None:
    s = parse(talker + RMC[2:])
    assert isinstance(s, Rmc) and s.talker == talker


def test_rmc_fields() -> None:
    s = parse(RMC)
    assert isinstance(s, Rmc)
    assert s.time_us == ((9 * 60 + 27) * 60 + 50) * 1_000_000
    assert s.status == "A" and s.date == (28, 5, 11) and s.faa == "A"
    assert s.lat == pytest.approx(53 + 21.6802 / 60)
    assert s.lon == pytest.approx(-(6 + 30.3372 / 60))
    assert s.speed_kn == pytest.approx(0.02) and s.track == pytest.approx(31.66)


def test_gga_fields() -> None:
    s = parse(GGA)
    assert isinstance(s, Gga)
    assert (s.quality, s.sats, s.hdop, s.alt) == (1, 8, 1.03, 61.7)


def test_fractional_seconds_keep_their_digits() -> None:
    s = parse("GPGGA,235959.987654,,,,,0,,,,,,,,")
    assert isinstance(s, Gga) and s.time_us == 86_399_987_654


@pytest.mark.parametrize("bad", ["", "12345", "1a3456", "250000", "126000", "123456x"])
def test_malformed_times_are_none(bad: str) -> None:
    s = parse(f"GPGGA,{bad},,,,,0,,,,,,,,")
    assert isinstance(s, Gga) and s.time_us is None


@pytest.mark.parametrize("lat", ["", "9100.0000", "4460.0000", "abc", "-0012.0"])
def test_impossible_coordinates_are_none(lat: str) -> None:
    s = parse(f"GPGLL,{lat},N,00630.3372,W,092750.000,A,A")
    assert isinstance(s, Gll) and s.lat is None


def test_other_sentence_types() -> None:
    assert isinstance(parse("GNGNS,224749.00,3333.4268304,N,11153.3538273,W,DN,19,0.6,406.110,-26.294,6.0,0138,S"), Gns)
    vtg = parse("GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A")
    assert isinstance(vtg, Vtg) and vtg.track == 54.7 and vtg.speed_kn == 5.5
    zda = parse("GPZDA,160012.71,11,03,2004,-1,00")
    assert isinstance(zda, Zda) and zda.date == (2004, 3, 11)
    gsa = parse("GNGSA,A,3,13,16,21,15,10,29,27,20,,,,,1.05,0.64,0.83,1")
    assert isinstance(gsa, Gsa) and gsa.mode == 3 and len(gsa.prns) == 8 and gsa.hdop == 0.64
    wide = parse("GPGSA,A,3,27,23,13,07,25,,,,,,,,,,,,,,,,,,,,07.9,06.0,05.2")
    assert isinstance(wide, Gsa) and wide.prns == (27, 23, 13, 7, 25) and wide.hdop == 6.0


def test_types_not_used_are_ignored() -> None:
    assert parse("GPGSV,3,1,12,20,76,058,40") is None
    assert parse("PUBX,00,081350.00,4717.113210,N") is None
    assert parse("PSRFEPE,100542.000,A,0.7,6.82,10.69,0.0,180.0") is None


@pytest.mark.parametrize("body", ["GPGSV for GNSS sats", "gpgga,1,2", ",,,", "GPRMC,1,2", "GPGGA,092750.000,5321.6802"])
def test_malformed_sentences_are_unparsable(body: str) -> None:
    with pytest.raises(Unparsable):
        parse(body)


def test_hash_in_the_middle_of_a_line_is_not_a_comment_even_at_a_chunk_edge() -> None:
    out, c = frame(b"noise", b"#" + nmea(GGA), comments=True)
    assert out == [GGA] and c.comments == 0
    out, c = frame(b"noise\n", b"#" + nmea(GGA), comments=True)
    assert out == [] and c.comments == 1


def test_a_sentence_without_checksum_needs_one_field_more() -> None:
    # The last line of ublox-8.log, cut short: "$GNRMC,001053.00,A,4404.14083,N,12118.85886,W,0."
    cut = "GNRMC,001053.00,A,4404.14083,N,12118.85886,W,0."
    assert isinstance(parse(cut), Rmc)  # complete as far as field counts go...
    with pytest.raises(Unparsable):
        parse(cut, checked=False)  # ...but without a checksum nothing says it is
    assert isinstance(parse(cut + ",", checked=False), Rmc)
    framer = NmeaFramer()
    assert framer.feed_frames(nmea(GGA) + f"${GGA}\r\n".encode()) == [(GGA, True), (GGA, False)]
