"""The unit's state file: status, alarm and calls, so they survive a power loss.

The core says what its state is (:meth:`agent.core.unit.Unit.persistent_state`);
this adapter only stores it (atomically, fsynced: see
:func:`~agent.adapters.config_store.write_atomic`) when it changed, and reads
it back at start. A file that cannot be read is reported and ignored: the unit
starts from its defaults rather than not at all.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from agent.adapters.config_store import write_atomic

log = logging.getLogger("agent.state_file")

STATE_FILE = "unit-state.json"


class UnitStateFile:
    """``<state_dir>/unit-state.json``, written only when the state changed."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / STATE_FILE
        self._stored: dict[str, Any] | None = None

    def changed(self, state: dict[str, Any]) -> bool:
        """True when ``state`` differs from what is on disk."""
        return state != self._stored

    def store(self, state: dict[str, Any]) -> None:
        """Write ``state``. Raises ``OSError`` (a full disk...): it is then still unstored."""
        body = json.dumps(state, ensure_ascii=False, sort_keys=True).encode("utf-8")
        write_atomic(self.path, body)
        self._stored = state

    def load(self) -> dict[str, Any] | None:
        """The stored state, or ``None`` when there is none or it is unreadable (logged)."""
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("stored unit state %s unreadable (%s); starting from the defaults", self.path, exc)
            return None
        return state

    def mark_stored(self, state: dict[str, Any]) -> None:
        """What is on disk is known to be ``state`` (the state just restored from it)."""
        self._stored = state
