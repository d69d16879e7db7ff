"""The one wait helper of the rig, the bench and the tests, for a condition with no event to wait on.

Most waits have an event to block on (a recorder's condition, a pin's
history, a process's READY=1); ``poll_until`` is for the few that do not:
another process, a port that starts to listen, a file the agent writes, a
counter. It checks the predicate, sleeps ``interval`` and tries again until
``timeout``, and says whether the predicate came true. ``wait_until`` is the
same wait where a timeout is a failure: it raises :class:`WaitTimeout`, an
``AssertionError`` that says what was awaited, so a test fails with it and
the rig and the bench report it like any other error.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class WaitTimeout(AssertionError):
    """A condition did not come true in time."""


def poll_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """True as soon as ``predicate()`` is truthy; False once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def wait_until(predicate: Callable[[], object], timeout: float, what: str = "", interval: float = 0.02) -> None:
    """Return as soon as ``predicate()`` is truthy; raise :class:`WaitTimeout` after ``timeout`` s."""
    if not poll_until(predicate, timeout, interval):
        raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what or predicate}")
