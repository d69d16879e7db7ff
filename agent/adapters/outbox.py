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
* Offline, that is once the broker has acknowledged nothing for
  ``OFFLINE_COMMIT_INTERVAL_S`` (30 s), telemetry batches are committed every
  30 s instead (when ``commit_interval_s`` is shorter), until the next
  acknowledgement. See "SD card wear" below for why.
* The telemetry of one commit is one row, its reports deflated together
  (agent/adapters/outbox_codec.py): ~350 bytes of JSON take ~30 in a batch
  of 30. Reading gives back each payload byte for byte.
* A row is deleted once everything it holds is acknowledged; deletions ride
  on the next commit.
* Backlog rows are not kept in memory: the sender reads them oldest-first
  from the database a few rows at a time, so 48 h of reports cost disk, not
  RAM.

SD card wear
------------
Budget: under 50 MB of writes a day to the state directory at 1 Hz, also with
the link down all day (every report kept as backlog). What costs, measured
with bench/bench_link.py (``write_bytes`` of /proc/self/io: every fsynced
commit makes the card rewrite at least the 4 KiB page the previous commit
ended in) for a day of 1 Hz reports with the link down:

* The first format: 151 MB. Per 10 s commit of 10 reports (3.5 kB of JSON,
  1 KiB pages) the WAL got ~7.6 frames of 1,048 bytes: ~5 table leaf pages,
  ~1.6 interior pages of the rowid b-tree (no other index: ``id`` is the
  rowid), page 1 (the database grows at every commit) and the rewrite of the
  last, half-full leaf; ~3 OS pages fsynced. Every 1,000 frames the
  checkpoint copied the pages into the database file a second time.
* Compressed payloads: 86 MB. With 512-byte pages: 75 MB.
* The floor at 10 s batches: 8,640 fsynced commits a day cost at least one
  4 KiB page each, 35 MB before any data, and each commit rewrites page 1,
  an interior page and the last leaf. So offline, when nothing can be sent
  anyway, the outbox commits every 30 s (``OFFLINE_COMMIT_INTERVAL_S``):
  42 MB a day with a row per report. The price: a power cut (or a kill -9)
  while offline loses up to 30 s of reports instead of 10 s; status and
  emergency records are unaffected.
* A row per commit (format 3): a 30 s batch is ~1 kB instead of 30 rows of
  ~135 bytes (the payload, the topic, the row header): ~5 WAL frames instead
  of ~11. 24.7 MB a day simulated (wchar 12.6 MB; the database grows 4.9 MB
  for the day's 86,400 reports instead of 11.6).
* Not taken: a bigger ``wal_autocheckpoint`` (10,000 frames: 40 MB instead of
  42 with a row per report, for a 5 MB WAL); committing every 10 s but
  fsyncing every 30 s (``synchronous=NORMAL`` in between: 52 MB, the extra
  commits rewrite page 1 and the b-tree path each time); 60 s offline
  batches (a longer crash window).
* Not counted by the simulated day: the WAL index (``-shm``) is a
  memory-mapped file in the state directory, and the kernel writes its dirty
  pages back every ~30 s on its own (measured on the real clock, with a row
  per report: 72 to 91 MB a day instead of 42). ``exclusive=True`` (``PRAGMA
  locking_mode=EXCLUSIVE``, what the agent runs with) keeps the index in the
  process's memory and removes that cost. What remains on the real clock is
  the file system's own journal and metadata writes per commit, which no
  simulated clock sees: ``bench_link --realtime-minutes 10`` measured 43 MB
  a day (57 with a row per report), and the whole agent with its broker
  gone is measured by bench/bench_fix.py (docs/performance.md).
  No other process can read the store while the agent runs; the agent is
  its only user (``umps-agent status`` reads the runtime status file), and
  tests that inspect the file from a second connection open it shared.

The crash window, honestly
--------------------------
* A status or emergency record handed to ``put`` is on disk (fsynced) when
  ``put`` returns. A kill -9 or a power cut after that loses nothing.
* Telemetry made less than ``commit_interval_s`` before a crash and not yet
  acknowledged is lost (at most ``commit_interval_s * rate`` reports). Its
  ``seq`` numbers are never reused, so the server sees a gap. Offline (no
  acknowledgement for 30 s) the window is ``OFFLINE_COMMIT_INTERVAL_S`` (30 s)
  when ``commit_interval_s`` is shorter. A live report sent less than
  ``LIVE_ACK_GRACE_S`` (2 s) before a commit is left to its PUBACK; if that
  never comes it is written by the next commit.
* The power-fail warning (``seal()``, called on the hold-up supply's warning
  edge) commits every unacknowledged record, in flight or not, and the exact
  next seq at once; every later ``put`` is committed as it comes. A power
  cut after that loses nothing, and the next run declares no seq gap.
* Whatever a crash can lose is declared: the next run's ``seq_gap()`` covers
  it (agent/adapters/seq_reservation.py).
* A kill -9 or a power cut never loses or damages what was committed
  (SQLite WAL with ``synchronous=FULL``).
* An acknowledged record whose delete was not yet committed is sent again
  after a restart (a duplicate, which QoS 1 allows anyway). So is an
  acknowledged report whose batch row still held unacknowledged ones (the
  row is deleted whole): the duplicates are at most the rows being drained
  when the agent stopped.

Telemetry ``seq``
-----------------
Contiguous and never reused, across restarts: the reservation
(agent/adapters/seq_reservation.py) is written in ``meta`` with the batches
and forced to disk before a report crosses it. A clean ``close()`` stores the
exact next seq; after a crash the unit resumes at the reservation (a gap of at
most ``seq_block``, never a reuse). ``next_seq()`` tells the core where to
start.

Disk full, read-only, damaged
-----------------------------
``database or disk is full`` and ``OSError`` (ENOSPC, EIO) never stop live
reports: the failure is logged and counted, the failed transaction rolled
back, the records stay in memory (bounded by ``max_memory_reports``, oldest
backlog dropped first) and the next commit tries again. A full card still
opens the database (agent/adapters/sqlite_files.py). One that cannot be
opened at all (read-only, I/O errors, a newer agent's format) leaves the
outbox in memory; ``recover()`` opens it later and moves what memory holds
into it. A damaged database is set aside (``.bad``, kept) and a new one
started. ``health()`` says which, in words, for the unit's status.

The seq values also go to a reserve copy that a full card still takes (see
agent/adapters/seq_reservation.py), so neither a crash nor a restart on a
full or read-only card reuses a seq. A stop whose last commit the card
refuses leaves what it holds in RAM for the next run
(agent/adapters/outbox_spill.py, ``ram_dir``: the runtime directory); what a
crash or a power cut loses while the card refuses writes is declared by the
next run's ``seq_gap``.

Storage format
--------------
``PRAGMA user_version`` holds FORMAT_VERSION (3). Table ``records``: one row
per emergency or status record (``enc`` ENC_RAW, ``count`` 1), one row per
committed telemetry batch (``enc`` ENC_BATCH_V1, ``count`` reports, ``id`` the
first record's id, ``last_id`` the last one's; the encodings are
agent/adapters/outbox_codec.py's). Stores of older formats (0: no ``enc`` column; 2: a
row per report, deflated alone, ``enc`` ENC_DEFLATE_V1) are migrated in place
at open: the missing columns are added and their rows read as stored. A store
with a newer version is left untouched (a downgraded agent must not misread
it) and the outbox runs in memory, ``health()`` saying why. A stored row that cannot be decoded (a
damaged card) is logged, its reports counted in ``dropped``, and deleted; the
others drain in order.

Bounds
------
At most ``max_backlog_reports`` telemetry records (default 48 h at 1 Hz).
Beyond it the oldest backlog telemetry is dropped (counted in ``dropped``):
stored batches go whole, so the backlog may fall up to a batch (30 s offline)
below the bound. Emergency and status records are never dropped.
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

from agent.adapters import sqlite_files
from agent.adapters.outbox_codec import ENC_BATCH_V1, ENC_RAW, CodecError, decode, pack_batch, unpack_batch
from agent.adapters.outbox_spill import Spilled, read_spill, remove_spill, write_spill
from agent.adapters.reserve import Reserve
from agent.adapters.seq_reservation import SeqReservation, choose
from agent.core.publish import Lane, Publish

log = logging.getLogger(__name__)

URGENT_LANES = (Lane.EMERGENCY, Lane.STATUS)
DB_NAME = "outbox.sqlite3"
# The seq values' reserve copy (agent/adapters/seq_reservation.py, "When the card refuses writes").
SEQ_RESERVE_NAME = "seq.reserve"
# Commit early when this many deletes wait: keeps the open transaction small
# while a long backlog drains.
DELETE_COMMIT_THRESHOLD = 4096
# Rows read per query while scanning the backlog (a row holds up to BATCH_MAX_REPORTS).
SCAN_ROWS = 64
# Telemetry written by one commit goes into one row (one deflate stream), up to
# this many reports a row: a stored batch is dropped, and after a restart
# resent, as a whole (see "Storage format").
BATCH_MAX_REPORTS = 60
# Small pages: a batch rewrites less of its last, half-full leaf page, and the
# WAL frames of a commit (page size + 24 bytes each) span fewer 4 KiB pages of
# the card. Measured (bench/bench_link.py, compressed reports, 10 s batches, a
# day offline): 1024 B 86 MB, 512 B 75 MB; over an hour, 4096 B pages cost
# 1.25 times 1024 B ones.
PAGE_SIZE = 512
# Frames the WAL may hold before SQLite copies them into the database file.
WAL_AUTOCHECKPOINT = 1000
# SQLite's page cache for this connection, in KiB. Its default (2,000 KiB, plus
# a header per 512-byte page) fills during an outage and stays full for the
# life of the process; the kernel's file cache already holds the pages a
# drain reads again, so this process keeps only a small working set.
CACHE_KIB = 256
# Offline (the broker has acknowledged nothing for this long), telemetry batches
# are committed this often instead of every commit_interval_s, if that is
# shorter: see "SD card wear" in the module docstring.
OFFLINE_COMMIT_INTERVAL_S = 30.0

# A live report in flight this young is not written by a commit (see commit()).
LIVE_ACK_GRACE_S = 2.0

# The on-disk format, in ``PRAGMA user_version``. 0: the first format (no
# ``enc`` column). 2: ``records.enc`` says how ``payload`` is stored (ENC_RAW or
# ENC_DEFLATE_V1). 3: ``count`` and ``last_id`` columns; telemetry is written
# as batch rows (ENC_BATCH_V1). Older formats are migrated in place.
FORMAT_VERSION = 3

_SCHEMA_RECORDS = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    lane INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    seq INTEGER,
    enc INTEGER NOT NULL DEFAULT 0,
    count INTEGER NOT NULL DEFAULT 1,
    last_id INTEGER
)"""
_SCHEMA_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID"
_COLUMNS = "id, lane, topic, payload, qos, retain, seq, enc, count, last_id"

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
    row: int = 0  # the database row that holds it (0: in memory only)
    row_size: int = 0  # how many records that row holds
    in_flight: bool = False
    sent_at: float = 0.0  # when it was last taken for sending (monotonic)

    @property
    def telemetry(self) -> bool:
        return self.lane >= Lane.LIVE

    @property
    def on_disk(self) -> bool:
        return self.row != 0


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
        exclusive: bool = False,
        clock: Callable[[], float] = time.monotonic,
        ram_dir: str | Path | None = None,
    ) -> None:
        if max_backlog_reports < 1 or max_memory_reports < 1:
            raise ValueError("outbox limits must be positive")
        self._max_backlog = max_backlog_reports
        self._interval = commit_interval_s
        self._max_memory = max_memory_reports
        self._exclusive = exclusive
        self._clock = clock
        self._lock = threading.RLock()
        self._urgent: dict[Lane, dict[int, Record]] = {lane: {} for lane in URGENT_LANES}
        self._live: dict[int, Record] = {}
        self._mem_backlog: dict[int, Record] = {}  # unflushed or in-flight backlog, id order
        self._in_flight: dict[int, Record] = {}
        self._disk_telemetry = 0  # telemetry records in committed rows (see _disk_telemetry_now)
        self._cursor = 0  # backlog rows with id <= cursor were already scanned
        self._uncommitted_deletes: dict[int, int] = {}  # row id -> telemetry records in it
        self._pending_inserts: list[tuple[Record, int, int]] = []  # (record, row id, row size)
        # Acknowledged records of rows not yet fully acknowledged (a row is deleted whole).
        self._row_acked: dict[int, set[int]] = {}
        self._acked_ids: set[int] = set()
        self._txn_telemetry_deletes = 0
        self._unflushed = 0  # telemetry records in memory only (not yet committed)
        self._in_txn = False
        self._last_commit = clock()
        self._last_ack = clock()
        self._dropped = 0
        self._commits = 0
        self._records_written = 0
        self._bytes_written = 0
        self._disk_errors = 0
        self._disk_ok = True
        self._sealed = False  # after seal(): every put is committed at once
        self._next_id = 1
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._set_aside_once = False
        self._path = Path(state_dir) / DB_NAME
        # RAM (the runtime directory): a copy of the seq values, and what a stop could not commit.
        self._ram_dir = Path(ram_dir) if ram_dir is not None else None
        self._reserve = Reserve(SEQ_RESERVE_NAME, [Path(state_dir), *([self._ram_dir] if self._ram_dir else [])])
        self._copied: dict[str, int] | None = None  # the restart values the reserve copy holds
        self._meta_set: dict[str, int] = {}  # the explicit values written so far (clean, seq_next...)
        self._problem: str | None = None  # why there is no database (memory only), for status
        self._last_error: str | None = None
        self._seq_warned = False
        self._spilled: set[int] = set()  # records a previous run left in RAM, not yet acked or on disk
        copy = self._reserve.read()
        values, self._gen = choose(self._open(), (copy.gen, copy.body) if copy else None)
        if self._db is None and not values and self._path.exists():
            log.error("outbox: neither the database nor a reserve copy says which seq comes next; seq may repeat")
        self._seq = SeqReservation(values, seq_block)
        self._load_spill()
        if not self._save_seq({"clean": 0}):
            log.error("outbox: seq reservation could not be persisted; seq may repeat after another crash")

    # ----------------------------------------------------------- opening

    def _open(self) -> dict[str, int]:
        """Open the database and read what the last run left; its ``meta`` values.

        Never raises: a database that cannot be opened (a full or read-only
        card, I/O errors, a newer agent's format) leaves the outbox in memory
        (``recover()`` tries again); a damaged one is set aside (kept) and a new
        one started (see agent/adapters/sqlite_files.py).
        """
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite_files.connect(self._path, cache_kib=CACHE_KIB, exclusive=self._exclusive, page_size=PAGE_SIZE)
        except (OSError, sqlite3.Error) as exc:
            return self._open_failed(exc)
        try:
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            _check_format(db, self._path)
            meta = dict(db.execute("SELECT key, value FROM meta"))
            max_id = db.execute("SELECT COALESCE(MAX(COALESCE(last_id, id)), 0) FROM records").fetchone()[0]
            disk_telemetry = db.execute(
                "SELECT COALESCE(SUM(count), 0) FROM records WHERE lane >= ?", (int(Lane.LIVE),)
            ).fetchone()[0]
            urgent_rows = db.execute(f"SELECT {_COLUMNS} FROM records WHERE lane < ? ORDER BY id",
                                     (int(Lane.LIVE),)).fetchall()
        except (OSError, sqlite3.Error, OutboxError) as exc:
            db.close()
            return self._open_failed(exc)
        self._db = db
        self._problem = None
        self._disk_telemetry = disk_telemetry
        self._next_id = max(self._next_id, max_id + 1)
        unreadable = []
        for row in urgent_rows:
            try:
                recs = _row_records(row)
            except CodecError as exc:
                unreadable.append((row, exc))
                continue
            for rec in recs:
                self._urgent[rec.lane][rec.id] = rec
        for row, exc in unreadable:
            self._discard_unreadable(row, exc)
        if self._disk_telemetry or any(self._urgent.values()):
            log.info(
                "outbox: %d telemetry and %d urgent records waiting from the last run",
                self._disk_telemetry,
                sum(len(d) for d in self._urgent.values()),
            )
        return meta

    def _open_failed(self, exc: BaseException) -> dict[str, int]:
        if sqlite_files.is_corrupt(exc) and not self._set_aside_once:
            self._set_aside_once = True  # the new file is not set aside in turn
            salvaged = sqlite_files.salvage_meta(self._path)
            bad = sqlite_files.set_aside_db(self._path)
            log.error("outbox: database %s damaged (%s): set aside as %s, starting a new one", self._path, exc,
                      bad.name if bad else "(could not be moved)")
            meta = self._open() if bad is not None else {}
            # What the damaged file still said of the seq: read as after a crash.
            return {**salvaged, "clean": 0} if salvaged else meta
        if isinstance(exc, OutboxError):
            self._problem = str(exc)
        else:
            self._problem = f"outbox database {self._path.name} unavailable: {sqlite_files.reason(exc)}"
        self._disk_failed("open", exc)
        return {}

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
        return self._seq.first

    def seq_gap(self) -> dict[str, int] | None:
        """The seq range this run declares never sent (``seq_gap`` of the birth), or None."""
        return self._seq.gap_json()

    def gap_declared(self) -> None:
        """A broker has the birth that declares the gap (written with the next commit)."""
        with self._lock:
            self._seq.gap_declared()

    def seal(self) -> bool:
        """The power is failing: commit every unacknowledged record and the exact next seq now.

        Records in flight are taken back (sent again after the restart if their
        PUBACK was on its way: a QoS 1 duplicate). From now on every ``put`` is
        committed at once with the next seq, so whatever the unit still makes
        before the power goes is on disk too, and the next run declares no gap.
        False if the disk refused (the records stay in memory).
        """
        with self._lock:
            if self._db is None:
                return False
            self._sealed = True
            for rec in list(self._in_flight.values()):
                self.nack(rec.id)
            return self._commit_sealed()

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
            if self._sealed:
                self._commit_sealed()
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
            now = self._clock()
            for rec in recs:
                rec.in_flight = True
                rec.sent_at = now
                self._in_flight[rec.id] = rec
            return recs

    def ack(self, record_id: int) -> None:
        """The broker has the record: forget it (the delete rides on the next commit)."""
        with self._lock:
            rec = self._in_flight.pop(record_id, None)
            if rec is None:
                return
            rec.in_flight = False
            self._last_ack = self._clock()
            self._forget(rec)
            if rec.telemetry and not rec.on_disk:
                self._unflushed -= 1
            if rec.on_disk:
                self._acked_on_disk(rec)
            if self._spilled:
                self._spill_settled()

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
                self._cursor = min(self._cursor, rec.row - 1)

    def demote_live(self) -> int:
        """Move pending (unsent) live reports to the backlog; returns how many."""
        with self._lock:
            return self._demote_live()

    def maybe_commit(self) -> bool:
        """Commit if the batch interval has passed or many deletes wait. True if it committed."""
        with self._lock:
            due = self._clock() - self._last_commit >= self._batch_interval()
            if due or len(self._uncommitted_deletes) >= DELETE_COMMIT_THRESHOLD:
                return self.commit()
            return False

    def commit(self) -> bool:
        """Write unacknowledged records and pending deletes now. False if the disk refused."""
        with self._lock:
            self._last_commit = self._clock()
            # The memory bound waits: this commit may move everything to disk.
            self._enforce_bounds(flush_first=False, memory=False)
            # A live report just sent is left to its PUBACK (milliseconds away): reports and
            # commits tick on the same 1 s grid, so otherwise nearly every commit would write
            # one and the next delete it, on a link that loses nothing.
            now = self._clock()
            unflushed, waiting = [], []
            for r in self._memory_records():
                if not r.on_disk:
                    grace = r.lane is Lane.LIVE and r.in_flight and now - r.sent_at < LIVE_ACK_GRACE_S
                    (waiting if grace else unflushed).append(r)
            self._seq.top_up()
            # Once this commits, every seq below the oldest report left to its PUBACK is safe.
            self._seq.note_durable(min((r.seq for r in waiting if r.seq is not None), default=self._seq.next),
                                   writing=bool(unflushed))
            if not unflushed and not self._in_txn and not self._seq.dirty:
                return True
            ok = self._run(self._flush, unflushed, commit=True)
            if ok:
                self._evict_flushed_backlog()
                self._spill_settled()
            else:
                self._enforce_bounds(flush_first=False)
            return ok

    def pending(self) -> dict[Lane, int]:
        """Records waiting per lane (in flight included)."""
        with self._lock:
            telemetry = self._disk_telemetry_now - len(self._acked_ids) + self._unflushed
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
                next_seq=self._seq.next,
            )

    def close(self) -> None:
        """Flush everything unacknowledged, store the exact next seq, close the database.

        When the card refuses the flush, what it holds goes to RAM for the next
        run (agent/adapters/outbox_spill.py); what cannot go there either is
        lost, and the seq values say so (the next run declares its seq).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for rec in list(self._in_flight.values()):
                self.nack(rec.id)
            self.commit()
            held = sorted((r for r in self._memory_records() if not r.on_disk), key=lambda r: r.id)
            if held and not self._spill(held):
                log.error("outbox: %d records not acknowledged are lost at this stop (the card refused them)",
                          len(held))
                lost = [r.seq for r in held if r.seq is not None]
                values = {"clean": 0, "seq_durable": min(lost, default=self._seq.next)}
            else:
                values = self._seq.clean_stop_values()
            if self._save_seq(values) and self._db is not None:
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:
                    log.warning("outbox: checkpoint at close failed: %s", exc)
            if self._db is not None:
                self._db.close()
                self._db = None

    def recover(self) -> bool:
        """The database could not be opened at start: try again. True when it is open (now or already).

        What the outbox held in memory meanwhile is renumbered after what the
        database holds (it is newer) and committed at once.
        """
        with self._lock:
            if self._db is not None or self._closed:
                return self._db is not None
            if self._in_flight:
                return False  # renumbering needs every record at rest: next time
            held = sorted(self._memory_records(), key=lambda r: r.id)
            meta = self._open()
            if self._db is None:
                return False
            stored, _ = choose(meta, None)
            first = stored.get("seq_next", 0) if stored.get("clean", 1) else max(stored.get("seq_next", 0),
                                                                                  stored.get("seq_reserved", 0))
            if first > self._seq.first:
                log.error("outbox: the database, readable again, had reserved seq up to %d; this run started at %d"
                          " and may have repeated some", first - 1, self._seq.first)
            for lane in URGENT_LANES:
                self._urgent[lane] = {i: r for i, r in self._urgent[lane].items() if r.on_disk}
            self._live.clear()
            self._mem_backlog.clear()
            for rec in held:
                rec.id, self._next_id = self._next_id, self._next_id + 1
                if rec.lane in URGENT_LANES:
                    self._urgent[rec.lane][rec.id] = rec
                elif rec.lane is Lane.LIVE:
                    self._live[rec.id] = rec
                else:
                    self._mem_backlog[rec.id] = rec
            self._seq.dirty = True
            log.warning("outbox: database %s open again; %d records held in memory go to it", self._path, len(held))
            self.commit()
            return True

    def health(self) -> str | None:
        """Why the outbox is not durable now, in words (``None``: everything it holds can reach the card)."""
        with self._lock:
            if self._db is None:
                return self._problem or "outbox database unavailable"
            if not self._disk_ok:
                return f"outbox writes refused ({self._last_error or 'disk error'}); records kept in memory"
            return None

    # ----------------------------------------------------------- internals

    def _commit_sealed(self) -> bool:
        """Everything in memory and the exact next seq, in one fsynced commit (see seal())."""
        self._last_commit = self._clock()
        unflushed = [r for r in self._memory_records() if not r.on_disk]
        self._seq.note_durable(self._seq.next, writing=True)
        ok = self._run(self._flush, unflushed) and self._run(
            self._write_meta, self._seq.clean_stop_values(), commit=True)
        if ok:
            self._evict_flushed_backlog()
        else:
            log.error("outbox: the power-fail commit failed; unacknowledged records are in memory only")
        return ok

    def _note_seq(self, seq: int) -> None:
        if self._seq.note(seq):
            # Forced: a crash must never let this seq be handed out again.
            if self._save_seq({}):
                self._seq_warned = False
            elif not self._seq_warned:
                self._seq_warned = True
                log.error("outbox: seq reservation not persisted (disk); seq may repeat after a crash")

    def _save_seq(self, extra: dict[str, int]) -> bool:
        """Commit the seq values with ``extra`` now (the reserve copy too when it changed).
        True when the card has them: the database or the state directory's reserve copy."""
        if self._db is not None:
            return self._run(self._write_meta, extra, commit=True) or self._copied == self._restart_values()
        self._gen += 1
        return self._copy_seq(self._meta_values(extra))

    def _meta_values(self, extra: dict[str, int]) -> dict[str, int]:
        """The whole record of the seq, as the ``meta`` table holds it after writing ``extra``."""
        self._meta_set.update(extra)
        return {**self._seq.meta_values(), **self._meta_set}

    def _restart_values(self) -> dict[str, int]:
        values = {**self._seq.meta_values(), **self._meta_set}
        values.pop("seq_durable", None)
        return values

    def _copy_seq(self, values: dict[str, int]) -> bool:
        """Write the reserve copy (generation ``self._gen``) when what a restart needs changed."""
        wanted = {k: v for k, v in values.items() if k != "seq_durable"}
        if wanted == self._copied:
            return True
        if self._reserve.write(self._gen, values):
            self._copied = wanted
            self._seq.safe()
            return True
        return False

    def _spill(self, held: list[Record]) -> bool:
        """Leave ``held`` in RAM for the next run (see close()); False when there is no RAM directory or it failed."""
        if self._ram_dir is None:
            return False
        ok = write_spill(self._ram_dir, [Spilled(r.lane, r.topic, r.payload, r.qos, r.retain, r.seq) for r in held])
        if ok:
            log.warning("outbox: %d records the card refused are kept in RAM (%s) for the next run", len(held),
                        self._ram_dir)
        return ok

    def _load_spill(self) -> None:
        """Take back what the last run left in RAM (records waiting to be sent; see outbox_spill.py)."""
        if self._ram_dir is None:
            return
        spilled = read_spill(self._ram_dir)
        for item in spilled:
            rec = Record(id=self._next_id, lane=item.lane, topic=item.topic, payload=item.payload, qos=item.qos,
                         retain=item.retain, seq=item.seq)
            self._next_id += 1
            if rec.lane in URGENT_LANES:
                self._urgent[rec.lane][rec.id] = rec
            else:
                rec.lane = Lane.BACKLOG
                self._mem_backlog[rec.id] = rec
                self._unflushed += 1
            self._spilled.add(rec.id)
        if spilled:
            log.warning("outbox: %d records the last run kept in RAM are back, waiting to be sent", len(spilled))
            if self._db is not None:
                self._run(self._insert, [r for r in self._memory_records() if r.id in self._spilled], commit=True)
            self._spill_settled()

    def _spill_settled(self) -> None:
        """The RAM spill goes once every record it held is acknowledged or on the card."""
        if not self._spilled or self._ram_dir is None:
            return
        held = {r.id for r in self._memory_records() if not r.on_disk}
        self._spilled &= held
        if not self._spilled:
            remove_spill(self._ram_dir)

    def _batch_interval(self) -> float:
        """``commit_interval_s``; offline, OFFLINE_COMMIT_INTERVAL_S if that is longer."""
        if self._clock() - self._last_ack < OFFLINE_COMMIT_INTERVAL_S:
            return self._interval
        return max(self._interval, OFFLINE_COMMIT_INTERVAL_S)

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
        scanned: list[tuple[int, list[int]]] = []
        if self._db is not None and self._disk_telemetry_now > 0:
            disk, scanned = self._scan_disk(limit)
        merged = sorted(disk + mem[:limit], key=lambda r: r.id)[:limit]
        # The cursor passes the rows scanned in full: all they hold is now taken or
        # held elsewhere. A row cut short by the limit is read again next time.
        taken = {r.id for r in merged}
        for row_id, ids in scanned:
            if not taken.issuperset(ids):
                break
            self._cursor = max(self._cursor, row_id)
        return merged

    def _scan_disk(self, limit: int) -> tuple[list[Record], list[tuple[int, list[int]]]]:
        """Backlog records of the rows after the cursor, not held elsewhere, about ``limit`` of them.

        Also returns, per row read, the ids it offered (the caller moves the cursor).
        """
        assert self._db is not None
        found: list[Record] = []
        scanned: list[tuple[int, list[int]]] = []
        cursor = self._cursor
        try:
            while len(found) < limit:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM records WHERE id > ? AND lane >= ? ORDER BY id LIMIT ?",
                    (cursor, int(Lane.LIVE), SCAN_ROWS),
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    cursor = row[0]
                    if cursor in self._uncommitted_deletes:
                        scanned.append((cursor, []))
                        continue
                    try:
                        recs = _row_records(row)
                    except CodecError as exc:
                        self._discard_unreadable(row, exc)
                        scanned.append((cursor, []))
                        continue
                    offered = [r for r in recs if not self._held(r.id)]
                    for rec in offered:
                        rec.lane = Lane.BACKLOG
                    found.extend(offered)
                    scanned.append((cursor, [r.id for r in offered]))
                    if len(found) >= limit:
                        break
        except sqlite3.Error as exc:
            self._disk_failed("read", exc)
        return found, scanned

    def _discard_unreadable(self, row: tuple, exc: BaseException) -> None:
        """A stored row that cannot be decoded (a damaged card): log it, count its reports as dropped, delete it."""
        rid, count = row[0], row[8]
        log.error("outbox: stored row %d (%d reports) cannot be read back (%s); dropped", rid, count, exc)
        self._dropped += count
        self._run(self._delete, [(rid, count)])

    def _held(self, rid: int) -> bool:
        """The record is in memory (or already acknowledged): a disk scan must not hand it out."""
        return rid in self._in_flight or rid in self._live or rid in self._mem_backlog or rid in self._acked_ids

    def _acked_on_disk(self, rec: Record) -> None:
        """A stored record is acknowledged: its row goes once all it holds is."""
        acked = self._row_acked.setdefault(rec.row, set())
        acked.add(rec.id)
        self._acked_ids.add(rec.id)
        if len(acked) >= rec.row_size:
            del self._row_acked[rec.row]
            self._acked_ids -= acked
            self._run(self._delete, [(rec.row, rec.row_size if rec.telemetry else 0)])

    def _evict_flushed_backlog(self) -> None:
        # Flushed backlog that is not in flight is read back from disk later:
        # memory holds only what the disk does not.
        evicted = [r for r in self._mem_backlog.values() if r.on_disk and not r.in_flight]
        for rec in evicted:
            del self._mem_backlog[rec.id]
        if evicted:
            self._cursor = min(self._cursor, min(r.row for r in evicted) - 1)

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
        """Delete the oldest stored telemetry rows, whole, until ``count`` reports are gone (or more)."""
        assert self._db is not None
        held = {r.row for r in self._in_flight.values()} | {r.row for r in self._mem_backlog.values()}
        held |= self._row_acked.keys() | self._uncommitted_deletes.keys()
        held.discard(0)
        try:
            rows = self._db.execute(
                "SELECT id, count FROM records WHERE lane >= ? ORDER BY id LIMIT ?",
                (int(Lane.LIVE), count + len(held)),
            ).fetchall()
        except sqlite3.Error as exc:
            self._disk_failed("read", exc)
            return 0
        victims: list[tuple[int, int]] = []
        dropped = 0
        for rid, n in rows:
            if dropped >= count:
                break
            if rid not in held:
                victims.append((rid, n))
                dropped += n
        if victims and self._run(self._delete, victims):
            return dropped
        return 0

    # ---------------------------------------------------- database writes
    # Every write goes through _run: a disk error rolls back, is counted and
    # logged, and never escapes to the caller.

    @property
    def _disk_telemetry_now(self) -> int:
        return self._disk_telemetry - self._txn_telemetry_deletes

    def _run(self, op: Callable[[Any], None], arg: Any, *, commit: bool = False) -> bool:
        if self._db is None:
            if commit and self._seq.dirty and op != self._write_meta:
                self._save_seq({})  # memory only: the reservation still reaches the reserve copy
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
                if self._seq.dirty and op != self._write_meta:
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
        self._seq.persisted()
        for rec, row, size in self._pending_inserts:
            rec.row, rec.row_size = row, size
            self._records_written += 1
            self._bytes_written += len(rec.topic) + len(rec.payload)
            if rec.telemetry:
                self._disk_telemetry += 1
                self._unflushed -= 1
        self._pending_inserts = []

    def _insert(self, recs: list[Record]) -> None:
        """Urgent records one row each, as they are; telemetry in batch rows (see "Storage format")."""
        assert self._db is not None
        rows = []
        for r in recs:
            if not r.telemetry:
                rows.append((r.id, int(r.lane), r.topic, r.payload, r.qos, int(r.retain), r.seq, ENC_RAW, 1, r.id))
                self._pending_inserts.append((r, r.id, 1))
        telemetry = sorted((r for r in recs if r.telemetry), key=lambda r: r.id)
        for i in range(0, len(telemetry), BATCH_MAX_REPORTS):
            batch = telemetry[i : i + BATCH_MAX_REPORTS]
            first = batch[0]
            rows.append((first.id, int(Lane.BACKLOG), first.topic, pack_batch(batch), first.qos, 0, first.seq,
                         ENC_BATCH_V1, len(batch), batch[-1].id))
            self._pending_inserts.extend((r, first.id, len(batch)) for r in batch)
        self._db.executemany(f"INSERT INTO records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _flush(self, recs: list[Record]) -> None:
        if recs:
            self._insert(recs)

    def _delete(self, rows: list[tuple[int, int]]) -> None:
        """Delete ``(row id, telemetry records in it)`` rows in the open transaction.

        Noted first, so that a failure still redoes them, and a scan never
        hands out a row whose delete is not committed yet.
        """
        assert self._db is not None
        for rid, telemetry in rows:
            if rid not in self._uncommitted_deletes:
                self._uncommitted_deletes[rid] = telemetry
                self._txn_telemetry_deletes += telemetry
        self._db.executemany("DELETE FROM records WHERE id = ?", [(rid,) for rid, _ in rows])

    def _write_meta(self, extra: dict[str, int]) -> None:
        assert self._db is not None
        self._gen += 1
        values = self._meta_values(extra)
        # The copy first: if this commit fails, the copy is the newer record (seq_reservation.choose).
        self._copy_seq(values)
        values["gen"] = self._gen
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
        self._last_error = sqlite_files.reason(exc)
        self._disk_errors += 1
        if self._disk_ok or self._disk_errors % 100 == 1:
            log.error("outbox: %s failed (%s); keeping records in memory", what, exc)
        self._disk_ok = False


def _row_records(row: tuple) -> list[Record]:
    """The records a database row holds: one, or a batch (CodecError if it cannot be read)."""
    rid, lane, topic, stored, qos, retain, seq, enc, count, _ = row
    if enc == ENC_BATCH_V1:
        try:
            entries = unpack_batch(stored, count)
        except CodecError as exc:
            raise CodecError(f"batch row {rid}: {exc}") from exc
        return [Record(id=e.id, lane=Lane(lane), topic=e.topic, payload=e.payload, qos=e.qos, retain=e.retain,
                       seq=e.seq, row=rid, row_size=count) for e in entries]
    return [Record(id=rid, lane=Lane(lane), topic=topic, payload=decode(enc, stored), qos=qos,
                   retain=bool(retain), seq=seq, row=rid, row_size=1)]


def stored_records(state_dir: str | Path) -> list[Record]:
    """What a restart would find in ``state_dir``'s outbox, in row order, read by
    a separate read-only connection (not while an exclusive store is open)."""
    db = sqlite3.connect(f"{(Path(state_dir) / DB_NAME).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [rec for row in db.execute(f"SELECT {_COLUMNS} FROM records ORDER BY id") for rec in _row_records(row)]
    finally:
        db.close()


def _check_format(db: sqlite3.Connection, path: Path) -> None:
    """Create the schema, or migrate a store of the first format, or refuse a newer one."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > FORMAT_VERSION:
        raise OutboxError(
            f"outbox database {path} has format {version}, written by a newer agent; this agent reads formats"
            f" up to {FORMAT_VERSION}: upgrade the agent, or move the file away (its records are then lost)"
        )
    if version == FORMAT_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(_SCHEMA_RECORDS)
        db.execute(_SCHEMA_META)
        columns = {name for _, name, *_ in db.execute("PRAGMA table_info(records)")}
        # Rows of older formats hold one record each; the first format stored
        # every payload as it is (ENC_RAW).
        for name, decl in (("enc", "INTEGER NOT NULL DEFAULT 0"), ("count", "INTEGER NOT NULL DEFAULT 1"),
                           ("last_id", "INTEGER")):
            if name not in columns:
                db.execute(f"ALTER TABLE records ADD COLUMN {name} {decl}")
        db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # already rolled back by SQLite (disk full): the first error is the one to see
        raise


def _is_disk_full(exc: BaseException) -> bool:
    return "full" in str(exc).lower()
