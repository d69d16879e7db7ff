"""GNSS time to chronyd through its SOCK refclock: the wire format, and a real chronyd.

The last test starts the Debian chronyd found on PATH, in the foreground
(-d), without touching the system clock (-x), with a configuration made of
the ``refclock SOCK`` line of ``firmware-config/chrony/umps-gnss.conf`` (its
socket moved into a temporary directory, its poll shortened from 8 s to 1 s
so the test is quick) and a private command socket. It then asks chronyc
what chronyd made of the samples.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from agent.adapters.chrony_sock import SOCK_MAGIC, ChronySock, pack_sample
from hil.wait import poll_until

REPO = Path(__file__).resolve().parents[1]
UTC = dt.timezone.utc


@pytest.fixture
def short_dir():
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="chr", dir="/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_sample_layout_matches_struct_sock_sample():
    data = pack_sample(1_700_000_000.25, -0.125, leap=1)
    assert len(data) == struct.calcsize("@lldiiii")
    sec, usec, offset, pulse, leap, pad, magic = struct.unpack("@lldiiii", data)
    assert (sec, usec, offset, pulse, leap, pad, magic) == (1_700_000_000, 250_000, -0.125, 0, 1, 0, SOCK_MAGIC)
    assert len(pack_sample(1.0, 0.0, time64=True)) == struct.calcsize("@qqdiiii")


def test_sample_rejects_nonsense():
    with pytest.raises(ValueError, match="leap"):
        pack_sample(1.0, 0.0, leap=7)
    with pytest.raises(ValueError, match="finite"):
        pack_sample(float("nan"), 0.0)


def test_send_puts_gnss_minus_system_time_on_the_socket(short_dir):
    path = str(short_dir / "refclock.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    try:
        sender = ChronySock(path)
        gnss = dt.datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)
        received_at = gnss.timestamp() + 0.4  # system clock 0.4 s ahead of GNSS
        assert sender.send(gnss, received_at) is True
        sec, usec, offset, pulse, leap, _, magic = struct.unpack("@lldiiii", server.recv(100))
        assert sec + usec / 1e6 == pytest.approx(received_at, abs=1e-6)
        assert offset == pytest.approx(-0.4, abs=1e-6)
        assert (pulse, leap, magic) == (0, 0, SOCK_MAGIC)
        assert sender.sent == 1
    finally:
        server.close()


def test_missing_chronyd_is_reported_not_raised(short_dir):
    path = str(short_dir / "absent.sock")
    sender = ChronySock(path)
    now = dt.datetime.now(UTC)
    assert sender.send(now, time.time()) is False
    assert sender.send(now, time.time()) is False
    assert sender.failed == 2
    # chronyd comes (back): the next sample goes through.
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    try:
        assert sender.send(now, time.time()) is True
    finally:
        server.close()


def test_naive_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        ChronySock("/nonexistent").send(dt.datetime(2024, 1, 1), 0.0)


def _sock_refclock_line() -> str:
    conf = (REPO / "firmware-config/chrony/umps-gnss.conf").read_text()
    lines = [line for line in conf.splitlines() if line.startswith("refclock SOCK ")]
    assert len(lines) == 1, lines
    return lines[0]


def test_real_chronyd_takes_the_samples(short_dir):
    chronyd, chronyc = shutil.which("chronyd"), shutil.which("chronyc")
    if not (chronyd and chronyc):
        pytest.skip("chronyd/chronyc not installed (Debian package chrony)")
    line = _sock_refclock_line()
    assert " refid NMEA " in line
    sock_path = str(short_dir / "nmea.sock")
    line = line.replace("/run/chrony.umps.sock", sock_path)
    line = re.sub(r"\bpoll \d+", "poll 0", line)
    os.chmod(short_dir, 0o700)  # chronyd refuses a command socket in a world-readable dir
    cmd_sock = str(short_dir / "chronyd.sock")
    conf = short_dir / "chrony.conf"
    conf.write_text(
        f"{line}\n"
        f"bindcmdaddress {cmd_sock}\n"
        "cmdport 0\n"
        f"pidfile {short_dir}/chronyd.pid\n"
        f"driftfile {short_dir}/drift\n"
    )
    args = [chronyd, "-d", "-x", "-f", str(conf)]
    # As root chronyd would switch to _chrony, which cannot use our temp dir.
    args += ["-u", "root"] if os.geteuid() == 0 else ["-U"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert poll_until(lambda: os.path.exists(sock_path) or proc.poll() is not None, 10), \
            "chronyd did not create its refclock socket"
        assert proc.poll() is None, f"chronyd exited: {proc.stdout.read()}"

        sender = ChronySock(sock_path)
        found = None
        deadline = time.monotonic() + 15
        while found is None and time.monotonic() < deadline:
            # The receiver says it is 0.25 s later than the system clock.
            now = time.time()
            assert sender.send(dt.datetime.fromtimestamp(now + 0.25, UTC), now)
            out = subprocess.run(
                [chronyc, "-h", cmd_sock, "-n", "-c", "sources"], capture_output=True, text=True, timeout=5
            ).stdout
            for row in out.splitlines():
                fields = row.split(",")
                # mode,state,name,stratum,poll,reach,lastrx,adjusted,measured,error
                if len(fields) >= 9 and fields[2] == "NMEA" and fields[5] != "0":
                    found = fields
            time.sleep(0.1)
        assert found is not None, f"chronyd never reported a sample; last output {out!r}"
        # chronyc reports the system clock relative to the source.
        assert float(found[8]) == pytest.approx(-0.25, abs=0.02)
    finally:
        proc.terminate()
        proc.wait(10)
