"""The one poll helper of the rig, the bench and the tests.

Most waits have an event to block on (a recorder's condition, a pin's
history); ``poll_until`` is for the few that do not: another process, a port
that starts to listen, a file the agent writes, a counter. It checks the
predicate, sleeps ``interval`` and tries again until ``timeout``, and says
whether the predicate came true. Callers decide what a timeout means (the
tests fail, the rig raises, the bench counts a miss).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def poll_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """True as soon as ``predicate()`` is truthy; False once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
