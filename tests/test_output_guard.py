"""agent.output_guard: a failing output is counted, logged once per distinct error, and backed off."""

from __future__ import annotations

import errno
import logging

import pytest

from agent.output_guard import MAX_BACKOFF_S, REPEAT_LOG_S, OutputGuard


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def guard(caplog):
    caplog.set_level(logging.INFO, logger="test.guard")
    clock = Clock()
    g = OutputGuard("state file", logging.getLogger("test.guard"), clock)
    g.test_clock = clock  # type: ignore[attr-defined]
    return g


def full_disk(path: str):
    def write() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", path)
    return write


def test_a_working_output_is_ok(guard):
    calls = []
    assert guard.run(calls.append, 1) and calls == [1]
    assert guard.snapshot() == {"state": "ok", "failures": 0, "skipped": 0, "last_error": None}


def test_the_same_error_is_logged_once_then_once_a_minute(guard, caplog):
    clock = guard.test_clock
    for i in range(200):  # one attempt every 0.5 s for 100 s, each on a new temporary file
        guard.run(full_disk(f"/state/.tmp{i}"))
        clock.t += 0.5
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2, [r.getMessage() for r in errors]  # the first (with traceback), one a minute later
    assert errors[0].exc_info is not None and "No space left" in errors[0].getMessage()
    assert "still failing" in errors[1].getMessage()
    snap = guard.snapshot()
    assert snap["state"] == "failing" and snap["failures"] + snap["skipped"] == 200
    # Backed off: at most one attempt per MAX_BACKOFF_S once it keeps failing.
    assert snap["failures"] <= 100 / MAX_BACKOFF_S + 5


def test_a_new_error_is_logged_at_once(guard, caplog):
    clock = guard.test_clock
    guard.run(full_disk("/a"))
    clock.t += MAX_BACKOFF_S
    guard.run(lambda: 1 / 0)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(messages) == 2 and "ZeroDivisionError" in messages[1]
    assert guard.snapshot()["last_error"].startswith("ZeroDivisionError")


def test_back_off_grows_then_recovery_is_logged_and_resets(guard, caplog):
    clock = guard.test_clock
    ran = []

    def broken() -> None:
        ran.append(clock.t)
        raise RuntimeError("display gone")

    for _ in range(400):
        guard.run(broken)
        clock.t += 0.05
    gaps = [b - a for a, b in zip(ran, ran[1:])]
    assert gaps == sorted(gaps) and gaps[0] >= 0.5 - 1e-9 and max(gaps) <= MAX_BACKOFF_S + 0.05 + 1e-9
    clock.t += MAX_BACKOFF_S
    assert guard.run(lambda: None)
    assert guard.snapshot()["state"] == "ok" and guard.snapshot()["failures"] == len(ran)
    assert any("works again" in r.getMessage() for r in caplog.records)
    assert guard.run(lambda: None)  # no back-off once it works again


def test_repeat_interval_is_a_minute():
    assert REPEAT_LOG_S == 60.0
