"""The last known fix on the card: one small record rewritten in place (agent/core/last_fix.py says when).

A :class:`~agent.adapters.reserve.Reserve` named ``last-fix.reserve``: in the
state directory (survives a power cut; a full card still takes it, since the
file's blocks are rewritten in place) and in the runtime directory (RAM:
survives a restart of the agent on any card). One store is one 4 KiB page
written and ``fdatasync``-ed, no metadata: the cheapest durable write there is.

Also the boot's id (``/proc/sys/kernel/random/boot_id``): within one boot the
monotonic clock runs on across restarts of the agent, and the age of the fix
after a restart is then exact (agent/core/last_fix.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent.adapters.reserve import Reserve
from agent.core import last_fix
from agent.core.unit import Now, Unit

log = logging.getLogger(__name__)

FILE_NAME = "last-fix.reserve"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    """This boot's id, or None where the system has none."""
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


class LastFixStore:
    def __init__(self, state_dir: str | Path, ram_dir: str | Path | None = None) -> None:
        self._reserve = Reserve(FILE_NAME, [Path(state_dir), *([Path(ram_dir)] if ram_dir is not None else [])])
        self._gen = 0
        self._failed = False

    def load(self) -> dict[str, Any] | None:
        """The newest stored record, or None."""
        copy = self._reserve.read()
        if copy is None:
            return None
        self._gen = copy.gen
        return copy.body

    def save(self, record: dict[str, Any]) -> bool:
        """Store ``record``; False (logged once per episode) when the card refused it (RAM may have it)."""
        self._gen += 1
        ok = self._reserve.write(self._gen, record)
        if ok and self._failed:
            log.info("last known fix stored again")
        elif not ok and not self._failed:
            log.error("last known fix not stored on the card (kept in memory and RAM)")
        self._failed = not ok
        return ok


class LastFixKeeper:
    """The runtime's one object for the last fix: restored at start, stored as the rule says."""

    def __init__(self, store: LastFixStore, boot: str | None = None) -> None:
        self.store = store
        self.boot = boot
        self.rule = last_fix.StoreRule()

    def restore(self, unit: Unit, now: Now) -> None:
        """Give ``unit`` the fix a previous run stored, with its age (a damaged record is ignored, logged)."""
        data = self.store.load()
        if data is None:
            return
        try:
            fix, utc = last_fix.from_record(data)
        except ValueError as exc:
            log.error("stored last fix unreadable (%s); starting without one", exc)
            return
        age = last_fix.age_after_restart(data, utc, boot=self.boot, mono=now.mono, now_utc=unit.best_time(now)[0])
        unit.restore_fix(fix, age, now)
        if unit.last_valid is fix:
            self.rule.done(fix, now.mono)  # what the card holds already
            log.info("last known fix restored: %s, %.0f s old", utc.isoformat(timespec="seconds"), age)

    def keep(self, unit: Unit, now: Now, *, stopping: bool = False) -> None:
        """Store the unit's last valid fix when the rule says so (the core thread, after each event)."""
        fix, valid_mono = unit.last_valid, unit.last_valid_mono
        if fix is None or valid_mono is None or not self.rule.due(fix, unit.has_fix(now.mono), now.mono,
                                                                     stopping=stopping):
            return
        utc = unit.last_fix_utc(now)
        assert utc is not None
        # Seen at valid_mono: the monotonic time the age is counted from after a restart in this boot.
        self.store.save(last_fix.record(fix, utc, valid_mono, self.boot))
        self.rule.done(fix, now.mono)  # tried: the next try waits for the rule (a full card: RAM has it)
