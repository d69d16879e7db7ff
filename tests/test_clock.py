"""The unit's time as every part of the agent reads it (agent.adapters.clock.UnitTime)."""

import datetime as dt
import time

from agent.adapters.clock import UnitTime
from agent.core.unit import Now

WALL = dt.datetime(2026, 5, 1, 10, 0, 0, tzinfo=dt.timezone.utc)


class FixedClock:
    def __init__(self, synced: bool):
        self._synced = synced

    def utc(self) -> dt.datetime:
        return WALL

    def synced(self) -> bool:
        return self._synced


def test_a_synchronised_system_clock_is_the_best():
    clock = UnitTime(FixedClock(synced=True))
    clock.gnss_offset = 1000.0
    assert clock.best_time() == (WALL, "system")
    assert clock.stamp() == {"ts": "2026-05-01T10:00:00.000Z", "time_source": "system"}


def test_unsynchronised_the_receiver_time_is_carried_on_the_monotonic_clock():
    clock = UnitTime(FixedClock(synced=False))
    assert clock.stamp() == {"ts": "2026-05-01T10:00:00.000Z", "time_source": "system_unsynced"}
    clock.gnss_offset = WALL.timestamp() + 3600.0 - 50.0  # the receiver says an hour later
    assert clock.best_time(Now(50.25, WALL, False)) == (WALL + dt.timedelta(hours=1, milliseconds=250), "gnss")


def test_now_is_the_monotonic_time_and_the_system_clock():
    clock = UnitTime(FixedClock(synced=False))
    before = time.monotonic()
    now = clock.now()
    assert before <= now.mono <= time.monotonic()
    assert (now.wall, now.wall_synced) == (WALL, False)
