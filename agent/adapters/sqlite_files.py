"""Opening the agent's SQLite files (the outbox, the replay memory) whatever the card does.

Three things a card does to a database, each met differently:

* **Full.** Reading needs no free block, so the file must open: the
  connection takes ``locking_mode=EXCLUSIVE`` before its first read, so the
  WAL index lives in the process's memory instead of a ``-shm`` file that
  SQLite would have to create and grow (which a full card refuses, and which
  made a full card look like a damaged file). Writes then fail, and the
  caller keeps what it cannot write in memory.
* **Read-only, missing, failing (I/O errors).** The file cannot be opened:
  :func:`is_corrupt` says no, and the caller runs without it and tries again
  later. Such a file is never set aside: nothing says it is damaged.
* **Damaged** (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``). The file, with its WAL,
  is moved aside (``.bad``, kept for analysis, never deleted) and a new one
  is started; :func:`salvage_meta` first reads what it still can of a table of
  small values.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from pathlib import Path

from agent.adapters.reserve import set_aside

CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_REASONS = {
    sqlite3.SQLITE_FULL: "the card is full",
    sqlite3.SQLITE_READONLY: "the card is read-only",
    sqlite3.SQLITE_IOERR: "I/O error",
    sqlite3.SQLITE_CANTOPEN: "cannot be opened",
    sqlite3.SQLITE_BUSY: "in use by another process",
    sqlite3.SQLITE_PERM: "permission denied",
}

_OS_REASONS = {errno.ENOSPC: "the card is full", errno.EDQUOT: "the card is full", errno.EROFS: "the card is read-only",
               errno.EIO: "I/O error", errno.EACCES: "permission denied", errno.ENOENT: "no such directory"}


def connect(path: Path, *, cache_kib: int, exclusive: bool = True, page_size: int | None = None) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=FULL``; raises ``sqlite3.Error`` or ``OSError``.

    ``exclusive`` (the agent's way): the WAL index in this process's memory, set
    before anything is read (see the module docstring).
    """
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        if exclusive:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
        if page_size is not None:
            db.execute(f"PRAGMA page_size={page_size}")  # only takes effect on a new file
        db.execute(f"PRAGMA cache_size=-{cache_kib}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    except BaseException:
        db.close()
        raise
    return db


def is_corrupt(exc: BaseException) -> bool:
    """The file itself is damaged (not the card full, read-only or failing)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and code & 0xFF in CORRUPT_CODES


def reason(exc: BaseException) -> str:
    """Why a file could not be used, in words for a person (``umps-agent status``, the birth)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _REASONS:
        return _REASONS[code & 0xFF]
    if isinstance(exc, OSError):
        return _OS_REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    return str(exc)


def set_aside_db(path: Path) -> Path | None:
    """Move a damaged database and its WAL aside (``.bad``); the new path of the database."""
    bad = set_aside(path)
    if bad is not None:
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                with contextlib.suppress(OSError):
                    os.replace(side, bad.with_name(bad.name + suffix))
    return bad


def salvage_meta(path: Path, table: str = "meta") -> dict[str, int]:
    """Best effort: the integer rows of ``table`` in a damaged database (``{}`` when none read)."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error:
        return {}
    try:
        rows = db.execute(f"SELECT key, value FROM {table}").fetchall()  # noqa: S608 - a constant
    except sqlite3.Error:
        return {}
    finally:
        db.close()
    return {k: v for k, v in rows if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)}
