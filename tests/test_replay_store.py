"""The durable replay memory (agent.adapters.replay_store): survives reopening, bounded, pruned."""

from __future__ import annotations

import datetime as dt
import sqlite3

from agent.adapters.replay_store import CACHE_KIB, FILE_NAME, ReplayStore

NOW = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.timezone.utc)


def later(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def test_an_accepted_id_survives_a_reopen_until_it_expires(tmp_path) -> None:
    store = ReplayStore(tmp_path)
    assert not store.seen("cmd:c1")
    assert store.remember("cmd:c1", later(60), NOW)
    store.close()
    reopened = ReplayStore(tmp_path)  # what a restart does
    assert reopened.seen("cmd:c1") and not reopened.seen("cmd:c2")
    assert reopened.prune(later(59)) == 0 and reopened.seen("cmd:c1")
    assert reopened.prune(later(60)) == 1 and not reopened.seen("cmd:c1")
    assert (tmp_path / FILE_NAME).stat().st_mode & 0o777 == 0o600


def test_it_is_bounded_and_refuses_rather_than_forgets(tmp_path) -> None:
    store = ReplayStore(tmp_path, capacity=3)
    for i in range(3):
        assert store.remember(f"k{i}", later(10 + i), NOW)
    assert not store.remember("k3", later(100), NOW)
    assert store.refused_full == 1 and all(store.seen(f"k{i}") for i in range(3))
    # Once the oldest expires it is pruned and there is room again.
    assert store.remember("k3", later(100), later(10))
    assert not store.seen("k0") and store.seen("k3") and len(store) == 3


def test_no_expiry_is_kept_a_day(tmp_path) -> None:
    store = ReplayStore(tmp_path)
    store.remember("cmd:unsigned", None, NOW)
    store.prune(later(24 * 3600 - 1))
    assert store.seen("cmd:unsigned")
    store.prune(later(24 * 3600))
    assert not store.seen("cmd:unsigned")


def test_a_damaged_file_is_set_aside_and_the_unit_keeps_working(tmp_path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"this is not a database" * 100)
    store = ReplayStore(tmp_path)
    assert (tmp_path / (FILE_NAME + ".bad")).exists()
    assert store.remember("cmd:c1", later(60), NOW) and store.seen("cmd:c1")


def test_what_is_remembered_is_on_disk_before_remember_returns(tmp_path) -> None:
    store = ReplayStore(tmp_path, exclusive=False)
    store.remember("call:abc", later(60), NOW)
    # Another connection (another process after a crash) sees it without any close or commit.
    other = sqlite3.connect(tmp_path / FILE_NAME)
    assert other.execute("SELECT key FROM accepted").fetchall() == [("call:abc",)]
    other.close()


def test_its_sqlite_page_cache_is_bounded_below_the_default(tmp_path) -> None:
    store = ReplayStore(tmp_path)
    assert store._db.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    assert 0 < CACHE_KIB < 2000
    store.close()
