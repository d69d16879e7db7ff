"""The crash traces on the card: each written at once, in memory when the card fails.

The core hands every trace twice (agent/core/crash_watch.py): at the finding (what came before
and the impact) and complete. Each is its ``crash/trace`` messages (the parts, one JSON object a
line), written to ``<state_dir>/crash-traces/<id>.jsonl`` at once with the same atomic, fsynced write as the
unit's other state (a power cut leaves the previous version or the new one, never half). A card
that refuses (full, read-only, failing) does not lose it: the newest ``MEMORY_KEPT`` traces also
stay in memory, and the ``crash_trace`` command is answered from there. The directory keeps the
newest ``KEPT`` traces; older ones are removed (a trace is ~100 kB: the 20 newest take 2 MB).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from pathlib import Path

from agent.adapters.config_store import write_atomic

log = logging.getLogger(__name__)

DIR_NAME = "crash-traces"
KEPT = 20
MEMORY_KEPT = 4
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class TraceStore:
    """See the module docstring. Used from the core thread only."""

    def __init__(self, state_dir: str | Path):
        self.dir = Path(state_dir) / DIR_NAME
        self._memory: OrderedDict[str, tuple[bytes, ...]] = OrderedDict()
        self.failures = 0
        self.stored = 0

    def store(self, trace_id: str, parts: tuple[bytes, ...], complete: bool) -> bool:
        """Write the messages of ``trace_id``; False when the card refused (they are kept in memory)."""
        if not _SAFE.match(trace_id):
            raise ValueError(f"not a trace id: {trace_id!r}")
        if any(b"\n" in part for part in parts):
            raise ValueError("a crash/trace message must be one line of JSON")
        self._memory[trace_id] = parts
        self._memory.move_to_end(trace_id)
        while len(self._memory) > MEMORY_KEPT:
            self._memory.popitem(last=False)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.dir / f"{trace_id}.jsonl", b"\n".join(parts) + b"\n")
        except OSError as exc:
            self.failures += 1
            log.error("crash trace %s not written to %s (%s); kept in memory", trace_id, self.dir, exc)
            return False
        self.stored += 1
        log.warning("crash trace %s %s written to %s", trace_id, "complete" if complete else "(first part)", self.dir)
        if complete:
            self._prune()
        return True

    def get(self, trace_id: str) -> tuple[bytes, ...] | None:
        """The newest version of a trace's messages, from memory or the card; None when the unit has none."""
        if trace_id in self._memory:
            return self._memory[trace_id]
        if not _SAFE.match(trace_id):
            return None
        try:
            data = (self.dir / f"{trace_id}.jsonl").read_bytes()
        except OSError:
            return None
        return tuple(line for line in data.split(b"\n") if line.strip())

    def _prune(self) -> None:
        try:
            files = sorted(self.dir.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
            for old in files[:-KEPT]:
                old.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("crash traces: could not remove old ones: %s", exc)
