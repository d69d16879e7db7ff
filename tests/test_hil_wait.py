"""The one wait helper: true as soon as the predicate is, false (or a clear failure) at the deadline."""

from __future__ import annotations

import itertools
import time

from hil.wait import poll_until


def test_true_as_soon_as_the_predicate_is() -> None:
    calls = itertools.count(1)
    assert poll_until(lambda: next(calls) >= 3, 5.0, interval=0.001)
    assert next(calls) == 4  # checked three times, no more


def test_false_once_the_deadline_has_passed() -> None:
    started = time.monotonic()
    assert poll_until(lambda: False, 0.2, interval=0.01) is False
    assert time.monotonic() - started >= 0.2


def test_wait_until_returns_at_once_or_fails_saying_what_it_waited_for() -> None:
    from hil.wait import WaitTimeout, wait_until

    wait_until(lambda: True, 0.0)
    try:
        wait_until(lambda: False, 0.05, "the broker's port", interval=0.01)
    except WaitTimeout as exc:
        assert isinstance(exc, AssertionError)  # a test fails with it
        assert str(exc) == "timed out after 0.05 s waiting for the broker's port"
    else:
        raise AssertionError("no timeout")
