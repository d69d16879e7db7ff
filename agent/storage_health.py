"""Whether what the unit keeps reaches its card, and getting there again by itself.

Every store the agent keeps in ``[storage] state_dir`` says, in words, why it
is not durable now (``None``: it is): the outbox (its database, its writes),
the replay memory, the unit's state file, the stored remote config. The unit
is *durable* when none has a problem. That is said in the ``online`` birth,
the ``status`` message (``durable`` and ``durable_reason``, docs/mqtt-api.md)
and ``umps-agent status`` (``storage``). A unit that is not durable still
reports, takes calls and raises alarms: what it cannot store it keeps in
memory, bounded.

A thread of its own (``storage``) checks every :data:`CHECK_EVERY_S`. While
something is not durable it asks each failing store to recover (open again a
database the card refused, check that a refused write now goes through), so
the unit becomes durable again by itself once the card has room or can be
read. It calls ``on_change`` (the runtime posts an event to the core) each
time the answer changes. None of this I/O runs on the core thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("agent.storage")

CHECK_EVERY_S = 1.0
JOIN_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Store:
    """One store: why it is not durable now (None: it is), and how it tries again."""

    name: str
    problem: Callable[[], str | None]
    recover: Callable[[], object] | None = None


class StorageHealth:
    def __init__(self, stores: list[Store], on_change: Callable[[bool, str | None], None],
                 every_s: float = CHECK_EVERY_S) -> None:
        self.stores = stores
        self.on_change = on_change
        self.every_s = every_s
        self._problems: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.check()

    # ------------------------------------------------------------- answers

    @property
    def durable(self) -> bool:
        with self._lock:
            return not any(self._problems.values())

    @property
    def reason(self) -> str | None:
        """Every problem, in words (None when durable)."""
        with self._lock:
            problems = [p for p in self._problems.values() if p]
        return "; ".join(problems) if problems else None

    def snapshot(self) -> dict[str, Any]:
        """``storage`` in ``umps-agent status``."""
        with self._lock:
            stores = {name: problem or "ok" for name, problem in self._problems.items()}
        return {"durable": self.durable, "reason": self.reason, "stores": stores}

    def check(self) -> bool:
        """Ask every store now; True when the answer (durable, reason) changed."""
        before = (self.durable, self.reason)
        problems: dict[str, str | None] = {}
        for store in self.stores:
            try:
                problems[store.name] = store.problem()
            except Exception as exc:  # noqa: BLE001 - a check that fails says so, never kills the thread
                problems[store.name] = f"{store.name}: cannot be checked ({type(exc).__name__}: {exc})"
        with self._lock:
            self._problems = problems
        after = (self.durable, self.reason)
        if after != before:
            if after[0]:
                log.warning("storage durable again: everything the unit keeps reaches the card")
            else:
                log.error("storage not durable: %s", after[1])
        return after != before

    # -------------------------------------------------------------- thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="storage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                log.error("storage thread did not stop within %g s", JOIN_TIMEOUT_S)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self._round()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("storage check failed")

    def _round(self) -> None:
        with self._lock:
            failing = {name for name, problem in self._problems.items() if problem}
        for store in self.stores:
            if store.name in failing and store.recover is not None:
                try:
                    store.recover()
                except Exception:  # noqa: BLE001 - one store's failure is its own
                    log.exception("%s: recovery failed", store.name)
        if self.check():
            self.on_change(self.durable, self.reason)
