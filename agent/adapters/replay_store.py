"""The replay memory on disk: ids of accepted signed requests, kept until they expire.

A small SQLite database, ``replay.sqlite3`` in ``[storage] state_dir``, one
row per accepted request (``key``, ``expires`` as Unix seconds). It
implements :class:`agent.core.replay.ReplayMemory` for the remote-request
worker, the only thread that uses it.

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
- A damaged database is moved aside as ``replay.sqlite3.bad`` and a new one
  started (logged): the unit keeps working; the window that reopens is the
  one that version numbers (config) and expiry times still bound.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "replay.sqlite3"
CAPACITY = 20_000
DEFAULT_RETENTION = dt.timedelta(hours=24)
# SQLite's page cache for this connection, in KiB (its default is 2,000 KiB,
# kept for the life of the process once filled; a lookup here is rare).
CACHE_KIB = 128


class ReplayStore:
    """Durable :class:`~agent.core.replay.ReplayMemory`; one thread at a time."""

    def __init__(self, state_dir: str | Path, capacity: int = CAPACITY):
        self.path = Path(state_dir) / FILE_NAME
        self.capacity = capacity
        self.refused_full = 0
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            bad = self.path.with_name(FILE_NAME + ".bad")
            log.error("replay memory %s unreadable (%s): set aside as %s, starting empty", self.path, exc, bad.name)
            os.replace(self.path, bad)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE IF NOT EXISTS accepted (key TEXT PRIMARY KEY, expires REAL NOT NULL) WITHOUT ROWID")
            db.execute("CREATE INDEX IF NOT EXISTS accepted_expires ON accepted (expires)")
            db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        os.chmod(self.path, 0o600)
        return db

    def seen(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM accepted WHERE key = ?", (key,)).fetchone() is not None

    def remember(self, key: str, until: dt.datetime | None, now: dt.datetime) -> bool:
        expires = (until or now + DEFAULT_RETENTION).timestamp()
        self.prune(now)
        (live,) = self._db.execute("SELECT count(*) FROM accepted").fetchone()
        if live >= self.capacity:
            self.refused_full += 1
            log.error("replay memory full (%d live ids): refusing a signed request", live)
            return False
        self._db.execute("INSERT OR REPLACE INTO accepted (key, expires) VALUES (?, ?)", (key, expires))
        return True

    def prune(self, now: dt.datetime) -> int:
        return self._db.execute("DELETE FROM accepted WHERE expires <= ?", (now.timestamp(),)).rowcount

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM accepted").fetchone()[0])

    def close(self) -> None:
        self._db.close()
