"""The GNSS emulator: rates, positions, faults, the pty and TCP ports, replay.

Emulated time is driven by a hand-moved clock wherever the test is about
content; only the port tests run the emulator's thread on the real clock
(at 10 Hz, so a line arrives within 0.1 s) and wait on reads with timeouts.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path

import pynmea2
import pytest
import serial

from hil.gnss_emulator import GnssEmulator
from hil.gnss_faults import Fault, blank_fix
from hil.gnss_sources import CaptureSource, RouteSource, split_epochs
from hil.nmea_gen import verify
from hil.route import default_route, distance_m

UTC = dt.timezone.utc
START = dt.datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC)
CAPTURE = Path(__file__).parent / "data" / "hil" / "bu353-glonass.log"


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def _emulator(rate_hz: int = 1, talker: str = "GN", **source_kw) -> tuple[GnssEmulator, FakeClock]:
    clock = FakeClock()
    emu = GnssEmulator(RouteSource(start_utc=START, **source_kw), rate_hz=rate_hz, talker=talker, clock=clock)
    emu.start(run_thread=False)
    return emu, clock


def _run(emu: GnssEmulator, clock: FakeClock, seconds: float, step: float = 0.05):
    """Move the clock ``seconds`` forward in ``step``s, polling after each."""
    out = emu.poll()
    start = clock.t
    for i in range(1, round(seconds / step) + 1):
        clock.t = start + round(i * step, 9)  # no drift from summing 0.05s
        out += emu.poll()
    return out


def _lines(emissions) -> list[bytes]:
    return [line for e in emissions for line in e.data.splitlines(keepends=True)]


def _parsed(emissions, kind: str):
    return [pynmea2.parse(line.decode().strip(), check=True) for line in _lines(emissions) if line[3:6] == kind.encode()]


# -------------------------------------------------------------------- rates


@pytest.mark.parametrize("rate", [1, 5, 10])
def test_rate_gives_that_many_epochs_per_emulated_second(rate: int) -> None:
    emu, clock = _emulator(rate)
    out = _run(emu, clock, 10.0)
    per_second = [sum(1 for e in out if k <= e.t + 1e-9 < k + 1) for k in range(10)]
    assert per_second == [rate] * 10
    rmc_times = [m.timestamp for m in _parsed(out, "RMC")]
    assert len(rmc_times) == len(out) == 10 * rate + 1
    steps = {round((dt.datetime.combine(START.date(), b) - dt.datetime.combine(START.date(), a)).total_seconds(), 3)
             for a, b in zip(rmc_times, rmc_times[1:])}
    assert steps == {round(1 / rate, 3)}
    # Satellites in view and the date once a second whatever the rate.
    assert len(_parsed(out, "ZDA")) == 11


def test_a_late_poll_catches_up_without_losing_epochs() -> None:
    emu, clock = _emulator(5)
    emu.poll()
    clock.advance(3.0)
    assert [round(e.t, 1) for e in emu.poll()] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0]


def test_every_sentence_is_valid_nmea_with_both_talkers() -> None:
    for talker in ("GN", "GP"):
        emu, clock = _emulator(5, talker)
        lines = _lines(_run(emu, clock, 3.0))
        assert lines and all(line.endswith(b"\r\n") and verify(line) for line in lines)
        for line in lines:
            msg = pynmea2.parse(line.decode().strip(), check=True)
            if msg.sentence_type != "GSV":
                assert msg.talker == talker


# ------------------------------------------------------------ the drive


def test_positions_follow_the_route() -> None:
    route = default_route()
    emu, clock = _emulator(1, route=route, offset_s=100.0)
    out = _run(emu, clock, 120.0, step=1.0)
    truth = emu.truth()
    assert len(truth) == len(out) == 121
    rmcs = _parsed(out, "RMC")
    moving = 0
    for msg, tp in zip(rmcs, truth):
        expected = route.at(tp.t + 100.0)
        assert (tp.lat, tp.lon) == (expected.lat, expected.lon)
        assert msg.status == "A"
        assert distance_m(msg.latitude, msg.longitude, tp.lat, tp.lon) < 10.0  # receiver error only
        assert math.isclose(msg.spd_over_grnd / 1.943844, tp.speed, abs_tol=0.01)
        if tp.speed > 1.0:
            moving += 1
            assert abs((msg.true_course - tp.track + 180) % 360 - 180) < 0.01
    assert moving > 60
    assert {m.datestamp for m in rmcs} == {START.date()}
    assert 500 < distance_m(truth[0].lat, truth[0].lon, truth[-1].lat, truth[-1].lon)


def test_satellites_and_hdop_vary_plausibly() -> None:
    emu, clock = _emulator(1)
    ggas = _parsed(_run(emu, clock, 300.0, step=1.0), "GGA")
    sats = {int(m.num_sats) for m in ggas}
    hdops = {float(m.horizontal_dil) for m in ggas}
    assert min(sats) >= 6 and max(sats) <= 36 and len(sats) > 2
    assert 0.4 <= min(hdops) and max(hdops) <= 3.0 and len(hdops) > 3


# ----------------------------------------------------------------- faults


def test_tunnel_keeps_talking_without_a_fix_then_reacquires() -> None:
    emu, clock = _emulator(1, reacquire_s=2.0)
    emu.schedule([(10, "tunnel", 5)])
    out = _run(emu, clock, 25.0, step=1.0)
    by_t = {round(e.t): e for e in out}
    for t in range(10, 15):
        rmc = _parsed([by_t[t]], "RMC")[0]
        gga = _parsed([by_t[t]], "GGA")[0]
        assert rmc.status == "V" and rmc.lat == "" and gga.gps_qual == 0
        assert "fix_lost" in by_t[t].faults and not by_t[t].truth.fix
    assert _parsed([by_t[9]], "RMC")[0].status == "A"
    assert _parsed([by_t[16]], "RMC")[0].status == "V"  # still reacquiring
    assert all(_parsed([by_t[t]], "RMC")[0].status == "A" for t in range(17, 26))
    assert all(verify(line) for line in _lines(out))


def test_auto_tunnel_loses_the_fix_in_the_underpass() -> None:
    route = default_route()
    (start, end), = route.section_times("underpass")
    emu, clock = _emulator(1, route=route, offset_s=start - 5, auto_tunnel=True)
    truth_fix = [e.truth.fix for e in _run(emu, clock, end - start + 15, step=1.0)]
    assert truth_fix[:5] == [True] * 5
    assert not any(truth_fix[6 : int(end - start) + 5])
    assert truth_fix[-1]


def test_bad_checksums_fail_verification() -> None:
    emu, clock = _emulator(1)
    emu.schedule([(2, Fault("bad_checksum"), 2)])
    by_t = {round(e.t): e for e in _run(emu, clock, 5.0, step=1.0)}
    for t in (2, 3):
        lines = by_t[t].data.splitlines()
        assert lines and not any(verify(line) for line in lines)
        for line in lines:
            with pytest.raises(pynmea2.ChecksumError):
                pynmea2.parse(line.decode(), check=True)
    assert all(verify(line) for line in by_t[4].data.splitlines())


def test_truncated_lines_are_cut_short() -> None:
    emu, clock = _emulator(1)
    clean = {round(e.t): e for e in _run(emu, clock, 1.0, step=1.0)}
    emu.inject("truncated", duration=1.5)
    damaged = _run(emu, clock, 1.0, step=1.0)[-1]
    assert damaged.faults == ("truncated",)
    for line in damaged.data.splitlines(keepends=True):
        assert line.endswith(b"\r\n") and b"*" not in line and not verify(line)
    assert len(damaged.data) < len(clean[1].data)


def test_garbage_comes_between_intact_sentences() -> None:
    emu, clock = _emulator(1)
    emu.schedule([(1, "garbage", 1)])
    out = _run(emu, clock, 1.0, step=1.0)
    noisy = out[-1]
    assert noisy.faults == ("garbage",)
    chunks = noisy.data.split(b"$")
    assert chunks[0]  # noise before the first sentence
    assert any(b > 0x7E for b in noisy.data)  # binary, not text
    sentences = [b"$" + c[: c.index(b"\r\n") + 2] for c in chunks[1:]]
    assert sentences == [line[line.index(b"$"):] for line in noisy.lines]
    assert all(verify(s) for s in sentences)


def test_a_ratio_damages_only_a_share_of_lines() -> None:
    emu, clock = _emulator(1)
    emu.inject(Fault("bad_checksum", ratio=0.5))
    lines = _lines(_run(emu, clock, 30.0, step=1.0))
    bad = sum(1 for line in lines if not verify(line))
    assert 0.3 * len(lines) < bad < 0.7 * len(lines)


def test_time_jump_shifts_the_reported_clock_only() -> None:
    emu, clock = _emulator(1)
    emu.schedule([(3, Fault("time_jump", offset_s=3600), 2)])
    out = _run(emu, clock, 6.0, step=1.0)
    times = [m.timestamp.replace(tzinfo=None) for m in _parsed(out, "RMC")]
    assert times[2] == dt.time(10, 0, 2) and times[3] == dt.time(11, 0, 3) and times[5] == dt.time(10, 0, 5)
    assert [tp.utc.time() for tp in emu.truth()][3] == dt.time(10, 0, 3)


def test_silence_sends_nothing_but_the_vehicle_keeps_moving() -> None:
    emu, clock = _emulator(1)
    emu.inject("silence", duration=3)
    out = _run(emu, clock, 5.0, step=1.0)
    assert [bool(e.data) for e in out] == [False, False, False, True, True, True]
    assert len(emu.truth()) == 6 and emu.stats["unheard_epochs"] == 3


def test_clear_ends_faults_early_and_bad_faults_are_refused() -> None:
    emu, clock = _emulator(1)
    emu.inject("tunnel")
    _run(emu, clock, 2.0, step=1.0)
    assert emu.active_faults() == ("fix_lost",)
    emu.clear("tunnel")
    assert emu.active_faults() == ()
    with pytest.raises(ValueError, match="unknown fault"):
        emu.inject("lightning")
    with pytest.raises(ValueError, match="ratio"):
        Fault("garbage", ratio=2.0)
    with pytest.raises(ValueError, match="duration"):
        emu.inject("garbage", duration=0)


# ------------------------------------------------------------------ replay


def test_replay_yields_the_capture_at_its_own_pace() -> None:
    clock = FakeClock()
    source = CaptureSource(CAPTURE)
    emu = GnssEmulator(source, clock=clock)
    emu.start(run_thread=False)
    out = _run(emu, clock, len(source.epochs) + 2.0, step=0.25)
    expected = [line + b"\r\n" for line in CAPTURE.read_bytes().splitlines() if line and not line.startswith(b"#")]
    assert _lines(out) == expected
    per_second = [sum(1 for e in out if k <= e.t < k + 1) for k in range(len(source.epochs))]
    assert set(per_second) == {1}  # a 1 Hz receiver: one epoch a second
    assert emu.truth() == []  # a capture has no ground truth


def test_replay_faster_and_with_the_fix_blanked() -> None:
    clock = FakeClock()
    emu = GnssEmulator(CaptureSource(CAPTURE, speed=10.0), clock=clock)
    emu.start(run_thread=False)
    assert len(_run(emu, clock, 1.0, step=0.01)) == 11
    emu.inject("tunnel")
    rmcs = _parsed(_run(emu, clock, 0.5, step=0.01), "RMC")
    assert rmcs and all(m.status == "V" and m.lat == "" for m in rmcs)
    with pytest.raises(ValueError, match="own clock"):
        emu.inject("time_jump")


def test_a_looping_replay_starts_over() -> None:
    clock = FakeClock()
    source = CaptureSource(CAPTURE, speed=10.0, loop=True)
    emu = GnssEmulator(source, clock=clock)
    emu.start(run_thread=False)
    out = _run(emu, clock, 2 * len(source.epochs) / 10 + 0.5, step=0.01)
    assert len(out) >= 2 * len(source.epochs)
    assert out[len(source.epochs)].lines == tuple(source.epochs[0][1])
    assert all(b.t > a.t for a, b in zip(out, out[1:]))


def test_capture_epochs_split_on_time_and_skip_comments() -> None:
    data = (
        b"# header\r\n$GPGGA,120000.00,,,,,0,00,,,M,,M,,*69\r\n$GPGSA,A,1,,,,,,,,,,,,,,,*1E\r\n"
        b"\xb5b\x01\x07binary\n$GPRMC,120000.00,V,,,,,,,010324,,,N*7A\r\n"
        b"$GPGGA,120001.00,,,,,0,00,,,M,,M,,*68\r\n"
    )
    epochs = split_epochs(data)
    assert [t for t, _ in epochs] == [43200.0, 43201.0]
    assert len(epochs[0][1]) == 4 and epochs[0][1][2] == b"\xb5b\x01\x07binary\r\n"


def test_blank_fix_rewrites_real_sentences() -> None:
    rmc = blank_fix(b"$GNRMC,081411.000,A,5541.1955,N,03737.2872,E,0.60,301.29,260514,,,A*74\r\n")
    assert verify(rmc)
    msg = pynmea2.parse(rmc.decode().strip(), check=True)
    assert msg.status == "V" and msg.lat == "" and msg.datestamp == dt.date(2014, 5, 26)
    gga = pynmea2.parse(blank_fix(b"$GPGGA,081412.000,5541.1956,N,03737.2877,E,1,5,4.87,66.2,M,14.5,M,,*6A\r\n").decode().strip(), check=True)
    assert gga.gps_qual == 0 and gga.lat == ""
    zda = b"$GPZDA,081411.000,26,05,2014,,*5D\r\n"
    assert blank_fix(zda) == zda


# ------------------------------------------------------------------- ports


@pytest.fixture()
def live_pty(tmp_path: Path):
    emu = GnssEmulator(RouteSource(), rate_hz=10)
    link = emu.serve_pty(tmp_path / "gnss0")
    emu.start()
    yield emu, link
    emu.stop()


def _read_sentences(port: serial.SerialBase, count: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < count:
        line = port.readline()
        assert line, "no data before the read timeout"
        if line.startswith(b"$"):
            got.append(line)
    return got


def _read_until_broken(port: serial.SerialBase) -> serial.SerialException:
    """Read what was buffered until the port reports the lost connection."""
    for _ in range(100):
        try:
            data = port.read(4096)
        except serial.SerialException as exc:
            return exc
        if not data:
            pytest.fail("the port went quiet instead of reporting the unplug")
    pytest.fail("the port kept delivering data after the unplug")


def test_pty_serves_nmea_to_pyserial_through_the_symlink(live_pty) -> None:
    emu, link = live_pty
    assert os.path.islink(link) and os.readlink(link).startswith("/dev/pts/")
    assert emu.addresses == [link]
    with serial.serial_for_url(link, baudrate=9600, timeout=2) as port:
        lines = _read_sentences(port, 30)[1:]  # the first may be a tail; 30 spans two epochs
        assert all(verify(line) for line in lines)
        assert any(line[3:6] == b"RMC" for line in lines)
        port.write(b"$PUBX,40,GSV,0,0,0,0*59\r\n")  # the agent configuring its receiver
        assert emu.wait_for(lambda e: b"$PUBX,40,GSV" in e.received(), timeout=2)


def test_unplug_breaks_the_reader_and_replug_comes_back_at_the_same_path(live_pty) -> None:
    emu, link = live_pty
    port = serial.serial_for_url(link, timeout=2)
    _read_sentences(port, 2)
    emu.unplug()
    assert not os.path.lexists(link) and not emu.plugged
    _read_until_broken(port)
    port.close()
    emu.replug()
    assert os.path.islink(link) and emu.plugged
    with serial.serial_for_url(link, timeout=2) as again:
        assert all(verify(line) for line in _read_sentences(again, 3)[1:])


def test_scheduled_unplug_replugs_by_itself(tmp_path: Path) -> None:
    with GnssEmulator(RouteSource(), rate_hz=10) as emu:
        link = emu.serve_pty(tmp_path / "gnss1")
        emu.start()
        emu.inject("unplug", duration=0.3)
        assert not os.path.lexists(link)
        assert emu.wait_for(lambda e: e.plugged, timeout=3)
        with serial.serial_for_url(link, timeout=2) as port:
            assert all(verify(line) for line in _read_sentences(port, 3)[1:])
    assert not os.path.lexists(link)  # stop() takes the link away


def test_a_stale_link_is_replaced_but_a_real_file_is_not(tmp_path: Path) -> None:
    stale = tmp_path / "gnss-stale"
    os.symlink("/dev/pts/999999", stale)
    with GnssEmulator(RouteSource()) as emu:
        assert emu.serve_pty(stale) == str(stale)
        assert os.readlink(stale) != "/dev/pts/999999"
        real = tmp_path / "not-a-link"
        real.write_text("keep me")
        with pytest.raises(FileExistsError):
            emu.serve_pty(real)
        assert real.read_text() == "keep me"


def test_tcp_serves_pyserial_socket_urls_and_survives_unplug() -> None:
    with GnssEmulator(RouteSource(), rate_hz=10) as emu:
        port_no = emu.serve_tcp("127.0.0.1", 0)
        emu.start()
        url = f"socket://127.0.0.1:{port_no}"
        assert emu.addresses == [url]
        with serial.serial_for_url(url, timeout=2) as port:
            assert all(verify(line) for line in _read_sentences(port, 5)[1:])
            emu.unplug()
            _read_until_broken(port)
        emu.replug()
        with serial.serial_for_url(url, timeout=2) as port:
            assert all(verify(line) for line in _read_sentences(port, 3)[1:])
