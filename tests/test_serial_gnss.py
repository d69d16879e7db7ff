"""The serial GNSS reader against real pseudo-terminals and a real TCP socket.

A "receiver" here is a thread writing NMEA epochs into the master side of a
pty (``os.openpty``); the reader opens the slave side by path with real
pyserial, exactly as it opens /dev/ttyUSB0. Unplugging is closing the master;
plugging back in is a new pty behind the same path (a symlink re-pointed, as
udev does for a USB receiver). Nothing waits on a bare sleep: every check
waits on a condition with a deadline.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.adapters.serial_gnss import SerialGnssReader
from agent.core.events import Fix
from hil.nmea_gen import frame
from hil.wait import poll_until


def nmea(body: str) -> bytes:
    return frame(body).encode()


def epoch(second: int) -> bytes:
    t = f"12{second // 60 % 60:02d}{second % 60:02d}.00"
    return (
        nmea(f"GPGGA,{t},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
        + nmea("GPGSV,1,1,01,05,40,083,46")
        + nmea(f"GPRMC,{t},A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")
    )


class Receiver:
    """Writes one epoch every ``period`` seconds through ``send`` until stopped."""

    def __init__(self, send: Callable[[bytes], None], first_second: int = 0, period: float = 0.05) -> None:
        self._send = send
        self.second = first_second
        self._period = period
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            if self.paused.is_set():
                continue
            try:
                self._send(epoch(self.second))
            except (BlockingIOError, BrokenPipeError, ConnectionError):
                continue  # nobody listening: the bytes are lost, as on a UART
            except OSError:
                return
            self.second += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        assert not self._thread.is_alive()


class Pty:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo back into the master before pyserial opens it
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)


class Recorder:
    """Collects the reader's callbacks; tests wait on it with deadlines."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.fixes: list[Fix] = []
        self.lost: list[tuple[float, str]] = []
        self.restored: list[float] = []

    def on_fix(self, fix: Fix) -> None:
        with self.cond:
            self.fixes.append(fix)
            self.cond.notify_all()

    def on_lost(self, reason: str) -> None:
        with self.cond:
            self.lost.append((time.monotonic(), reason))
            self.cond.notify_all()

    def on_restored(self) -> None:
        with self.cond:
            self.restored.append(time.monotonic())
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def seconds(self) -> list[int]:
        with self.cond:
            return [f.time.minute * 60 + f.time.second for f in self.fixes if f.valid and f.time]


def make_reader(port: str, rec: Recorder, **kw) -> SerialGnssReader:
    kw.setdefault("reopen_max_wait", 0.5)
    return SerialGnssReader(
        port, 9600, on_fix=rec.on_fix, on_lost=rec.on_lost, on_restored=rec.on_restored, **kw
    )


@pytest.fixture
def stack():
    """Stops whatever a test started, in reverse order, even when it fails."""
    stoppers: list[Callable[[], None]] = []
    yield stoppers.append
    for stop in reversed(stoppers):
        stop()


def test_fixes_arrive_through_a_pty(stack) -> None:
    pty = Pty()
    stack(pty.unplug)
    rec = Recorder()
    reader = make_reader(pty.path, rec)
    reader.start()
    stack(reader.stop)
    stack(Receiver(pty.send).stop)

    assert rec.wait(lambda: len(rec.fixes) >= 3, 5), "no fixes through the pty"
    fix = rec.fixes[-1]
    assert fix.valid and fix.mode == 3
    assert fix.lat == pytest.approx(48.1173) and fix.lon == pytest.approx(11.516667)
    secs = rec.seconds()
    assert secs == sorted(secs) and len(set(secs)) == len(secs)
    assert reader.connected and reader.last_data_mono is not None
    c = reader.counters
    assert c.opens == 1 and c.losses == 0 and c.sentences_ok >= 9 and c.ignored >= 3
    assert rec.lost == [] and rec.restored == []


def test_unplug_is_lost_within_3_s_and_replug_recovers(tmp_path: Path, stack) -> None:
    link = tmp_path / "gnss0"  # the stable path, like /dev/serial/by-id/...
    first = Pty()
    link.symlink_to(first.path)
    rec = Recorder()
    reader = make_reader(str(link), rec)
    reader.start()
    stack(reader.stop)
    receiver = Receiver(first.send, first_second=0)
    assert rec.wait(lambda: len(rec.fixes) >= 2, 5)

    receiver.stop()
    unplugged = time.monotonic()
    first.unplug()
    assert rec.wait(lambda: rec.lost, 3.0), "unplug not reported within 3 s"
    assert rec.lost[0][0] - unplugged <= 3.0
    assert poll_until(lambda: not reader.connected, 1)

    # Plug back in: a new pty behind the same path.
    second = Pty()
    stack(second.unplug)
    tmp = tmp_path / "gnss0.new"
    tmp.symlink_to(second.path)
    os.replace(tmp, link)
    stack(Receiver(second.send, first_second=30).stop)
    assert rec.wait(lambda: rec.restored, 5), "reader did not recover after replug"
    assert rec.wait(lambda: any(s >= 30 for s in rec.seconds()), 5), "no fixes after replug"
    c = reader.counters
    assert c.losses == 1 and c.opens >= 2 and len(rec.lost) == 1


def test_silence_is_a_loss_and_data_restores(stack) -> None:
    pty = Pty()
    stack(pty.unplug)
    rec = Recorder()
    reader = make_reader(pty.path, rec, silence_timeout=0.6)
    reader.start()
    stack(reader.stop)
    receiver = Receiver(pty.send)
    stack(receiver.stop)
    assert rec.wait(lambda: len(rec.fixes) >= 2, 5)

    receiver.paused.set()
    assert rec.wait(lambda: rec.lost, 3), "silence not reported"
    assert "no NMEA" in rec.lost[0][1]
    receiver.paused.clear()
    assert rec.wait(lambda: rec.restored, 5), "not restored when data came back"
    n = len(rec.fixes)
    assert rec.wait(lambda: len(rec.fixes) > n, 5)


def test_wrong_baud_rate_noise_is_no_data(stack) -> None:
    pty = Pty()
    stack(pty.unplug)
    rec = Recorder()
    reader = make_reader(pty.path, rec, silence_timeout=0.5)
    reader.start()
    stack(reader.stop)
    stack(Receiver(lambda _data: pty.send(b"\xf8\x80\x1e\x00" * 20)).stop)
    assert rec.wait(lambda: rec.lost, 3), "garbage kept the receiver 'alive'"
    assert rec.fixes == [] and reader.counters.skipped_bytes > 0


def test_a_failing_callback_does_not_kill_the_reader(stack) -> None:
    pty = Pty()
    stack(pty.unplug)
    calls = threading.Semaphore(0)

    def on_fix(fix: Fix) -> None:
        calls.release()
        raise RuntimeError("consumer bug")

    reader = SerialGnssReader(pty.path, 9600, on_fix=on_fix, on_lost=lambda r: None, on_restored=lambda: None)
    reader.start()
    stack(reader.stop)
    stack(Receiver(pty.send).stop)
    for _ in range(3):
        assert calls.acquire(timeout=5), "reader stopped delivering after a callback error"
    assert reader.counters.callback_errors >= 2


def test_missing_port_is_lost_and_retried_with_back_off(tmp_path: Path) -> None:
    rec = Recorder()
    reader = make_reader(str(tmp_path / "no-such-tty"), rec, reopen_max_wait=30.0)
    reader.start()
    assert rec.wait(lambda: rec.lost, 3)
    assert "cannot open" in rec.lost[0][1]
    # Back-off, not a busy loop: the third failure comes after 0.2 s + 0.4 s of waiting.
    first = rec.lost[0][0]
    assert poll_until(lambda: reader.counters.open_failures >= 3, 5)
    assert time.monotonic() - first >= 0.55
    assert reader.counters.open_failures <= 4
    # And stop() does not wait for the back-off to run out.
    started = time.monotonic()
    reader.stop(timeout=2.0)
    assert time.monotonic() - started < 1.0
    assert reader.counters.opens == 0 and not reader.connected


def test_socket_url_with_a_local_tcp_server(stack) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    stack(server.close)
    port = server.getsockname()[1]
    rec = Recorder()
    reader = make_reader(f"socket://127.0.0.1:{port}", rec)
    reader.start()
    stack(reader.stop)

    conn, _ = server.accept()
    receiver = Receiver(conn.sendall, first_second=0)
    assert rec.wait(lambda: len(rec.fixes) >= 2, 5), "no fixes over socket://"
    receiver.stop()
    conn.close()  # the network source goes away
    assert rec.wait(lambda: rec.lost, 3), "closed socket not reported"

    conn, _ = server.accept()  # the reader reconnects
    stack(conn.close)
    stack(Receiver(conn.sendall, first_second=20).stop)
    assert rec.wait(lambda: rec.restored, 5)
    assert rec.wait(lambda: any(s >= 20 for s in rec.seconds()), 5)
