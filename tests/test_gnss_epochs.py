"""Epoch assembly: sentences in, one Fix per epoch out (agent.core.gnss).

Sentences are built here in the shapes real receivers send (the orders are
those of the u-blox, MediaTek, Quectel and Garmin captures in
tests/data/gnss-corpus).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from agent.core.events import Fix
from agent.core.gnss import GnssDecoder, fix_to_json
from hil.nmea_gen import frame
from tests.support.blocks import blocks_left_by

CORPUS = Path(__file__).parent / "data" / "gnss-corpus"


def nmea(body: str) -> bytes:
    return frame(body).encode()


def feed(*bodies: str, decoder: GnssDecoder | None = None, flush: bool = True) -> list[Fix]:
    d = decoder or GnssDecoder()
    out: list[Fix] = []
    for b in bodies:
        out += d.feed(nmea(b))
    if flush:
        out += d.flush()
    return out


def gga(t: str, q: int = 1, sats: str = "08", alt: str = "61.7", lat: str = "5321.6802") -> str:
    return f"GPGGA,{t},{lat},N,00630.3372,W,{q},{sats},1.03,{alt},M,55.2,M,,"


def rmc(t: str, status: str = "A", date: str = "280511", speed: str = "10.0", lat: str = "5321.6802") -> str:
    return f"GPRMC,{t},{status},{lat},N,00630.3372,W,{speed},31.66,{date},,,A"


def gsa(mode: int, prns: tuple[int, ...] = (5, 13, 15, 18)) -> str:
    slots = [f"{p:02d}" for p in prns] + [""] * (12 - len(prns))
    return f"GPGSA,A,{mode},{','.join(slots)},2.1,1.03,1.8"


# --------------------------------------------------------------- one epoch


def test_gga_and_rmc_make_one_3d_fix() -> None:
    (fix,) = feed(gga("092750.500"), gsa(3), rmc("092750.500"))
    assert fix.mode == 3 and fix.valid
    assert fix.iso_time() == "2011-05-28T09:27:50.500Z"
    assert fix.lat == pytest.approx(53.361336667) and fix.lon == pytest.approx(-6.50562)
    assert fix.alt == 61.7
    assert fix.speed == pytest.approx(10.0 * 1852 / 3600)
    assert fix.track == 31.66 and fix.hdop == 1.03 and fix.sats == 8


def test_rmc_status_v_is_no_fix_and_carries_no_position() -> None:
    (fix,) = feed(rmc("092750.000", status="V"))
    assert fix.mode == 1 and not fix.valid
    assert fix.lat is None and fix.speed is None


def test_gga_quality_zero_is_no_fix_even_with_coordinates() -> None:
    (fix,) = feed(gga("092750.000", q=0, sats="05"))
    assert fix.mode == 1 and fix.lat is None


def test_gga_with_fewer_than_three_satellites_is_no_fix() -> None:
    (fix,) = feed(gga("092750.000", sats="02"))
    assert fix.mode == 1


def test_gga_without_altitude_is_2d() -> None:
    (fix,) = feed(gga("092750.000", alt=""))
    assert fix.mode == 2 and fix.valid and fix.alt is None


def test_gsa_no_fix_overrides_the_position() -> None:
    (fix,) = feed(gga("092750.000"), gsa(1))
    assert fix.mode == 1 and not fix.valid


def test_gll_and_gns_say_when_they_are_invalid() -> None:
    (v,) = feed("GPGLL,5321.6802,N,00630.3372,W,092750.000,V,N")
    (n,) = feed("GNGNS,092750.000,5321.6802,N,00630.3372,W,NN,00,,,,,")
    (a,) = feed("GNGNS,092750.000,5321.6802,N,00630.3372,W,AN,07,1.1,190.7,8.3,,")
    assert (v.mode, n.mode) == (1, 1)
    assert a.mode == 3 and a.alt == 190.7 and a.sats == 7


def test_gll_alone_is_a_2d_fix_without_a_date() -> None:
    (fix,) = feed("GNGLL,4404.14066,N,12118.85481,W,171925.00,A,A")
    assert fix.mode == 2 and fix.date is None
    assert fix.iso_time() == "17:19:25.000"
    assert fix_to_json(fix)["time"] == "17:19:25.000"


def test_zda_supplies_the_date() -> None:
    (fix,) = feed("GPZDA,092749.000,28,05,2011,00,00", gga("092750.000"))
    assert fix.date == dt.date(2011, 5, 28)


def test_satellites_used_come_from_gsa_when_gga_is_absent() -> None:
    (fix,) = feed(gsa(3, (5, 13, 15, 18, 21)), rmc("092750.000"))
    assert fix.sats == 5 and fix.mode == 3  # 4+ satellites used means 3D


# ----------------------------------------------------------- epoch edges


def test_a_new_timestamp_closes_the_epoch() -> None:
    d = GnssDecoder()
    assert feed(gga("000001.000"), rmc("000001.000"), decoder=d, flush=False) == []
    (first,) = feed(gga("000002.000"), decoder=d, flush=False)
    assert first.iso_time() == "2011-05-28T00:00:01.000Z"


def test_the_learned_cycle_ender_emits_without_waiting() -> None:
    d = GnssDecoder()
    feed(gga("000001.000"), rmc("000001.000"), gga("000002.000"), decoder=d, flush=False)
    # RMC closed the last epoch, so the next RMC emits its epoch at once.
    (fix,) = feed(rmc("000002.000"), decoder=d, flush=False)
    assert fix.iso_time() == "2011-05-28T00:00:02.000Z"
    # Sentences after the ender in the same second do not re-emit it.
    assert feed(gsa(3), "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A", decoder=d, flush=False) == []
    assert d.flush() == []


def test_the_last_timestamped_sentence_closes_the_epoch() -> None:
    # BeiDou SiRF order: GGA, GNS, GSA, RMC; RMC becomes the ender once valid.
    d = GnssDecoder()
    out: list[Fix] = []
    for t in ("074156.799", "074157.799", "074158.799"):
        out += feed(
            gga(t),
            f"GNGNS,{t},5321.6802,N,00630.3372,W,AN,07,1.1,190.7,8.3,,",
            gsa(3),
            rmc(t, speed="0.26"),
            decoder=d,
            flush=False,
        )
    # The first epoch waits for the next timestamp; from then on RMC, the
    # last sentence with a timestamp, emits each epoch complete.
    assert [f.iso_time()[11:] for f in out] == ["07:41:56.799Z", "07:41:57.799Z", "07:41:58.799Z"]
    assert all(f.speed == pytest.approx(0.26 * 1852 / 3600) for f in out)


def test_split_cycle_receivers_keep_their_epochs_apart() -> None:
    # Garmin 48: RMC+GGA on even seconds, GLL alone on odd ones.
    bodies = []
    for s in range(10, 16):
        t = f"2253{s:02d}"
        bodies += [rmc(t), gga(t)] if s % 2 == 0 else [f"GPGLL,5321.6802,N,00630.3372,W,{t},A"]
    fixes = feed(*bodies)
    assert [f.iso_time()[-7:] for f in fixes] == [f"{s:02d}.000Z" for s in range(10, 16)]
    assert all(f.valid for f in fixes)


def test_timestamps_closer_than_10_ms_are_one_epoch() -> None:
    (fix,) = feed("GPGLL,5321.6802,N,00630.3372,W,200619.295,A", gga("200619.30"), rmc("200619.30"))
    assert fix.iso_time() == "2011-05-28T20:06:19.300Z"


def test_receiver_without_time_gives_timeless_no_fix_epochs() -> None:
    # Quectel losing the sky: GGA and RMC with empty time fields.
    d = GnssDecoder()
    first = feed(gga("022038.00"), rmc("022038.00", date="071020"), decoder=d, flush=False)
    first += feed(gga("022039.00"), rmc("022039.00", date="071020"), decoder=d, flush=False)
    lost = feed(
        "GPVTG,,T,,M,,N,,K,N", gsa(1, ()), "GPGGA,,,,,,0,,,,,,,,", "GPRMC,,V,,,,,,,,,,N",
        "GPGGA,,,,,,0,,,,,,,,", "GPRMC,,V,,,,,,,,,,N", decoder=d,
    )
    assert [f.iso_time() for f in first] == ["2020-10-07T02:20:38.000Z", "2020-10-07T02:20:39.000Z"]
    assert [(f.mode, f.time) for f in lost] == [(1, None), (1, None)]
    # The receiver lost its date too: the next fix has a time of day only.
    (again,) = feed(gga("022050.00"), decoder=d)
    assert again.valid and again.date is None


def test_date_rolls_over_at_midnight() -> None:
    fixes = feed(gga("235959.000"), rmc("235959.000", date="311224"), gga("000000.000"), gga("000001.000"))
    assert [f.iso_time() for f in fixes] == [
        "2024-12-31T23:59:59.000Z",
        "2025-01-01T00:00:00.000Z",
        "2025-01-01T00:00:01.000Z",
    ]


def test_flush_emits_the_pending_epoch_once() -> None:
    d = GnssDecoder()
    assert d.feed(nmea(gga("092750.000"))) == []
    assert len(d.flush()) == 1
    assert d.flush() == []


def test_sentences_without_a_position_make_no_epoch() -> None:
    assert feed(gsa(3), "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A", "GPZDA,092749.000,28,05,2011,00,00") == []


def test_counters_count_epochs_fixes_and_ignored_types() -> None:
    d = GnssDecoder()
    feed(gga("000001.000"), "GPGSV,1,1,01,05,40,083,46", gga("000002.000", q=0), decoder=d)
    c = d.counters
    assert (c.epochs, c.fixes, c.sentences_ok, c.ignored) == (2, 1, 3, 1)


def test_chunking_does_not_change_the_result() -> None:
    data = (CORPUS / "gp-320fw-2019-04-07-coldboot.log").read_bytes()
    whole = GnssDecoder(comments=True)
    expected = whole.feed(data) + whole.flush()
    sliced = GnssDecoder(comments=True)
    got: list[Fix] = []
    for i in range(0, len(data), 7):
        got += sliced.feed(data[i : i + 7])
    got += sliced.flush()
    assert got == expected and len(expected) > 5
    assert whole.counters == sliced.counters


def test_fix_to_json_has_exactly_the_documented_keys() -> None:
    (fix,) = feed(gga("092750.500"), rmc("092750.500"))
    record = fix_to_json(fix)
    assert list(record) == ["time", "mode", "lat", "lon", "alt", "speed", "track", "hdop", "sats"]
    assert record["time"] == "2011-05-28T09:27:50.500Z" and record["mode"] == 3
    (nofix,) = feed(rmc("092750.000", status="V"))
    assert json.loads(json.dumps(fix_to_json(nofix)))["lat"] is None


def test_the_decoder_core_pulls_in_no_io_library() -> None:
    import subprocess
    import sys

    code = "import sys, agent.core.gnss, agent.core.nmea; print(sorted({'serial', 'tenacity', 'paho', 'gpiozero'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "[]"


def test_a_changing_sky_leaves_nothing_behind_in_the_interpreter() -> None:
    """Decoding GSA sentences with every satellite count keeps the unit's memory flat.

    A tuple built from a generator is taken at a guessed size of ten and given
    back at its own size, so at 10 Hz the interpreter's tuple free lists filled
    (2,000 per size) and the unit's memory crept up for hours as the satellites
    in view changed (bench_memory's soak).
    """
    decoder = GnssDecoder()
    skies = [nmea(gsa(3, tuple(range(1, n + 1)))) for n in range(1, 13)]

    def decode(i: int) -> None:
        decoder.feed(skies[i % len(skies)])

    blocks_left_by(decode, 2_400)  # what the first sentences of each shape fill once (caches, counters)
    assert blocks_left_by(decode, 24_000) < 500
