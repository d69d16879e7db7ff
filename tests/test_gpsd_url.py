"""``gpsd://`` pyserial URLs: raw NMEA relayed by gpsd.

Two servers: a small TCP server in the test that checks the request the
handler sends, and the real Debian gpsd (when installed) reading NMEA from a
pseudo-terminal, as it would read a receiver on the vehicle.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest
import serial

from agent.adapters import serial_urls
from agent.adapters.serial_urls.protocol_gpsd import parse_url, watch_command

RMC = b"$GPRMC,081836,A,3751.65,S,14507.36,E,000.0,360.0,130998,011.3,E*62\r\n"


@pytest.fixture(autouse=True)
def registered():
    before = list(serial.protocol_handler_packages)
    serial_urls.register()
    serial_urls.register()  # idempotent
    assert serial.protocol_handler_packages.count(serial_urls.PACKAGE) == 1
    yield
    serial.protocol_handler_packages[:] = before


def test_parse_url_defaults_and_device():
    assert parse_url("gpsd://") == ("127.0.0.1", 2947, None)
    assert parse_url("gpsd://10.0.0.5:3000") == ("10.0.0.5", 3000, None)
    assert parse_url("gpsd://localhost/dev/serial0") == ("localhost", 2947, "/dev/serial0")
    with pytest.raises(serial.SerialException, match="no options"):
        parse_url("gpsd://localhost?logging=debug")
    with pytest.raises(serial.SerialException, match="bad port"):
        parse_url("gpsd://localhost:99999")


def test_watch_command_asks_for_raw_nmea():
    assert watch_command(None) == b'?WATCH={"enable":true,"raw":1}\n'
    assert watch_command("/dev/gnss0") == b'?WATCH={"enable":true,"raw":1,"device":"/dev/gnss0"}\n'


def test_handler_sends_watch_then_reads_the_relay():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    got: dict[str, bytes] = {}

    def fake_gpsd():
        conn, _ = server.accept()
        with conn:
            conn.sendall(b'{"class":"VERSION","release":"3.22"}\r\n')
            conn.settimeout(5)
            got["request"] = conn.makefile("rb").readline()
            conn.sendall(RMC * 3)
            conn.recv(1)  # hold the connection until the client closes

    thread = threading.Thread(target=fake_gpsd, daemon=True)
    thread.start()
    try:
        with serial.serial_for_url(f"gpsd://127.0.0.1:{port}/dev/serial0", timeout=2) as port_:
            data = b""
            deadline = time.monotonic() + 5
            while data.count(RMC) < 3 and time.monotonic() < deadline:
                data += port_.read(port_.in_waiting or 1)
        assert data.count(RMC) == 3
        assert got["request"] == b'?WATCH={"enable":true,"raw":1,"device":"/dev/serial0"}\n'
    finally:
        thread.join(5)
        server.close()


def test_unreachable_gpsd_is_a_serial_exception():
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    with pytest.raises(serial.SerialException):
        serial.serial_for_url(f"gpsd://127.0.0.1:{port}", timeout=1)


def test_real_gpsd_relays_the_receivers_sentences():
    gpsd = shutil.which("gpsd")
    if gpsd is None:
        pytest.skip("gpsd not installed (Debian package gpsd)")
    master, slave = os.openpty()
    tty = os.ttyname(slave)
    os.chmod(tty, 0o666)  # gpsd gives up root after opening; keep the pty usable to it
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    control = tempfile.mkdtemp(prefix="gpsd", dir="/tmp")
    proc = subprocess.Popen(
        [gpsd, "-N", "-n", "-b", "-S", str(port), "-F", f"{control}/gpsd.sock", tty],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stop = threading.Event()

    def receiver():  # a receiver talking at 1 Hz (faster, to keep the test short)
        while not stop.is_set():
            os.write(master, RMC)
            stop.wait(0.1)

    feeder = threading.Thread(target=receiver, daemon=True)
    feeder.start()
    try:
        deadline = time.monotonic() + 10
        port_ = None
        while port_ is None:
            try:
                port_ = serial.serial_for_url(f"gpsd://127.0.0.1:{port}", timeout=1)
            except serial.SerialException:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "gpsd never accepted a connection"
                time.sleep(0.1)
        with port_:
            data = b""
            while RMC.strip() not in data and time.monotonic() < deadline:
                data += port_.read(port_.in_waiting or 1)
        assert b'"class":"VERSION"' in data
        assert RMC.strip() in data
    finally:
        stop.set()
        feeder.join(2)
        proc.terminate()
        proc.wait(10)
        os.close(master)
        os.close(slave)
        shutil.rmtree(control, ignore_errors=True)
