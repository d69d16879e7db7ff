"""Property tests: no input bytes break the decoder, and noise hides no sentence."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.gnss import GnssDecoder, fix_to_json
from agent.core.nmea import NmeaFramer
from hil.nmea_gen import frame

CORPUS = Path(__file__).parent / "data" / "gnss-corpus"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def nmea(body: str) -> bytes:
    return frame(body).encode()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


# Bytes a receiver's line really carries, weighted towards the ones that
# matter to the framer.
noise = st.binary(max_size=80) | st.lists(
    st.sampled_from([b"$", b"*", b",", b"\r", b"\n", b"\x00", b"\xb5b", b"GPGGA", b"#", b"7F", b"A"]), max_size=30
).map(b"".join)


@SETTINGS
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(min_value=0), max_size=20), comments=st.booleans())
def test_random_bytes_never_raise(data: bytes, cuts: list[int], comments: bool) -> None:
    d = GnssDecoder(comments=comments)
    fixes = []
    for chunk in split(data, cuts):
        fixes += d.feed(chunk)
    fixes += d.flush()
    for f in fixes:
        fix_to_json(f)
    assert all(v >= 0 for v in vars(d.counters).values())


@SETTINGS
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_corrupted_real_capture_never_raises(seed: int, cuts: list[int]) -> None:
    import random

    rnd = random.Random(seed)
    data = bytearray((CORPUS / "ublox-8.log").read_bytes()[:6000])
    for _ in range(rnd.randint(1, 60)):  # flip, drop and duplicate bytes
        i = rnd.randrange(len(data))
        op = rnd.randrange(3)
        if op == 0:
            data[i] = rnd.randrange(256)
        elif op == 1:
            del data[i]
        else:
            data.insert(i, data[i])
    d = GnssDecoder(comments=True)
    for chunk in split(bytes(data), cuts):
        d.feed(chunk)
    d.flush()


valid_bodies = st.builds(
    lambda t, lat, lon, talker: f"{talker}GGA,{t // 3600:02d}{t // 60 % 60:02d}{t % 60:02d}.00,"
    f"{lat:09.4f},N,{lon:010.4f},E,1,08,0.9,{t % 500}.0,M,47.0,M,,",
    st.integers(min_value=0, max_value=86399),
    st.floats(min_value=0, max_value=8959.9999),
    st.floats(min_value=0, max_value=17959.9999),
    st.sampled_from(["GP", "GN", "GL", "GA", "GB", "BD", "GQ"]),
).filter(lambda b: int(b.split(",")[2][2:4]) < 60 and int(b.split(",")[4][3:5]) < 60)


@SETTINGS
@given(
    parts=st.lists(st.tuples(noise, valid_bodies), min_size=1, max_size=12),
    tail=noise,
    cuts=st.lists(st.integers(min_value=0), max_size=25),
)
def test_valid_sentences_survive_surrounding_garbage(parts, tail, cuts) -> None:
    stream = b"".join(g + nmea(body) for g, body in parts) + tail
    framer = NmeaFramer()
    got: list[str] = []
    for chunk in split(stream, cuts):
        got += framer.feed(chunk)
    want = [body for _, body in parts]
    # Every valid sentence comes out, in order (noise may add sentences of its own).
    it = iter(got)
    assert all(any(g == w for g in it) for w in want), (want, got)


@SETTINGS
@given(
    seconds=st.lists(st.integers(min_value=0, max_value=86399), min_size=1, max_size=8, unique=True),
    # Without commas noise cannot form a sentence the assembler reads (a
    # no-checksum "$GPGGA,,,..." is a legitimate "no fix" and would count).
    garbage=st.lists(noise.map(lambda b: b.replace(b",", b";")), min_size=8, max_size=8),
    cuts=st.lists(st.integers(min_value=0), max_size=25),
)
def test_fixes_survive_surrounding_garbage(seconds, garbage, cuts) -> None:
    seconds.sort()
    stream = b""
    for i, t in enumerate(seconds):
        hhmmss = f"{t // 3600:02d}{t // 60 % 60:02d}{t % 60:02d}.00"
        body = f"GPRMC,{hhmmss},A,4807.0380,N,01131.0000,E,022.4,084.4,230394,003.1,W"
        stream += garbage[i] + nmea(body)
    d = GnssDecoder()
    fixes = []
    for chunk in split(stream, cuts):
        fixes += d.feed(chunk)
    fixes += d.flush()
    got = {f.time.hour * 3600 + f.time.minute * 60 + f.time.second for f in fixes if f.valid and f.time}
    assert set(seconds) <= got


@SETTINGS
@given(text=st.text(max_size=120) | st.lists(st.sampled_from(["GPGGA", "GNRMC", "GPGSA", "GLL", ",", "1", ".", "A", "N", "²", "-"]), max_size=40).map("".join))
def test_parse_reads_or_refuses_any_text(text: str) -> None:
    from agent.core.nmea import Unparsable, parse

    try:
        parse(text)
    except Unparsable:
        pass


@SETTINGS
@given(
    noise_parts=st.lists(noise, min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0), max_size=40),
    comments=st.booleans(),
)
def test_chunking_never_changes_the_output(noise_parts, cuts, comments) -> None:
    capture = (CORPUS / "gp-320fw-2019-04-07-coldboot.log").read_bytes()[:3000]
    step = len(capture) // len(noise_parts)
    data = b"".join(capture[i * step : (i + 1) * step] + g for i, g in enumerate(noise_parts))
    whole = NmeaFramer(comments=comments)
    expected = whole.feed(data)
    pieces = NmeaFramer(comments=comments)
    got = [s for chunk in split(data, cuts) for s in pieces.feed(chunk)]
    assert got == expected
    assert pieces.counters == whole.counters
