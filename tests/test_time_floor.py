"""The floor of authenticated time: what proves the time, how requests are judged by it, and its file.

The rules are pure (agent.core.time_floor) and tested with fixed times; the store
(agent.adapters.time_floor_store) with a real state directory, including one that takes no
writes; UnitTime (agent.adapters.clock) with a fake system clock.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import pytest

from agent.adapters.clock import CLOCK_ENV, SystemClock, UnitTime
from agent.adapters.time_floor_store import FILE_NAME, STORE_EVERY_S, TimeFloorStore
from agent.core.time_floor import EPOCH, TRUST_SKEW, Expiry, TimeFloor, UnitClock, lifetime_problem
from agent.core.unit import Now
from tests.support.disk import fill, small_tmpfs

UTC = dt.timezone.utc
T = dt.datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)


def sec(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


# -------------------------------------------------------------- the floor


def test_the_floor_is_carried_forward_and_only_a_later_proof_raises_it():
    floor = TimeFloor()
    assert floor.at(10.0) is None
    assert floor.prove(T, 10.0)
    assert floor.at(70.0) == T + sec(60)  # a minute of monotonic time has certainly passed
    assert not floor.prove(T + sec(30), 70.0)  # older than what is already proven
    assert floor.prove(T + sec(90), 70.0)
    assert floor.at(80.0) == T + sec(100)


def test_a_proof_beyond_the_trusted_clock_is_a_fast_senders_clock_and_proves_nothing():
    floor = TimeFloor(T, 0.0)
    assert not floor.prove(T + TRUST_SKEW + sec(1), 0.0, trusted_now=T)
    assert floor.prove(T + TRUST_SKEW, 0.0, trusted_now=T)


def test_the_trusted_clock_wins_over_a_floor_raised_too_far():
    floor = TimeFloor()
    floor.prove(T + dt.timedelta(days=2), 0.0)  # a sender two days fast, while the unit had no clock
    floor.trust(T, 10.0)  # then GNSS: the floor comes down to it
    assert floor.at(10.0) == T
    floor.trust(T - sec(60), 20.0)  # within the skew, a trusted reading never lowers it
    assert floor.at(20.0) == T + sec(10)
    floor.trust(T + HOUR, 30.0)
    assert floor.at(30.0) == T + HOUR


def test_the_stored_floor_reads_back_as_a_floor_at_the_next_start():
    floor = TimeFloor(T, 100.0)
    stored = json.loads(json.dumps(floor.stored(160.0)))
    assert stored == {"version": 1, "utc": "2026-11-25T20:01:00Z"}
    again = TimeFloor.from_stored(stored, 5.0)  # monotonic time starts again after a boot
    assert again.at(5.0) == T + sec(60) and again.at(65.0) == T + sec(120)
    assert TimeFloor().stored(1.0) is None


@pytest.mark.parametrize("bad", [None, [], {}, {"version": 2, "utc": "2026-11-25T20:00:00Z"},
                                 {"version": 1, "utc": "yesterday"}, {"version": 1, "utc": "2026-11-25T20:00:00"},
                                 {"version": 1, "utc": 7}])
def test_a_malformed_stored_floor_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="time floor"):
        TimeFloor.from_stored(bad, 0.0)


# ---------------------------------------------------------------- judging


def test_a_trusted_clock_judges_as_always():
    clock = UnitClock(T)
    assert clock.judge(T + sec(60), HOUR, "a call") == (Expiry.VALID, None)
    verdict, reason = clock.judge(T, HOUR, "a call")
    assert verdict is Expiry.REFUSED and reason.startswith("expired at 2026-11-25T20:00:00Z")
    verdict, reason = clock.judge(T + 2 * HOUR, HOUR, "a call")
    assert verdict is Expiry.REFUSED and "a call may be valid for at most 1 h" in reason
    assert clock.proven == T


def test_without_a_trusted_clock_only_the_floor_refuses():
    clock = UnitClock(T + dt.timedelta(days=4000), trusted=False, floor=T)  # the system clock is years off
    verdict, reason = clock.judge(T - sec(1), HOUR, "a call")
    assert verdict is Expiry.REFUSED and "proof that it is at least 2026-11-25T20:00:00Z" in reason
    assert clock.judge(T + sec(1), HOUR, "a call") == (Expiry.UNJUDGED, None)
    # Nothing about its lifetime can be said without a clock: the floor may lag by days.
    assert clock.judge(T + dt.timedelta(days=3), HOUR, "a call") == (Expiry.UNJUDGED, None)
    # The replay memory forgets only what is proven expired, never by the wrong system clock.
    assert clock.proven == T
    assert UnitClock(T, trusted=False).proven == EPOCH


def test_issued_and_expires_are_checked_against_each_other_without_a_clock():
    assert lifetime_problem(T, T + HOUR, HOUR, "a call") is None
    assert lifetime_problem(T + sec(1), T, HOUR, "a call") == "is after expires (2026-11-25T20:00:00Z)"
    assert lifetime_problem(T, T + HOUR + sec(1), HOUR, "a call") == "a call may be valid for at most 1 h from issued to expires"


# ------------------------------------------------------------------ store


def test_the_store_keeps_the_floor_across_a_restart(tmp_path):
    store = TimeFloorStore(tmp_path, 0.0)
    assert store.prove(T, 0.0)
    assert store.save(30.0)
    again = TimeFloorStore(tmp_path, 7.0)
    assert again.at(7.0) == T + sec(30)
    assert (os.stat(tmp_path / FILE_NAME).st_mode & 0o777) == 0o600


def test_the_store_writes_rarely_and_when_corrected_down(tmp_path):
    store = TimeFloorStore(tmp_path, 0.0)
    store.trust(T, 0.0)
    store.maybe_save(0.0)
    path = tmp_path / FILE_NAME
    first = path.read_text()
    store.maybe_save(STORE_EVERY_S - 1)
    assert path.read_text() == first  # the floor moved, but not enough to wear the card for it
    store.maybe_save(STORE_EVERY_S)
    assert json.loads(path.read_text())["utc"] == "2026-11-25T20:10:00Z"
    store.prove(T + dt.timedelta(days=1), STORE_EVERY_S)  # a fast sender, no trusted clock at that moment
    store.maybe_save(STORE_EVERY_S)
    store.trust(T + sec(STORE_EVERY_S + 1), STORE_EVERY_S + 1)  # GNSS corrects it down: stored at once
    store.maybe_save(STORE_EVERY_S + 1)
    assert json.loads(path.read_text())["utc"] == "2026-11-25T20:10:01Z"


def test_a_full_card_keeps_the_floor_in_memory_and_stores_it_once_there_is_room(tmp_path):
    with small_tmpfs(tmp_path / "card", "64k") as card:
        store = TimeFloorStore(card, 0.0)
        store.prove(T, 0.0)
        filler = fill(card)
        assert store.save(10.0) is False and store.write_failures == 1
        assert store.at(10.0) == T + sec(10)  # still judged by it
        assert not (card / FILE_NAME).exists()
        filler.unlink()
        assert store.save(20.0) and store.write_failures == 0
        assert TimeFloorStore(card, 0.0).at(0.0) == T + sec(20)


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe", b'{"version": 1, "utc": "soon"}'])
def test_a_damaged_file_is_set_aside_and_the_unit_starts_without_a_floor(tmp_path, content):
    (tmp_path / FILE_NAME).write_bytes(content)
    store = TimeFloorStore(tmp_path, 0.0)
    assert store.at(0.0) is None
    assert (tmp_path / (FILE_NAME + ".bad")).read_bytes() == content
    assert not (tmp_path / FILE_NAME).exists()


# ---------------------------------------------------------------- UnitTime


class FixedClock:
    def __init__(self, synced: bool, wall: dt.datetime = T):
        self._synced, self.wall = synced, wall

    def utc(self) -> dt.datetime:
        return self.wall

    def synced(self) -> bool:
        return self._synced


def test_every_trusted_reading_feeds_the_floor_and_requests_are_judged_by_it(tmp_path):
    floor = TimeFloorStore(tmp_path, time.monotonic())
    clock = UnitTime(FixedClock(synced=False, wall=T + dt.timedelta(days=3000)), floor)
    judged = clock.judging_clock()
    assert (judged.trusted, judged.floor) == (False, None)
    clock.gnss_offset = T.timestamp() - time.monotonic()  # a fix: the receiver's UTC
    judged = clock.judging_clock()
    assert judged.trusted and abs((judged.now - T).total_seconds()) < 5
    clock.gnss_offset = None  # the receiver is gone, and the clock was never synchronised
    judged = clock.judging_clock()
    assert not judged.trusted and judged.floor is not None and abs((judged.floor - T).total_seconds()) < 5
    synced = UnitTime(FixedClock(synced=True), floor)
    assert synced.best_time(Now(time.monotonic(), T, True)) == (T, "system")


def test_the_environment_can_take_the_clock_as_never_synchronised(monkeypatch):
    # What a unit booted without NTP sees, on a machine whose clock is set (the rig's cold boots).
    def kernel_says_synced(_buf) -> int:
        return 0  # TIME_OK

    monkeypatch.delenv(CLOCK_ENV, raising=False)
    clock = SystemClock()
    clock._adjtimex = kernel_says_synced
    assert clock.synced() is True
    monkeypatch.setenv(CLOCK_ENV, "unsynchronised")
    cold = SystemClock()
    cold._adjtimex = kernel_says_synced
    assert cold.synced() is False
