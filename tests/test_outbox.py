"""The outbox's store: lanes, batching, bounds, disk full, the crash window, formats and migration.

The payload encodings are tested in test_outbox_codec.py, the seq reservation in
test_seq_reservation.py."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.adapters.outbox import CACHE_KIB, DB_NAME, FORMAT_VERSION, Outbox, stored_records
from agent.adapters.outbox_codec import DICT_V1, ENC_BATCH_V1, ENC_RAW
from agent.core.publish import Lane, Publish
from tests.support.disk import fill, small_tmpfs
from tests.support.reports import realistic_report


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def report(seq: int, lane: Lane = Lane.LIVE) -> Publish:
    return Publish("telemetry", json.dumps({"seq": seq}).encode(), lane, seq=seq)


def status(name: str) -> Publish:
    return Publish("status", json.dumps({"status": name}).encode(), Lane.STATUS, retain=True)


def rows_on_disk(state_dir: Path) -> list[tuple[int, int, str, int | None]]:
    """The records in the database, read from another connection: what a restart would see."""
    return [(r.id, r.lane, r.topic, r.seq) for r in stored_records(state_dir)]


def row_count(state_dir: Path) -> int:
    db = sqlite3.connect(state_dir / DB_NAME)
    try:
        return db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    finally:
        db.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_status_is_on_disk_when_put_returns(tmp_path: Path, clock: FakeClock) -> None:
    box = Outbox(tmp_path, clock=clock)
    box.put(status("en_route"))
    assert [(lane, topic) for _, lane, topic, _ in rows_on_disk(tmp_path)] == [(Lane.STATUS, "status")]
    box.close()


def test_live_report_acked_before_the_batch_never_touches_disk(tmp_path: Path, clock: FakeClock) -> None:
    box = Outbox(tmp_path, commit_interval_s=10, clock=clock)
    for seq in range(box.next_seq(), box.next_seq() + 100):
        box.put(report(seq))
        (rec,) = box.take(Lane.LIVE, 10)
        box.ack(rec.id)
        clock.now += 1.0
        box.maybe_commit()
    stats = box.stats()
    assert stats.records_written == 0
    assert rows_on_disk(tmp_path) == []
    assert stats.pending == {"emergency": 0, "status": 0, "live": 0, "backlog": 0}
    box.close()


def test_unacked_telemetry_is_committed_in_batches_not_per_report(tmp_path: Path, clock: FakeClock) -> None:
    box = Outbox(tmp_path, commit_interval_s=10, clock=clock)
    commits_before = box.stats().commits
    first = box.next_seq()
    for seq in range(first, first + 25):
        box.put(report(seq))
        clock.now += 1.0
        box.maybe_commit()
    on_disk = [seq for _, _, _, seq in rows_on_disk(tmp_path)]
    # Two batches (at 10 s and 20 s); the last 5 reports are still in memory.
    assert box.stats().commits - commits_before == 2
    assert on_disk == list(range(first, first + 20))
    box.close()
    assert [seq for _, _, _, seq in rows_on_disk(tmp_path)] == list(range(first, first + 25))


def test_lanes_are_taken_in_order_and_a_newer_live_report_demotes_the_older(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.put(report(1))
    box.put(report(2))  # supersedes 1 before it could be sent
    box.put(status("busy"))
    box.put(Publish("alarm", b'{"active": true}', Lane.EMERGENCY, retain=True))
    assert box.pending() == {Lane.EMERGENCY: 1, Lane.STATUS: 1, Lane.LIVE: 1, Lane.BACKLOG: 1}
    assert [r.topic for r in box.take(Lane.EMERGENCY, 10)] == ["alarm"]
    assert [r.seq for r in box.take(Lane.LIVE, 10)] == [2]
    assert [r.seq for r in box.take(Lane.BACKLOG, 10)] == [1]
    box.close()


def test_backlog_drains_oldest_first_across_disk_memory_and_resends(tmp_path: Path, clock: FakeClock) -> None:
    box = Outbox(tmp_path, commit_interval_s=10, clock=clock)
    for seq in range(1, 31):
        box.put(report(seq, Lane.BACKLOG))
        if seq == 20:
            box.commit()  # 1..20 on disk, 21..30 in memory
    first = box.take(Lane.BACKLOG, 8)
    assert [r.seq for r in first] == list(range(1, 9))
    for rec in first[:4]:
        box.ack(rec.id)
    for rec in first[4:]:
        box.nack(rec.id)  # link lost: they go back, in order
    rest = box.take(Lane.BACKLOG, 100)
    assert [r.seq for r in rest] == list(range(5, 31))
    for rec in rest:
        box.ack(rec.id)
    box.commit()
    assert box.pending()[Lane.BACKLOG] == 0
    assert rows_on_disk(tmp_path) == []
    box.close()


def test_a_lost_live_report_is_resent_as_backlog(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.put(report(7))
    (rec,) = box.take(Lane.LIVE, 1)
    box.nack(rec.id)
    assert box.take(Lane.LIVE, 1) == []
    assert [(r.seq, r.lane) for r in box.take(Lane.BACKLOG, 5)] == [(7, Lane.BACKLOG)]
    box.close()


def test_committed_records_survive_a_kill_and_drain_in_order(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import os, signal, json
        from agent.adapters.outbox import Outbox
        from agent.core.publish import Lane, Publish
        box = Outbox({str(tmp_path)!r}, commit_interval_s=3600)
        for seq in range(1, 21):
            box.put(Publish("telemetry", json.dumps({{"seq": seq}}).encode(), Lane.BACKLOG, seq=seq))
        box.put(Publish("status", b'{{"status": "busy"}}', Lane.STATUS, retain=True))
        box.commit()
        for seq in range(21, 24):  # never committed: lost, by design
            box.put(Publish("telemetry", b"{{}}", Lane.BACKLOG, seq=seq))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], timeout=30)
    assert proc.returncode == -9
    box = Outbox(tmp_path)
    assert box.pending()[Lane.STATUS] == 1
    assert [r.seq for r in box.take(Lane.BACKLOG, 100)] == list(range(1, 21))
    assert box.next_seq() >= 24
    box.close()


def test_full_outbox_drops_oldest_backlog_never_status(tmp_path: Path, clock: FakeClock) -> None:
    box = Outbox(tmp_path, max_backlog_reports=50, commit_interval_s=10, clock=clock)
    for i in range(5):
        box.put(status(f"s{i}"))
    for seq in range(1, 121):
        box.put(report(seq, Lane.BACKLOG))
        clock.now += 1.0
        box.maybe_commit()
    box.commit()
    stats = box.stats()
    kept = [r.seq for r in box.take(Lane.BACKLOG, 1000)]
    # Stored batches are dropped whole, oldest first: what is kept is the newest,
    # contiguous, within one batch (here 30 s offline) of the bound.
    assert 50 - 30 < len(kept) <= 50
    assert kept == list(range(121 - len(kept), 121))
    assert stats.dropped == 120 - len(kept)
    assert stats.pending["status"] == 5
    box.close()


def test_a_damaged_database_is_set_aside_kept_and_a_new_one_started(tmp_path: Path) -> None:
    damaged = b"this is not a database" * 100
    (tmp_path / DB_NAME).write_bytes(damaged)
    box = Outbox(tmp_path)
    assert (tmp_path / (DB_NAME + ".bad")).read_bytes() == damaged  # kept for analysis, never deleted
    box.put(Publish("status", b"{}", Lane.STATUS, retain=True))
    assert box.health() is None and box.stats().disk_ok
    box.close()
    assert [r.topic for r in stored_records(tmp_path)] == ["status"]


# --------------------------------------------------------------- disk full


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs; the test fills it to make the disk full."""
    with small_tmpfs(tmp_path / "tiny", "512k") as mnt:
        yield mnt


def test_disk_full_keeps_records_in_memory_and_recovers(tiny_tmpfs: Path, clock: FakeClock) -> None:
    box = Outbox(tiny_tmpfs, commit_interval_s=10, clock=clock)
    filler = fill(tiny_tmpfs)
    big = b"x" * 4000  # a few of these cannot fit in what is left
    for i in range(30):
        box.put(Publish("status", big, Lane.STATUS, retain=True))  # must not raise
    for seq in range(1, 41):
        box.put(Publish("telemetry", big, Lane.LIVE, seq=seq))
        clock.now += 1.0
        box.maybe_commit()
    stats = box.stats()
    assert stats.disk_errors > 0 and not stats.disk_ok
    assert len(box.take(Lane.STATUS, 100)) == 30
    assert [r.seq for r in box.take(Lane.LIVE, 10)] == [40]
    assert len(box.take(Lane.BACKLOG, 100)) == 39
    filler.unlink()
    box.close()  # room again: everything unacknowledged reaches the disk
    assert box.stats().disk_ok
    box = Outbox(tiny_tmpfs)
    assert box.pending()[Lane.STATUS] == 30 and box.pending()[Lane.BACKLOG] == 40
    box.close()


# ------------------------------------------------ storage format and SD wear


def stored_rows(state_dir: Path) -> list[tuple[int, str, int, int]]:
    """(lane, topic, enc, count, stored length) of each row, read by another connection."""
    db = sqlite3.connect(state_dir / DB_NAME)
    try:
        return db.execute("SELECT lane, topic, enc, count, length(payload) FROM records ORDER BY id").fetchall()
    finally:
        db.close()


def test_telemetry_is_stored_compressed_and_reads_back_byte_identical_after_a_kill(tmp_path: Path) -> None:
    payloads = {
        1: realistic_report(1).payload,
        2: realistic_report(2, note="Zone industrielle — accès nord, véhicule 2 ✓").payload,  # not ASCII
        3: b'{"seq":3}',
        4: os.urandom(300),  # incompressible
        5: realistic_report(5, blob="x" * 5000).payload,  # large
    }
    code = textwrap.dedent(
        f"""
        import os, signal
        from agent.adapters.outbox import Outbox
        from agent.core.publish import Lane, Publish
        payloads = {payloads!r}
        box = Outbox({str(tmp_path)!r}, commit_interval_s=3600)
        for seq, payload in payloads.items():
            box.put(Publish("telemetry", payload, Lane.BACKLOG, seq=seq))
        box.put(Publish("status", b'{{"status":"busy"}}', Lane.STATUS, retain=True))
        box.commit()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], timeout=30)
    assert proc.returncode == -9
    # The commit wrote the status as it is and the telemetry as one deflated batch.
    (status_row, batch_row) = sorted(stored_rows(tmp_path))
    assert status_row == (Lane.STATUS, "status", ENC_RAW, 1, len(b'{"status":"busy"}'))
    assert batch_row[2:4] == (ENC_BATCH_V1, 5)
    assert batch_row[4] < 300 + sum(len(p) for p in payloads.values()) // 4
    box = Outbox(tmp_path)
    assert {r.seq: r.payload for r in box.take(Lane.BACKLOG, 100)} == payloads
    (status_rec,) = box.take(Lane.STATUS, 10)
    assert status_rec.payload == b'{"status":"busy"}'
    box.close()


def test_a_batch_of_consecutive_reports_takes_a_fraction_of_their_json(tmp_path: Path, clock: FakeClock) -> None:
    box = Outbox(tmp_path, commit_interval_s=30, clock=clock)
    reports = [realistic_report(seq) for seq in range(1, 31)]
    for rep in reports:
        box.put(rep)
        clock.now += 1.0
        box.maybe_commit()
    [(_, _, enc, count, length)] = stored_rows(tmp_path)
    assert (enc, count) == (ENC_BATCH_V1, 30)
    # ~350 bytes of JSON a report; ~95 deflated alone; together, under 45 each.
    assert length < 45 * 30 < sum(len(r.payload) for r in reports) // 7
    box.close()


OLD_SCHEMA = """
CREATE TABLE records (id INTEGER PRIMARY KEY, lane INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,
                      qos INTEGER NOT NULL, retain INTEGER NOT NULL, seq INTEGER);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""


def test_a_store_of_the_first_format_is_migrated_in_place(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(OLD_SCHEMA)
    old = [realistic_report(seq).payload for seq in (40, 41)]
    db.executemany("INSERT INTO records VALUES (?, ?, 'telemetry', ?, 1, 0, ?)",
                   [(1, int(Lane.BACKLOG), old[0], 40), (2, int(Lane.BACKLOG), old[1], 41)])
    db.execute("INSERT INTO records VALUES (3, ?, 'status', ?, 1, 1, NULL)", (int(Lane.STATUS), b'{"status":"busy"}'))
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("clean", 1), ("seq_next", 42), ("seq_reserved", 100)])
    db.commit()
    db.close()
    box = Outbox(tmp_path)
    assert box.next_seq() == 42
    assert box.pending()[Lane.STATUS] == 1
    box.put(realistic_report(42))
    box.commit()
    assert [r.payload for r in box.take(Lane.BACKLOG, 10)] == old + [realistic_report(42).payload]
    box.close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
    assert db.execute("SELECT enc, count FROM records ORDER BY id").fetchall() == [
        (ENC_RAW, 1), (ENC_RAW, 1), (ENC_RAW, 1), (ENC_BATCH_V1, 1)]
    db.close()


def test_a_store_of_a_newer_format_is_left_alone_and_the_outbox_runs_in_memory(tmp_path: Path) -> None:
    Outbox(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute(f"PRAGMA user_version={FORMAT_VERSION + 1}")
    db.close()
    before = (tmp_path / DB_NAME).read_bytes()
    box = Outbox(tmp_path)  # a downgraded agent: it must not misread the store, nor stop the unit
    assert "newer agent" in (box.health() or "")
    box.put(Publish("status", b"{}", Lane.STATUS, retain=True))
    assert [r.topic for r in box.take(Lane.STATUS, 10)] == ["status"]
    box.close()
    assert (tmp_path / DB_NAME).read_bytes() == before


def test_an_unreadable_stored_report_is_dropped_and_the_rest_drain_in_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for seq in range(1, 7):
        box.put(realistic_report(seq))
        if seq % 2 == 0:
            box.commit()  # rows of two reports: 1-2, 3-4, 5-6
    box.close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("UPDATE records SET payload = x'deadbeef' WHERE seq = 3")
    db.commit()
    db.close()
    box = Outbox(tmp_path)
    assert [r.seq for r in box.take(Lane.BACKLOG, 10)] == [1, 2, 5, 6]
    assert box.stats().dropped == 2
    box.close()
    assert [seq for _, _, _, seq in rows_on_disk(tmp_path)] == [1, 2, 5, 6]


def test_offline_telemetry_is_committed_every_30_s_status_still_at_once(tmp_path: Path, clock: FakeClock) -> None:
    box = Outbox(tmp_path, commit_interval_s=10, clock=clock)
    seq = box.next_seq()
    acked_seqs: set[int] = set()

    def second(*, acked: bool) -> None:
        nonlocal seq
        box.put(realistic_report(seq, Lane.LIVE))
        seq += 1
        if acked:  # every other report is acknowledged: some are left to commit
            for rec in box.take(Lane.LIVE, 10):
                if seq % 2:
                    box.ack(rec.id)
                    acked_seqs.add(rec.seq)
                else:
                    box.nack(rec.id)
        clock.now += 1.0
        box.maybe_commit()

    commits = box.stats().commits
    for _ in range(60):  # link up
        second(acked=True)
    assert box.stats().commits - commits == 6  # every 10 s
    commits = box.stats().commits
    for _ in range(30):  # link lost: every 10 s until nothing was acknowledged for 30 s
        second(acked=False)
    assert box.stats().commits - commits == 2  # 10 and 20 s after the last batch; then offline
    commits = box.stats().commits
    for i in range(120):  # offline: every 30 s
        second(acked=False)
        if i == 45:
            box.put(status("busy"))
            assert ("status", None) in [(topic, s) for _, _, topic, s in rows_on_disk(tmp_path)]
    assert box.stats().commits - commits == 4 + 1  # + the status, at once
    on_disk = {s for *_, s in rows_on_disk(tmp_path)}
    at_risk = [s for s in range(box.next_seq(), seq) if s not in on_disk and s not in acked_seqs]
    assert 0 < len(at_risk) <= 30  # what a power cut now would lose: at most 30 s of reports
    commits = box.stats().commits
    for _ in range(20):  # link back: every 10 s again
        second(acked=True)
    assert box.stats().commits - commits == 2
    box.close()


def test_exclusive_store_keeps_the_wal_index_off_the_sd_card_and_still_reopens(tmp_path: Path, clock: FakeClock) -> None:
    box = Outbox(tmp_path, exclusive=True, clock=clock)
    box.put(Publish("status", b'{"status": "busy"}', Lane.STATUS))
    for seq in range(1, 30):
        box.put(Publish("telemetry", json.dumps({"seq": seq}).encode(), Lane.BACKLOG, seq=seq))
    clock.now += 11
    assert box.maybe_commit()
    assert not (tmp_path / f"{DB_NAME}-shm").exists(), "the WAL index went to a file"
    box.close()
    again = Outbox(tmp_path, exclusive=True, clock=clock)
    assert again.pending()[Lane.STATUS] == 1 and again.pending()[Lane.BACKLOG] == 29
    again.close()


def test_a_live_report_just_sent_is_left_to_its_ack_not_written(tmp_path: Path, clock: FakeClock) -> None:
    box = Outbox(tmp_path, clock=clock)
    clock.now += 10.5  # the batch is due...
    box.put(report(1))
    [rec] = box.take(Lane.LIVE, 10)  # ...as a report goes out: it waits for its PUBACK, not for the disk
    box.maybe_commit()
    assert rows_on_disk(tmp_path) == []
    box.ack(rec.id)
    # One whose PUBACK never comes is written once it is no longer young.
    box.put(report(2))
    box.take(Lane.LIVE, 10)
    clock.now += 10.5
    box.maybe_commit()
    assert [row[3] for row in rows_on_disk(tmp_path)] == [2]
    box.close()


def committed_backlog(state_dir: Path, seqs: range) -> Outbox:
    """An outbox whose backlog ``seqs`` were committed together: one batch row."""
    box = Outbox(state_dir)
    for seq in seqs:
        box.put(report(seq, Lane.BACKLOG))
    box.commit()
    assert row_count(state_dir) == 1
    return box


def test_a_batch_row_drains_in_small_takes_once_each_and_goes_when_all_is_acked(tmp_path: Path) -> None:
    box = committed_backlog(tmp_path, range(1, 26))
    seen = []
    while batch := box.take(Lane.BACKLOG, 4):
        seen += [r.seq for r in batch]
        for rec in batch[:-1]:
            box.ack(rec.id)
        box.nack(batch[-1].id)  # the last of each take is lost once and comes back
        seen.pop()
        again = box.take(Lane.BACKLOG, 1)
        assert [r.seq for r in again] == [batch[-1].seq]
        seen.append(again[0].seq)
        box.ack(again[0].id)
        assert box.pending()[Lane.BACKLOG] == 25 - len(seen)
    assert seen == list(range(1, 26))
    box.commit()
    assert row_count(tmp_path) == 0
    box.close()


def test_a_restart_in_the_middle_of_a_batch_resends_its_acked_reports_and_loses_none(tmp_path: Path) -> None:
    box = committed_backlog(tmp_path, range(1, 11))
    for rec in box.take(Lane.BACKLOG, 6):
        box.ack(rec.id)
    box.close()  # the row still holds 7..10: it stays, whole
    box = Outbox(tmp_path)
    # Acknowledged records of a row not yet deleted are sent again (a QoS 1 duplicate).
    assert [r.seq for r in box.take(Lane.BACKLOG, 100)] == list(range(1, 11))
    box.close()


def test_a_store_of_format_2_is_migrated_and_its_deflated_reports_read(tmp_path: Path) -> None:
    v2 = OLD_SCHEMA.replace("seq INTEGER)", "seq INTEGER, enc INTEGER NOT NULL DEFAULT 0)")
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(v2)
    payload = realistic_report(7).payload
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICT_V1)
    db.execute("INSERT INTO records VALUES (5, ?, 'telemetry', ?, 1, 0, 7, 1)",
               (int(Lane.BACKLOG), packer.compress(payload) + packer.flush()))
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("clean", 1), ("seq_next", 8), ("seq_reserved", 100)])
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    box = Outbox(tmp_path)
    box.put(report(8, Lane.BACKLOG))
    [old] = box.take(Lane.BACKLOG, 1)
    assert (old.seq, old.payload) == (7, payload)
    box.ack(old.id)
    [new] = box.take(Lane.BACKLOG, 1)
    assert new.seq == 8 and new.id > old.id
    box.close()


def test_its_sqlite_page_cache_is_bounded_below_the_default(tmp_path: Path) -> None:
    # SQLite's default cache (2,000 KiB) fills during an outage and is kept for the
    # life of the process: the outbox asks for less on its connection.
    box = Outbox(tmp_path)
    assert box._db is not None
    assert box._db.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    assert 0 < CACHE_KIB < 2000
    box.close()
