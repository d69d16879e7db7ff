"""sd_notify and the health-gated watchdog against a real NOTIFY_SOCKET.

Each test binds a real AF_UNIX datagram socket, as systemd does, hands its
path to the notifier and reads what arrives. Waits are receives with a
timeout; "no ping" is asserted as "nothing arrived within several intervals
after the unhealthy status line", which the watchdog sends in the same round
in which it withholds the ping (datagrams on one socket arrive in order).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agent.adapters.sdnotify import (
    HealthCheck,
    Heartbeat,
    Notifier,
    Progress,
    Watchdog,
    status_line,
    thread_alive,
    watchdog_interval,
)

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Receiver:
    """The systemd side: a bound datagram socket and a receive with timeout."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address

    def recv(self, timeout: float = 2.0) -> str | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except TimeoutError:
            return None

    def wait_for(self, predicate, timeout: float = 3.0) -> list[str]:
        """Receive until a message satisfies ``predicate``; return all seen."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is None:
                break
            seen.append(msg)
            if predicate(msg):
                return seen
        raise AssertionError(f"no matching notification within {timeout} s; got {seen!r}")


@pytest.fixture
def receiver():
    # Short directory: AF_UNIX paths are limited to 108 bytes.
    directory = tempfile.mkdtemp(prefix="sdn", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield Receiver(sock, path)
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


# ----------------------------------------------------------------- notifier


def test_disabled_without_notify_socket_sends_nothing():
    notifier = Notifier(env={})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.status("x") is False
    assert notifier.watchdog_ping() is False


def test_ready_status_stopping_arrive_on_the_socket(receiver):
    notifier = Notifier(env={"NOTIFY_SOCKET": receiver.address})
    assert notifier.enabled
    assert notifier.ready("starting GNSS") is True
    assert receiver.recv() == "READY=1\nSTATUS=starting GNSS"
    line = status_line(link="online", fix="3D", backlog=0, unit_status="available")
    assert line == "online, fix 3D, backlog 0, status available"
    notifier.status(line)
    assert receiver.recv() == "STATUS=online, fix 3D, backlog 0, status available"
    notifier.stopping()
    assert receiver.recv() == "STOPPING=1"


def test_status_text_cannot_inject_a_second_assignment(receiver):
    notifier = Notifier(receiver.address)
    notifier.status("offline\nREADY=1")
    assert receiver.recv() == "STATUS=offline READY=1"


def test_abstract_socket_with_at_prefix():
    name = f"umps-sdnotify-test-{os.getpid()}-{threading.get_ident()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        assert Notifier("@" + name).watchdog_ping() is True
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_send_to_vanished_socket_is_reported_not_raised(receiver):
    notifier = Notifier(receiver.address)
    receiver.sock.close()
    os.unlink(receiver.address)
    assert notifier.ready() is False
    assert notifier.status("still here") is False


# ------------------------------------------------------------------- checks


def test_heartbeat_fails_when_the_loop_stops_beating():
    clock = FakeClock()
    beat = Heartbeat("core loop", max_age=5, clock=clock)
    assert beat()[0] is True
    clock.advance(4)
    beat.beat()
    clock.advance(4.9)
    assert beat()[0] is True
    clock.advance(0.2)
    ok, detail = beat()
    assert ok is False
    assert "core loop last ticked 5.1 s ago" in detail


def test_heartbeat_rejects_nonpositive_limit():
    with pytest.raises(ValueError, match="max_age"):
        Heartbeat("x", 0)


def test_thread_alive_follows_the_current_thread():
    done = threading.Event()
    worker = threading.Thread(target=done.wait, name="serial-reader")
    current = {"t": None}
    check = thread_alive("serial reader", lambda: current["t"])
    assert check.run() == (False, "serial reader thread not started")
    current["t"] = worker
    worker.start()
    assert check.run()[0] is True
    done.set()
    worker.join(2)
    ok, detail = check.run()
    assert ok is False and "has died" in detail


def test_progress_fails_only_when_pending_work_stalls():
    clock = FakeClock()
    state = {"pending": 0, "done": 0}
    progress = Progress(
        "publish", lambda: state["pending"], lambda: state["done"], max_stall=10, clock=clock
    )
    clock.advance(100)
    assert progress()[0] is True  # nothing pending: idle is healthy
    state["pending"] = 5
    clock.advance(9)
    assert progress()[0] is True
    state["done"] = 1  # progress resets the stall timer
    clock.advance(9)
    assert progress()[0] is True
    clock.advance(9)
    assert progress()[0] is True
    clock.advance(2)
    ok, detail = progress()
    assert ok is False and "no progress for 11.0 s" in detail


def test_check_that_raises_counts_as_unhealthy():
    def broken():
        raise KeyError("gone")

    ok, detail = HealthCheck("broken", broken).run()
    assert ok is False
    assert "KeyError" in detail


# ----------------------------------------------------------------- watchdog


def test_watchdog_interval_is_half_watchdog_usec():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None


def test_disabled_watchdog_does_not_start_a_thread():
    dog = Watchdog(Notifier(env={}), [], env={})
    assert not dog.enabled
    dog.start()
    assert dog._thread is None
    dog.stop()


def test_check_once_pings_only_when_every_check_passes(receiver):
    clock = FakeClock()
    beat = Heartbeat("core loop", 2, clock=clock)
    serial_ok = {"ok": True}
    dog = Watchdog(
        Notifier(receiver.address),
        [beat.check(), HealthCheck("serial reader", lambda: (serial_ok["ok"], "state"))],
        interval=1,
        clock=clock,
    )
    assert dog.check_once().healthy
    assert receiver.recv() == "WATCHDOG=1"

    serial_ok["ok"] = False
    verdict = dog.check_once()
    assert not verdict.healthy
    assert verdict.failures == (("serial reader", "state"),)
    status = receiver.recv()
    assert status.startswith("STATUS=unhealthy, watchdog pings withheld: serial reader")
    assert receiver.recv(0.2) is None  # no ping in that round

    serial_ok["ok"] = True
    clock.advance(3)  # the core loop has not ticked for 3 s
    assert not dog.check_once().healthy
    assert receiver.recv(0.2) is None  # still no ping (no new status: same unhealthy state)

    beat.beat()
    assert dog.check_once().healthy
    assert receiver.recv() == "WATCHDOG=1"
    assert dog.pings == 2


def test_pings_stop_when_a_loop_hangs_and_resume_when_it_runs_again(receiver):
    heartbeat = Heartbeat("core loop", max_age=1.0)
    hang = threading.Event()
    release = threading.Event()
    stop = threading.Event()

    def core_loop():
        while not stop.is_set():
            heartbeat.beat()
            if hang.is_set():
                release.wait(10)  # the "hung" loop: blocked, not beating
                hang.clear()
            stop.wait(0.01)

    worker = threading.Thread(target=core_loop, daemon=True)
    worker.start()
    dog = Watchdog(Notifier(receiver.address), [heartbeat.check()], interval=0.05)
    dog.start()
    try:
        # Healthy: pings keep coming.
        for _ in range(3):
            assert receiver.recv(2.0) == "WATCHDOG=1"

        hang.set()
        seen = receiver.wait_for(lambda m: m.startswith("STATUS=unhealthy"), timeout=3)
        assert "core loop last ticked" in seen[-1]
        # Several intervals without a single ping while the loop is stuck.
        assert receiver.recv(0.3) is None

        release.set()
        assert receiver.wait_for(lambda m: m == "WATCHDOG=1", timeout=3)[-1] == "WATCHDOG=1"
        assert receiver.recv(2.0) == "WATCHDOG=1"
    finally:
        stop.set()
        release.set()
        dog.stop()
        worker.join(2)
    assert not worker.is_alive()


def test_a_check_that_blocks_stops_the_pings(receiver):
    blocked = threading.Event()
    unblock = threading.Event()

    def serial_reader_probe():
        if blocked.is_set():
            unblock.wait(10)
        return True, "reader answered"

    dog = Watchdog(Notifier(receiver.address), [HealthCheck("serial reader", serial_reader_probe)], interval=0.05)
    dog.start()
    try:
        assert receiver.recv(2.0) == "WATCHDOG=1"
        blocked.set()
        # At most the ping of the round in progress, then silence.
        late = 0
        while receiver.recv(0.3) is not None:
            late += 1
            assert late <= 2, "pings continue while the check is blocked"
        with pytest.raises(RuntimeError, match="did not stop"):
            dog.stop(timeout=0.2)
    finally:
        unblock.set()
    dog.stop(timeout=2)


def test_watchdog_in_a_child_process_takes_its_interval_from_the_environment(receiver):
    """The way systemd runs it: NOTIFY_SOCKET and WATCHDOG_USEC in the environment."""
    script = textwrap.dedent(
        """
        import threading
        from agent.adapters.sdnotify import Heartbeat, Notifier, Watchdog
        beat = Heartbeat("core loop", max_age=5)
        notifier = Notifier()
        dog = Watchdog(notifier, [beat.check()])
        assert dog.interval == 0.1, dog.interval
        notifier.ready("up")
        dog.start()
        threading.Event().wait(0.35)
        dog.stop()
        notifier.stopping()
        """
    )
    env = dict(os.environ, NOTIFY_SOCKET=receiver.address, WATCHDOG_USEC="200000", PYTHONPATH=str(REPO))
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO)
    try:
        assert receiver.recv(10) == "READY=1\nSTATUS=up"
        seen = receiver.wait_for(lambda m: m == "STOPPING=1", timeout=10)
        assert seen.count("WATCHDOG=1") >= 2
    finally:
        assert proc.wait(10) == 0
