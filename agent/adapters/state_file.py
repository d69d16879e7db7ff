"""The unit's state file: status, alarm and calls, so they survive a power loss.

The core says what its state is (:meth:`agent.core.unit.Unit.persistent_state`);
this adapter only stores it (atomically, fsynced: see
:func:`~agent.adapters.config_store.write_atomic`) when it changed, and reads
it back at start.

A full card refuses the new file a write needs. So the state is also kept in
a reserve (``unit-state.reserve``, agent/adapters/reserve.py: a file of fixed
size made at start while the card has room, rewritten in place, which a full
card still takes): when the file cannot be written, the reserve takes the
state, and an alarm or a call survives a restart on a full card. Once the
file takes writes again the reserve is marked superseded. At start the reserve
wins when it holds a state the file does not.

A file that cannot be parsed is set aside (``unit-state.json.bad``, kept for
analysis, never deleted) and the unit starts from its defaults rather than
not at all. A file that cannot be read (an I/O error) is reported and left
where it is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from agent.adapters.config_store import write_atomic
from agent.adapters.reserve import SlotFile, set_aside
from agent.adapters.sqlite_files import reason

log = logging.getLogger("agent.state_file")

STATE_FILE = "unit-state.json"
RESERVE_FILE = "unit-state.reserve"
# A state larger than this (many long calls) is not kept in the reserve: only in the file.
RESERVE_SLOT = 64 * 1024


class UnitStateFile:
    """``<state_dir>/unit-state.json``, written only when the state changed."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / STATE_FILE
        self._reserve = SlotFile(Path(state_dir) / RESERVE_FILE, RESERVE_SLOT)
        self._stored: dict[str, Any] | None = None
        self._reserved: dict[str, Any] | None = None  # what the reserve holds, newer than the file
        self._gen = 0
        self.problem: str | None = None  # why the last write of the file failed (None: it went through)

    def prepare(self) -> bool:
        """Make the reserve while the card has room (at start); False when it cannot be made now."""
        if self._reserve.path.exists():
            return True
        self._gen += 1
        return self._reserve.write(self._gen, {"superseded": True})

    def changed(self, state: dict[str, Any]) -> bool:
        """True when ``state`` differs from what is on disk."""
        return state != self._stored

    def store(self, state: dict[str, Any]) -> None:
        """Write ``state``. Raises ``OSError`` (a full disk...): the file is then still unstored,
        though the reserve may hold it (a restart takes it from there)."""
        body = json.dumps(state, ensure_ascii=False, sort_keys=True).encode("utf-8")
        try:
            write_atomic(self.path, body)
        except OSError as exc:
            kept = state == self._reserved or self._write_reserve({"state": state})
            if kept:
                self._reserved = state
            self.problem = (f"unit state not written ({reason(exc)})"
                            + ("; kept in its reserve" if kept else "; kept in memory"))
            raise
        self.problem = None
        self._stored = state
        if self._reserved is not None and self._write_reserve({"superseded": True}):
            self._reserved = None

    def load(self) -> dict[str, Any] | None:
        """The stored state, or ``None`` when there is none or it is unreadable (logged)."""
        copy = self._reserve.read()
        if copy is not None:
            self._gen = copy.gen
            if isinstance(copy.body.get("state"), dict):
                log.warning("unit state restored from its reserve %s (the card refused the file)", self._reserve.path)
                self._reserved = copy.body["state"]
                return copy.body["state"]
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("stored unit state %s unreadable (%s); starting from the defaults", self.path, exc)
            return None
        try:
            state = json.loads(raw.decode("utf-8"))
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
            bad = set_aside(self.path)
            log.error("stored unit state %s unreadable (%s): set aside as %s; starting from the defaults", self.path,
                      exc, bad.name if bad else "(could not be moved)")
            return None
        return state

    def mark_stored(self, state: dict[str, Any]) -> None:
        """What is on disk is known to be ``state`` (the state just restored from it)."""
        if self._reserved is None:
            self._stored = state

    def _write_reserve(self, body: dict[str, Any]) -> bool:
        self._gen += 1
        try:
            return self._reserve.write(self._gen, body)
        except ValueError:
            return False  # too large for a slot: the file alone keeps it
