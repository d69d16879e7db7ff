"""Durable store-and-forward outbox: every message waits here until the broker acknowledges it.

What it is for
--------------
Patrol units drive through tunnels, lose power when the ignition goes off and
ride on cellular links that stall. Every report and status change is handed
to the outbox before it is sent and is deleted only when the broker has
acknowledged it (PUBACK). After a crash or a power cut the outbox holds what
was not acknowledged, and the uplink sends it when the link is back.

How it works
------------
One SQLite database in WAL mode (``<state_dir>/outbox.sqlite3``), one
connection, guarded by one lock (the core thread puts, the uplink's sender
thread takes, acknowledges and commits). Records live in four lanes, sent in
this order: ``EMERGENCY``, ``STATUS`` (status, call responses, config
results), ``LIVE`` (the newest telemetry report), ``BACKLOG`` (telemetry that
could not go out live).

SD card wear decides the write policy. A 1 Hz report must not cost a commit:

* Emergency and status records are inserted and committed at once
  (``synchronous=FULL``: the WAL is fsynced at each commit).
* Telemetry stays in memory and is written in one transaction every
  ``commit_interval_s`` (10 s by default), and only if it is still
  unacknowledged then. A live report acknowledged before that batch never
  touches the disk: with the link up the outbox writes almost nothing.
* Deletions of acknowledged rows ride on the next commit.
* Backlog rows are not kept in memory: the sender reads them oldest-first
  from the database in small batches, so 48 h of reports cost disk, not RAM.

The crash window, honestly
--------------------------
* A status or emergency record handed to ``put`` is on disk (fsynced) when
  ``put`` returns. A kill -9 or a power cut after that loses nothing.
* Telemetry made less than ``commit_interval_s`` before a crash and not yet
  acknowledged is lost (at most ``commit_interval_s * rate`` reports). Its
  ``seq`` numbers are never reused, so the server sees a gap.
* An acknowledged record whose delete was not yet committed is sent again
  after a restart (a duplicate, which QoS 1 allows anyway).

Telemetry ``seq``
-----------------
Contiguous and never reused, across restarts. The outbox persists a
*reservation*: a high-water mark ``seq_block`` ahead of the last seq seen,
committed with the batches and forced to disk before a report crosses it. A
clean ``close()`` stores the exact next seq; after a crash the unit resumes at
the reservation (a gap of at most ``seq_block``, never a reuse).
``next_seq()`` tells the core where to start.

Disk full
---------
``database or disk is full`` and ``OSError`` (ENOSPC, EIO) never stop live
reports: the failure is logged and counted, the failed transaction rolled
back, the records stay in memory (bounded by ``max_memory_reports``, oldest
backlog dropped first) and the next commit tries again. If the state
directory cannot be written at start-up the outbox runs from memory only; seq
then continues from the last reservation that was persisted, so a second
crash before the disk recovers could reuse seq numbers (logged as an error).

Bounds
------
At most ``max_backlog_reports`` telemetry records (default 48 h at 1 Hz).
Beyond it the oldest backlog telemetry is dropped (counted in ``dropped``).
Emergency and status records are never dropped.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from dataclasses import dataclass
from pathlib import Path

from agent.core.publish import Lane, Publish

log = logging.getLogger(__name__)

URGENT_LANES = (Lane.EMERGENCY, Lane.STATUS)
DB_NAME = "outbox.sqlite3"
FIRST_SEQ = 1
# Commit early when this many deletes wait: keeps the open transaction small
# while a long backlog drains.
DELETE_COMMIT_THRESHOLD = 4096
SCAN_BATCH = 512
# Small pages: a 10 s batch of reports rewrites less of its last, half-full page
# (measured by bench/bench_link.py: about half the bytes of 4 KiB pages).
PAGE_SIZE = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    lane INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    seq INTEGER
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""


class OutboxError(RuntimeError):
    """The outbox database exists but cannot be used (not a database, wrong schema)."""


@dataclass(slots=True)
class Record:
    """A message waiting in the outbox (mutable: lane and flags change as it moves)."""

    id: int
    lane: Lane
    topic: str
    payload: bytes
    qos: int
    retain: bool
    seq: int | None
    on_disk: bool = False
    in_flight: bool = False

    @property
    def telemetry(self) -> bool:
        return self.lane >= Lane.LIVE


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: dict[str, int]  # per lane name, including records in flight
    in_flight: int
    dropped: int  # backlog telemetry dropped because the outbox was full
    commits: int
    records_written: int
    bytes_written: int  # logical: topic + payload bytes of inserted rows
    disk_errors: int
    disk_ok: bool
    next_seq: int


class Outbox:
    """The durable outbox. Thread-safe; see the module docstring."""

    def __init__(
        self,
        state_dir: str | Path,
        *,
        max_backlog_reports: int = 172_800,
        commit_interval_s: float = 10.0,
        seq_block: int = 3600,
        max_memory_reports: int = 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_backlog_reports < 1 or max_memory_reports < 1 or seq_block < 2:
            raise ValueError("outbox limits must be positive")
        self._max_backlog = max_backlog_reports
        self._interval = commit_interval_s
        self._seq_block = seq_block
        self._max_memory = max_memory_reports
        self._clock = clock
        self._lock = threading.RLock()
        self._urgent: dict[Lane, dict[int, Record]] = {lane: {} for lane in URGENT_LANES}
        self._live: dict[int, Record] = {}
        self._mem_backlog: dict[int, Record] = {}  # unflushed or in-flight backlog, id order
        self._in_flight: dict[int, Record] = {}
        self._disk_telemetry = 0  # committed telemetry rows (see _disk_telemetry_now)
        self._cursor = 0  # backlog rows with id <= cursor were already scanned
        self._uncommitted_deletes: dict[int, bool] = {}  # id -> is telemetry
        self._pending_inserts: list[Record] = []
        self._txn_telemetry_deletes = 0
        self._unflushed = 0  # telemetry records in memory only (not yet committed)
        self._in_txn = False
        self._last_commit = clock()
        self._dropped = 0
        self._commits = 0
        self._records_written = 0
        self._bytes_written = 0
        self._disk_errors = 0
        self._disk_ok = True
        self._next_id = 1
        self._db: sqlite3.Connection | None = None
        self._path = Path(state_dir) / DB_NAME
        meta = self._open()
        clean = meta.get("clean", 1)
        seq_next = meta.get("seq_next", FIRST_SEQ)
        reserved = meta.get("seq_reserved", FIRST_SEQ)
        # After a crash reports up to the reservation may have been sent: skip them.
        self._first_seq = seq_next if clean else max(seq_next, reserved)
        self._last_seq = self._first_seq - 1
        self._reserved = self._first_seq + seq_block
        self._meta_dirty = True
        if not self._run(self._write_meta, {"clean": 0}, commit=True):
            log.error("outbox: seq reservation could not be persisted; seq may repeat after another crash")

    # ----------------------------------------------------------- opening

    def _open(self) -> dict[str, int]:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            self._disk_failed("open", exc)
            return {}
        try:
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only takes effect on a new file
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            meta = dict(db.execute("SELECT key, value FROM meta"))
            max_id = db.execute("SELECT COALESCE(MAX(id), 0) FROM records").fetchone()[0]
            self._disk_telemetry = db.execute(
                "SELECT COUNT(*) FROM records WHERE lane >= ?", (int(Lane.LIVE),)
            ).fetchone()[0]
            for row in db.execute(
                "SELECT id, lane, topic, payload, qos, retain, seq FROM records WHERE lane < ? ORDER BY id",
                (int(Lane.LIVE),),
            ):
                rec = _row_record(row)
                self._urgent[rec.lane][rec.id] = rec
        except sqlite3.DatabaseError as exc:
            db.close()
            if _is_disk_full(exc):
                self._disk_failed("open", exc)
                return {}
            raise OutboxError(f"outbox database {self._path} is unusable: {exc}") from exc
        self._db = db
        self._next_id = max_id + 1
        if self._disk_telemetry or any(self._urgent.values()):
            log.info(
                "outbox: %d telemetry and %d urgent records waiting from the last run",
                self._disk_telemetry,
                sum(len(d) for d in self._urgent.values()),
            )
        return meta

    # ----------------------------------------------------------- the API

    def set_limits(self, *, max_backlog_reports: int, commit_interval_s: float) -> None:
        """A remote config change of ``[storage]`` limits, taken at the next put or commit."""
        if max_backlog_reports < 1 or commit_interval_s <= 0:
            raise ValueError("outbox limits must be positive")
        with self._lock:
            self._max_backlog = max_backlog_reports
            self._interval = commit_interval_s

    def next_seq(self) -> int:
        """The seq of the first telemetry report of this run."""
        return self._first_seq

    def put(self, publish: Publish) -> Record:
        """Store a message before it is sent. Urgent lanes are on disk when this returns."""
        with self._lock:
            rec = Record(
                id=self._next_id,
                lane=publish.lane,
                topic=publish.topic,
                payload=publish.payload,
                qos=publish.qos,
                retain=publish.retain,
                seq=publish.seq,
            )
            self._next_id += 1
            if rec.seq is not None:
                self._note_seq(rec.seq)
            if rec.lane in URGENT_LANES:
                self._urgent[rec.lane][rec.id] = rec
                self._run(self._insert, [rec], commit=True)
                return rec
            if rec.lane is Lane.LIVE:
                self._demote_live()
                self._live[rec.id] = rec
            else:
                self._mem_backlog[rec.id] = rec
            self._unflushed += 1
            self._enforce_bounds()
            return rec

    def take(self, lane: Lane, limit: int) -> list[Record]:
        """Up to ``limit`` pending records of ``lane``, oldest first, now marked in flight."""
        if limit <= 0:
            return []
        with self._lock:
            if lane in URGENT_LANES:
                recs = [r for r in self._urgent[lane].values() if not r.in_flight][:limit]
            elif lane is Lane.LIVE:
                recs = [r for r in self._live.values() if not r.in_flight][:limit]
            else:
                recs = self._take_backlog(limit)
            for rec in recs:
                rec.in_flight = True
                self._in_flight[rec.id] = rec
            return recs

    def ack(self, record_id: int) -> None:
        """The broker has the record: forget it (the delete rides on the next commit)."""
        with self._lock:
            rec = self._in_flight.pop(record_id, None)
            if rec is None:
                return
            rec.in_flight = False
            self._forget(rec)
            if rec.telemetry and not rec.on_disk:
                self._unflushed -= 1
            if rec.on_disk:
                self._run(self._delete, [(rec.id, rec.telemetry)])

    def nack(self, record_id: int) -> None:
        """The record was not acknowledged (link lost): send it again later.

        A live report that missed its moment becomes backlog.
        """
        with self._lock:
            rec = self._in_flight.pop(record_id, None)
            if rec is None:
                return
            rec.in_flight = False
            if rec.lane is Lane.LIVE:
                self._live.pop(rec.id, None)
                self._to_backlog(rec)
            elif rec.lane is Lane.BACKLOG and rec.id not in self._mem_backlog:
                self._cursor = min(self._cursor, rec.id - 1)

    def demote_live(self) -> int:
        """Move pending (unsent) live reports to the backlog; returns how many."""
        with self._lock:
            return self._demote_live()

    def maybe_commit(self) -> bool:
        """Commit if the batch interval has passed or many deletes wait. True if it committed."""
        with self._lock:
            due = self._clock() - self._last_commit >= self._interval
            if due or len(self._uncommitted_deletes) >= DELETE_COMMIT_THRESHOLD:
                return self.commit()
            return False

    def commit(self) -> bool:
        """Write unacknowledged records and pending deletes now. False if the disk refused."""
        with self._lock:
            self._last_commit = self._clock()
            # The memory bound waits: this commit may move everything to disk.
            self._enforce_bounds(flush_first=False, memory=False)
            unflushed = [r for r in self._memory_records() if not r.on_disk]
            if self._reserved - self._last_seq < self._seq_block // 2:
                self._reserved = self._last_seq + 1 + self._seq_block
                self._meta_dirty = True
            if not unflushed and not self._in_txn and not self._meta_dirty:
                return True
            ok = self._run(self._flush, unflushed, commit=True)
            if ok:
                self._evict_flushed_backlog()
            else:
                self._enforce_bounds(flush_first=False)
            return ok

    def pending(self) -> dict[Lane, int]:
        """Records waiting per lane (in flight included)."""
        with self._lock:
            telemetry = self._disk_telemetry_now + self._unflushed
            return {
                Lane.EMERGENCY: len(self._urgent[Lane.EMERGENCY]),
                Lane.STATUS: len(self._urgent[Lane.STATUS]),
                Lane.LIVE: len(self._live),
                Lane.BACKLOG: telemetry - len(self._live),
            }

    def stats(self) -> OutboxStats:
        with self._lock:
            return OutboxStats(
                pending={lane.name.lower(): n for lane, n in self.pending().items()},
                in_flight=len(self._in_flight),
                dropped=self._dropped,
                commits=self._commits,
                records_written=self._records_written,
                bytes_written=self._bytes_written,
                disk_errors=self._disk_errors,
                disk_ok=self._disk_ok,
                next_seq=self._last_seq + 1,
            )

    def close(self) -> None:
        """Flush everything unacknowledged, store the exact next seq, close the database."""
        with self._lock:
            if self._db is None:
                return
            for rec in list(self._in_flight.values()):
                self.nack(rec.id)
            self.commit()
            if self._run(self._write_meta, {"clean": 1, "seq_next": self._last_seq + 1}, commit=True):
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:
                    log.warning("outbox: checkpoint at close failed: %s", exc)
            self._db.close()
            self._db = None

    # ----------------------------------------------------------- internals

    def _note_seq(self, seq: int) -> None:
        self._last_seq = max(self._last_seq, seq)
        if seq >= self._reserved:
            # Forced: a crash must never let this seq be handed out again.
            self._reserved = seq + self._seq_block
            self._meta_dirty = True
            if not self._run(self._write_meta, {}, commit=True):
                log.error("outbox: seq reservation not persisted (disk); seq may repeat after a crash")

    def _memory_records(self) -> Iterable[Record]:
        for lane in URGENT_LANES:
            yield from self._urgent[lane].values()
        yield from self._live.values()
        yield from self._mem_backlog.values()

    def _forget(self, rec: Record) -> None:
        if rec.lane in URGENT_LANES:
            self._urgent[rec.lane].pop(rec.id, None)
        elif self._live.pop(rec.id, None) is None:
            self._mem_backlog.pop(rec.id, None)

    def _to_backlog(self, rec: Record) -> None:
        rec.lane = Lane.BACKLOG
        needs_sort = bool(self._mem_backlog) and next(reversed(self._mem_backlog)) > rec.id
        self._mem_backlog[rec.id] = rec
        if needs_sort:
            self._mem_backlog = dict(sorted(self._mem_backlog.items()))

    def _demote_live(self) -> int:
        waiting = [r for r in self._live.values() if not r.in_flight]
        for rec in waiting:
            del self._live[rec.id]
            self._to_backlog(rec)
        return len(waiting)

    def _take_backlog(self, limit: int) -> list[Record]:
        mem = [r for r in self._mem_backlog.values() if not r.in_flight and not r.on_disk]
        disk: list[Record] = []
        if self._db is not None and self._disk_telemetry_now > 0:
            disk = self._scan_disk(limit)
        merged = sorted(disk + mem[:limit], key=lambda r: r.id)[:limit]
        taken_disk = [r.id for r in merged if r.on_disk]
        if disk and taken_disk:
            # Rows scanned beyond the last one taken must be seen again.
            self._cursor = max(taken_disk)
        elif disk:
            self._cursor = min(self._cursor, disk[0].id - 1)
        return merged

    def _scan_disk(self, limit: int) -> list[Record]:
        assert self._db is not None
        found: list[Record] = []
        cursor = self._cursor
        try:
            while len(found) < limit:
                rows = self._db.execute(
                    "SELECT id, lane, topic, payload, qos, retain, seq FROM records"
                    " WHERE id > ? AND lane >= ? ORDER BY id LIMIT ?",
                    # Enough to get past the rows held in memory in one go, usually.
                    (cursor, int(Lane.LIVE), min(SCAN_BATCH, limit + len(self._in_flight) + len(self._mem_backlog))),
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    rid = row[0]
                    cursor = rid
                    if self._held(rid):
                        continue
                    rec = _row_record(row)
                    rec.lane = Lane.BACKLOG
                    found.append(rec)
                    if len(found) >= limit:
                        break
        except sqlite3.Error as exc:
            self._disk_failed("read", exc)
        if not found:
            # Everything scanned is in memory (or gone): do not scan it again.
            self._cursor = max(self._cursor, cursor)
        return found

    def _held(self, rid: int) -> bool:
        """The row is in memory (or being deleted): a disk scan must not hand it out."""
        return (
            rid in self._in_flight
            or rid in self._live
            or rid in self._mem_backlog
            or rid in self._uncommitted_deletes
        )

    def _evict_flushed_backlog(self) -> None:
        # Flushed backlog that is not in flight is read back from disk later:
        # memory holds only what the disk does not.
        evicted = [r.id for r in self._mem_backlog.values() if r.on_disk and not r.in_flight]
        for rid in evicted:
            del self._mem_backlog[rid]
        if evicted:
            self._cursor = min(self._cursor, evicted[0] - 1)

    def _enforce_bounds(self, *, flush_first: bool = True, memory: bool = True) -> None:
        """Keep within max_backlog_reports (disk + memory) and max_memory_reports (memory)."""
        dropped = 0
        excess = self._disk_telemetry_now + self._unflushed - self._max_backlog
        if excess > 0 and self._disk_telemetry_now and self._db is not None:
            done = self._drop_disk_backlog(excess)
            dropped += done
            excess -= done
        if flush_first and self._unflushed > self._max_memory and self._disk_ok and self._db is not None:
            # Memory is not the store: flush before dropping anything.
            self.commit()
        if memory:
            excess = max(excess, self._unflushed - self._max_memory)
        if excess > 0:
            victims = [r for r in self._mem_backlog.values() if not r.on_disk and not r.in_flight][:excess]
            for rec in victims:
                del self._mem_backlog[rec.id]
                self._unflushed -= 1
            dropped += len(victims)
        if dropped:
            self._dropped += dropped
            # Once full, every report drops one: log the first and then every 1000th.
            if self._dropped == dropped or self._dropped // 1000 != (self._dropped - dropped) // 1000:
                log.warning("outbox full: %d oldest backlog reports dropped so far", self._dropped)

    def _drop_disk_backlog(self, count: int) -> int:
        assert self._db is not None
        try:
            rows = self._db.execute(
                "SELECT id FROM records WHERE lane >= ? ORDER BY id LIMIT ?",
                (int(Lane.LIVE), count + len(self._in_flight) + len(self._live) + len(self._mem_backlog)),
            ).fetchall()
        except sqlite3.Error as exc:
            self._disk_failed("read", exc)
            return 0
        victims = [rid for (rid,) in rows if not self._held(rid)][:count]
        if victims and self._run(self._delete, [(rid, True) for rid in victims]):
            return len(victims)
        return 0

    # ---------------------------------------------------- database writes
    # Every write goes through _run: a disk error rolls back, is counted and
    # logged, and never escapes to the caller.

    @property
    def _disk_telemetry_now(self) -> int:
        return self._disk_telemetry - self._txn_telemetry_deletes

    def _run(self, op: Callable[[Any], None], arg: Any, *, commit: bool = False) -> bool:
        if self._db is None:
            return False
        try:
            if not self._in_txn:
                self._db.execute("BEGIN IMMEDIATE")
                self._in_txn = True
                # A rolled-back transaction lost its deletes: redo them first.
                if self._uncommitted_deletes:
                    self._db.executemany(
                        "DELETE FROM records WHERE id = ?", [(i,) for i in self._uncommitted_deletes]
                    )
            op(arg)
            if commit:
                if self._meta_dirty and op != self._write_meta:
                    self._write_meta({})
                self._db.execute("COMMIT")
                self._in_txn = False
                self._on_committed()
        except (sqlite3.Error, OSError) as exc:
            self._rollback()
            self._disk_failed("write", exc)
            return False
        if not self._disk_ok and commit:
            log.warning("outbox: disk writable again")
            self._disk_ok = True
        return True

    def _on_committed(self) -> None:
        self._commits += 1
        self._disk_telemetry -= self._txn_telemetry_deletes
        self._txn_telemetry_deletes = 0
        self._uncommitted_deletes.clear()
        self._meta_dirty = False
        for rec in self._pending_inserts:
            rec.on_disk = True
            self._records_written += 1
            self._bytes_written += len(rec.topic) + len(rec.payload)
            if rec.telemetry:
                self._disk_telemetry += 1
                self._unflushed -= 1
        self._pending_inserts = []

    def _insert(self, recs: list[Record]) -> None:
        assert self._db is not None
        self._pending_inserts.extend(recs)
        self._db.executemany(
            "INSERT INTO records (id, lane, topic, payload, qos, retain, seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(r.id, int(r.lane), r.topic, r.payload, r.qos, int(r.retain), r.seq) for r in recs],
        )

    def _flush(self, recs: list[Record]) -> None:
        if recs:
            self._insert(recs)

    def _delete(self, rows: list[tuple[int, bool]]) -> None:
        """Delete ``(id, is_telemetry)`` rows in the open transaction.

        Noted first, so that a failure still redoes them, and a scan never
        hands out a row whose delete is not committed yet.
        """
        assert self._db is not None
        for rid, is_telemetry in rows:
            if rid not in self._uncommitted_deletes:
                self._uncommitted_deletes[rid] = is_telemetry
                self._txn_telemetry_deletes += is_telemetry
        self._db.executemany("DELETE FROM records WHERE id = ?", [(rid,) for rid, _ in rows])

    def _write_meta(self, extra: dict[str, int]) -> None:
        assert self._db is not None
        values = {"seq_reserved": self._reserved, **extra}
        self._db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            list(values.items()),
        )

    def _rollback(self) -> None:
        self._pending_inserts = []
        if self._db is not None and self._in_txn:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.debug("outbox: rollback failed: %s", exc)
        self._in_txn = False

    def _disk_failed(self, what: str, exc: BaseException) -> None:
        self._disk_errors += 1
        if self._disk_ok or self._disk_errors % 100 == 1:
            log.error("outbox: %s failed (%s); keeping records in memory", what, exc)
        self._disk_ok = False


def _row_record(row: tuple) -> Record:
    rid, lane, topic, payload, qos, retain, seq = row
    return Record(
        id=rid,
        lane=Lane(lane),
        topic=topic,
        payload=bytes(payload),
        qos=qos,
        retain=bool(retain),
        seq=seq,
        on_disk=True,
    )


def _is_disk_full(exc: BaseException) -> bool:
    return "full" in str(exc).lower()
