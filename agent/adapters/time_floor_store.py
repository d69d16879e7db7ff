"""The floor of authenticated time, shared by the threads and kept on the card.

:mod:`agent.core.time_floor` says what the floor is (the latest UTC the unit has proof of) and
how requests are judged by it. This adapter holds the one :class:`~agent.core.time_floor.TimeFloor`
of the running agent behind a lock, because two threads feed it: the core thread with the
trusted clock it sees at every event, the remote-request worker with the ``issued`` time of
each request whose signature held. Either may read it.

On the card it is ``time-floor.json`` in ``[storage] state_dir``, ``{"version": 1, "utc": ...}``,
written atomically (fsynced) when it has moved :data:`STORE_EVERY_S` past what is stored, and at
stop. A floor that lags is still a floor (a lower bound on the time), so the writes can be rare:
about 150 a day on a unit that runs all day, a few kB each.

Nothing here may stand between the unit and an alarm or a call: a write that fails (a full or
read-only card) is logged once, the floor stays in memory and the next write tries again; a
file that cannot be read is set aside as ``time-floor.json.bad`` (kept for analysis, never
deleted) and the unit starts with no floor, which costs only what the floor adds (requests that
expired before it are then refused only once the unit has trusted time); a file the disk will
not give back is left where it is.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from pathlib import Path

from agent.adapters.config_store import write_atomic
from agent.core.time_floor import TimeFloor

log = logging.getLogger(__name__)

FILE_NAME = "time-floor.json"
STORE_EVERY_S = 600.0


class TimeFloorStore:
    """The agent's floor; thread-safe. ``state_dir`` None: kept in memory only (tools, tests)."""

    def __init__(self, state_dir: str | Path | None, mono: float) -> None:
        self.path = Path(state_dir) / FILE_NAME if state_dir is not None else None
        self._lock = threading.Lock()
        self._floor = self._load(mono)
        self._stored = self._floor.at(mono)
        self.write_failures = 0

    # ------------------------------------------------------------ any thread

    def at(self, mono: float) -> dt.datetime | None:
        with self._lock:
            return self._floor.at(mono)

    def prove(self, when: dt.datetime, mono: float, trusted_now: dt.datetime | None = None) -> bool:
        """A signed ``issued``: at least ``when`` at ``mono`` (see :meth:`TimeFloor.prove`)."""
        with self._lock:
            raised = self._floor.prove(when, mono, trusted_now)
        if not raised and trusted_now is not None and when > trusted_now:
            log.warning("a signed request says it was issued at %s, after the unit's trusted clock (%s): "
                        "the sender's clock runs fast", when.isoformat(), trusted_now.isoformat())
        return raised

    def trust(self, now: dt.datetime, mono: float) -> None:
        """The unit's trusted clock says ``now`` at ``mono``."""
        with self._lock:
            self._floor.trust(now, mono)

    # ------------------------------------------------------- the core thread

    def maybe_save(self, mono: float) -> None:
        """Write the floor if it moved :data:`STORE_EVERY_S` past what is stored (or down)."""
        with self._lock:
            floor = self._floor.at(mono)
        if floor is None or self.path is None:
            return
        stored = self._stored
        if stored is None or floor < stored or (floor - stored).total_seconds() >= STORE_EVERY_S:
            self.save(mono)

    def save(self, mono: float) -> bool:
        """Write the floor now; False (logged once, kept in memory) when the card refuses."""
        with self._lock:
            data = self._floor.stored(mono)
            floor = self._floor.at(mono)
        if data is None or self.path is None:
            return True
        try:
            write_atomic(self.path, json.dumps(data).encode("utf-8"))
        except OSError as exc:
            self.write_failures += 1
            if self.write_failures == 1 or self.write_failures % 100 == 0:
                log.error("time floor not stored (%s): kept in memory, tried again later (%d failures)",
                          exc, self.write_failures)
            return False
        self._stored = floor
        if self.write_failures:
            log.info("time floor stored again after %d failed writes", self.write_failures)
            self.write_failures = 0
        return True

    # --------------------------------------------------------------- loading

    def _load(self, mono: float) -> TimeFloor:
        if self.path is None:
            return TimeFloor()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return TimeFloor()
        except OSError as exc:
            # Unreadable because of the disk, not the file: leave it for a later start.
            log.error("time floor %s unreadable (%s): starting without one", self.path, exc)
            return TimeFloor()
        try:
            return TimeFloor.from_stored(json.loads(raw), mono)
        except ValueError as exc:  # bad JSON (JSONDecodeError, UnicodeDecodeError) or a bad floor
            bad = self.path.with_name(FILE_NAME + ".bad")
            log.error("time floor %s damaged (%s): set aside as %s, starting without one", self.path, exc, bad.name)
            try:
                os.replace(self.path, bad)
            except OSError as move:  # never fatal: the next start tries again
                log.error("time floor %s not set aside: %s", self.path, move)
            return TimeFloor()
