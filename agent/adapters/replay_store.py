"""The replay memory on disk: ids of accepted signed requests, kept until they expire.

A small SQLite database, ``replay.sqlite3`` in ``[storage] state_dir``, one
row per accepted request (``key``, ``expires`` as Unix seconds). It
implements :class:`agent.core.replay.ReplayMemory` for the remote-request
worker; a lock lets the storage monitor check and reopen it from its own
thread.

- **Survives restarts and power cuts**: each accepted key is committed
  (``synchronous=FULL``) before the request takes effect, so a request
  replayed after a restart is still refused within its life.
- **Bounded**: rows whose ``expires`` has passed are deleted at every
  ``remember`` (and at open). Beyond :data:`CAPACITY` live rows the store
  refuses to remember more, and the request is refused with it, rather than
  forget a live id (which would reopen its replay). Every signed request has
  an ``expires`` at most 8 days ahead (config), 24 h (commands) or 1 h
  (dispatch), so the live rows are what a unit accepted in that window.
- An unsigned request may have no ``expires``: it is kept
  :data:`DEFAULT_RETENTION` (re-delivery protection only).

When the card misbehaves (agent/adapters/sqlite_files.py):

- **Full**: the memory opens and is read as usual (exclusive locking: no
  ``-shm`` file to create); a key it cannot write is not remembered, and the
  request is refused, saying why (:attr:`problem`).
- **Unreadable** (I/O errors, read-only card that refuses the open): the
  memory is not replaced by an empty one, which would let replays through.
  :meth:`refusal` then refuses config pushes and commands, saying why, until
  :meth:`recover` opens it again. The dispatch path (calls, alarm answers)
  does not wait for it (the remote-request worker keeps a memory of its own
  in RAM meanwhile; see agent/adapters/remote_worker.py).
- **Damaged** (not a database, corrupt): set aside as ``replay.sqlite3.bad``
  (kept) and a new one started. What the lost one held is unknown, so a
  command sent before the loss could come back: commands are refused for
  their longest life (:data:`~agent.core.remote_command.COMMAND_MAX_LIFETIME`,
  24 h) from the loss, a row ``:lost`` whose ``expires`` is that end (pruned
  with the rest), unless their signed ``issued`` is after the loss. Config pushes stay judged: their version numbers, kept by
  the config store, refuse an old push on their own.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import threading
from pathlib import Path

from agent.adapters import sqlite_files
from agent.core.remote_command import COMMAND_MAX_LIFETIME
from agent.core.replay import ReplayUnavailable

log = logging.getLogger(__name__)

FILE_NAME = "replay.sqlite3"
CAPACITY = 20_000
DEFAULT_RETENTION = dt.timedelta(hours=24)
# SQLite's page cache for this connection, in KiB (its default is 2,000 KiB,
# kept for the life of the process once filled; a lookup here is rare).
CACHE_KIB = 128
# The row that says when a damaged memory was replaced (see the module docstring).
LOST_KEY = ":lost"
_PROBE_KEY = ":probe"


class ReplayStore:
    """Durable :class:`~agent.core.replay.ReplayMemory`; see the module docstring."""

    def __init__(self, state_dir: str | Path, capacity: int = CAPACITY, *, exclusive: bool = True):
        self.path = Path(state_dir) / FILE_NAME
        self.capacity = capacity
        self._exclusive = exclusive  # the agent's way; a test that reads the file beside it opens it shared
        self.refused_full = 0
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._unreadable: str | None = None  # why it cannot be opened
        self._unwritable: str | None = None  # why the last write failed (cleared by a write that works)
        self._lost = False  # a damaged memory was set aside in this run and its time not yet written
        self._open()

    # --------------------------------------------------------------- state

    @property
    def problem(self) -> str | None:
        """Why the memory is not durable now, in words (None: it is)."""
        with self._lock:
            if self._db is None:
                return f"replay memory unavailable ({self._unreadable})"
            if self._unwritable:
                return f"replay memory cannot be written ({self._unwritable})"
            return None

    def refusal(self, topic: str, now: dt.datetime, trusted: bool, issued: dt.datetime | None = None) -> str | None:
        """Why a ``config/set`` or ``cmd`` cannot be judged now (None: judge it as usual).

        ``issued``: the request's signed issue time, when it has one: a command issued after
        a damaged memory was replaced cannot be a replay of one it held."""
        with self._lock:
            if self._db is None:
                return (f"cannot be judged now: the unit's replay memory cannot be read ({self._unreadable}), so a "
                        "replay could not be told apart; nothing was applied; send it again once the unit reports "
                        "durable")
            if topic != "cmd":
                return None
            if self._lost and trusted:
                # The loss, dated now that the unit has a trusted clock (later than it was: the safe side).
                if self._write(lambda db: db.execute(
                        "INSERT OR REPLACE INTO accepted (key, expires) VALUES (?, ?)",
                        (LOST_KEY, (now + COMMAND_MAX_LIFETIME).timestamp()))):
                    self._lost = False
            if self._lost:
                return ("cannot be judged now: the unit's replay memory was damaged and replaced, and the unit has no "
                        "trusted time to date that; nothing was applied")
            row = self._db.execute("SELECT expires FROM accepted WHERE key = ?", (LOST_KEY,)).fetchone()
            lost_at = row[0] - COMMAND_MAX_LIFETIME.total_seconds() if row is not None else None
            if lost_at is not None and issued is not None and issued.timestamp() >= lost_at:
                return None
            if row is not None and row[0] > now.timestamp():
                until = dt.datetime.fromtimestamp(row[0], dt.timezone.utc).isoformat(timespec="seconds")
                return (f"refused until {until}: the unit's replay memory was damaged and replaced, and a command "
                        "sent before that could be a replay; nothing was run")
            return None

    def recover(self) -> bool:
        """Open it again if it could not be, or check that it takes writes again; True when durable."""
        with self._lock:
            if self._db is None:
                self._open()
            elif self._unwritable:
                self._write(lambda db: (db.execute("INSERT OR REPLACE INTO accepted VALUES (?, 0)", (_PROBE_KEY,)),
                                        db.execute("DELETE FROM accepted WHERE key = ?", (_PROBE_KEY,))))
            return self.problem is None

    # ------------------------------------------------- the ReplayMemory API

    def seen(self, key: str) -> bool:
        with self._lock:
            if self._db is None:
                raise ReplayUnavailable(self.problem or "replay memory unavailable")
            return self._db.execute("SELECT 1 FROM accepted WHERE key = ?", (key,)).fetchone() is not None

    def remember(self, key: str, until: dt.datetime | None, now: dt.datetime) -> bool:
        """Keep ``key``; False (and nothing kept) when the memory is full or the card refuses."""
        expires = (until or now + DEFAULT_RETENTION).timestamp()
        with self._lock:
            if self._db is None:
                return False
            self.prune(now)
            (live,) = self._db.execute("SELECT count(*) FROM accepted").fetchone()
            if live >= self.capacity:
                self.refused_full += 1
                log.error("replay memory full (%d live ids): refusing a signed request", live)
                return False
            return self._write(lambda db: db.execute(
                "INSERT OR REPLACE INTO accepted (key, expires) VALUES (?, ?)", (key, expires)))

    def prune(self, now: dt.datetime) -> int:
        with self._lock:
            if self._db is None:
                return 0
            cursor = None

            def delete(db: sqlite3.Connection) -> None:
                nonlocal cursor
                cursor = db.execute("DELETE FROM accepted WHERE expires <= ? AND key != ?", (now.timestamp(), _PROBE_KEY))

            self._write(delete)
            return cursor.rowcount if cursor is not None else 0

    def __len__(self) -> int:
        with self._lock:
            if self._db is None:
                return 0
            return int(self._db.execute("SELECT count(*) FROM accepted WHERE key NOT LIKE ':%'").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # ----------------------------------------------------------- internals

    def _write(self, op) -> bool:
        """One transaction; a refusal of the card is noted (``problem``), never raised."""
        assert self._db is not None
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                op(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # already rolled back by SQLite (disk full)
                raise
        except (sqlite3.Error, OSError) as exc:
            if self._unwritable is None:
                log.error("replay memory %s cannot be written: %s", self.path, exc)
            self._unwritable = sqlite_files.reason(exc)
            return False
        if self._unwritable is not None:
            log.warning("replay memory %s takes writes again", self.path)
            self._unwritable = None
        return True

    def _open(self, fresh: bool = False) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite_files.connect(self.path, cache_kib=CACHE_KIB, exclusive=self._exclusive)
            try:
                db.execute("CREATE TABLE IF NOT EXISTS accepted (key TEXT PRIMARY KEY, expires REAL NOT NULL)"
                           " WITHOUT ROWID")
                db.execute("CREATE INDEX IF NOT EXISTS accepted_expires ON accepted (expires)")
                db.execute("PRAGMA quick_check").fetchone()
            except BaseException:
                db.close()
                raise
        except (sqlite3.Error, OSError) as exc:
            if sqlite_files.is_corrupt(exc) and not fresh:
                bad = sqlite_files.set_aside_db(self.path)
                log.error("replay memory %s damaged (%s): set aside as %s; commands are refused for %s from now",
                          self.path, exc, bad.name if bad else "(could not be moved)", COMMAND_MAX_LIFETIME)
                self._lost = True
                self._open(fresh=True)
                return
            if self._unreadable is None:
                log.error("replay memory %s cannot be opened (%s): config pushes and commands are refused until it"
                          " can", self.path, exc)
            self._unreadable = sqlite_files.reason(exc)
            return
        if self._unreadable is not None:
            log.warning("replay memory %s open again", self.path)
        self._db, self._unreadable = db, None
        try:
            os.chmod(self.path, 0o600)
        except OSError as exc:
            log.warning("replay memory %s: mode not set: %s", self.path, exc)
