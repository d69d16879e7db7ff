"""Telemetry ``seq``: contiguous and never reused across restarts, crashes and power cuts.

What it is for
--------------
A track server orders a unit's reports and counts the missing ones by ``seq``.
A seq handed out twice would make it throw a real report away as a duplicate,
so a seq must never be reused, even after a kill -9 or a power cut; and
writing the seq to the SD card at every report would wear the card out.

How it works
------------
The outbox persists a *reservation* in its ``meta`` table: a high-water mark
``block`` ahead of the last seq seen. It rides on the outbox's batch commits
(topped up when less than half a block is left) and is forced to disk by
itself before a report crosses it. A clean stop stores the exact next seq
(``seq_next``, ``clean`` = 1); after a crash the next run starts at the
reservation: a gap of at most ``block``, never a reuse.

The gap explains itself. With each commit that writes, the outbox also
stores ``seq_durable``: every seq below it is acknowledged by the broker or on
disk. After a crash the seq from ``seq_durable`` up to the new run's first seq
are the only ones that may be missing for good: the crash tail (made, not yet
committed nor acknowledged) and the unused reservation. The new run declares
that range as its ``gap`` (the ``seq_gap`` of the ``online`` birth message,
docs/mqtt-api.md). It is a range, not a count: seq inside it that reached the
broker before the crash, or that wait on disk and are sent later, are
received as usual; a consumer counts as "declared lost" only those of the
range it never receives. ``seq_durable`` rides on commits that write anyway
(it is never a reason to write by itself, to spare the card), so online,
where reports are acknowledged before any commit, it moves at the
reservation's top-ups (every ``block / 2`` reports) and the declared range
may be wider than the loss; never narrower. A clean stop, or the power-fail
commit, stores the exact next seq: the next run declares no gap.

When the card refuses writes
----------------------------
A full card refuses the outbox's commits, and a read-only one even its open:
the reservation and the exact next seq of a clean stop would then not reach
the card, and the next run would hand out the same seq again. So the same
values are also kept in a reserve (agent/adapters/reserve.py: a file of fixed
size rewritten in place, which a full card still takes, and a copy in RAM,
which survives a restart of the agent on any card). Each write of the values,
to either place, carries a generation (``gen``) one higher than the last:
:func:`choose` starts the next run from whichever place was written last. The
reserve copy is written only when a value a restart needs changes (the
reservation, a clean stop, a gap to carry), never for ``seq_durable`` alone:
an older ``seq_durable`` only widens the declared range.

This module holds the numbers and the rules; the outbox (agent/adapters/
outbox.py) writes ``meta_values()`` in its transactions and the reserve copy.
It does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIRST_SEQ = 1
# What a run starts from (the generation aside); the reserve copy holds these.
SEQ_KEYS = ("clean", "seq_next", "seq_reserved", "seq_durable", "gap_from")


def choose(meta: Mapping[str, Any], copy: tuple[int, Mapping[str, Any]] | None) -> tuple[dict[str, int], int]:
    """The seq values to start from, and the newest generation seen.

    ``meta``: the outbox's ``meta`` table (``gen`` among its keys, 0 when an older
    agent wrote it); ``copy``: the reserve's ``(gen, values)``, or None. The one
    written last wins; on a tie the outbox's (same values, a fresher ``seq_durable``).
    """
    meta_gen = _int(meta.get("gen")) or 0
    values = {k: v for k in SEQ_KEYS if (v := _int(meta.get(k))) is not None}
    if copy is None or copy[0] <= meta_gen:
        return values, max(meta_gen, copy[0] if copy else 0)
    return {k: v for k in SEQ_KEYS if (v := _int(copy[1].get(k))) is not None}, copy[0]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class SeqReservation:
    """The seq of this run and the reservation that protects it after a crash."""

    def __init__(self, meta: Mapping[str, int], block: int) -> None:
        if block < 2:
            raise ValueError("seq_block must be at least 2")
        self._block = block
        clean = meta.get("clean", 1)
        seq_next = meta.get("seq_next", FIRST_SEQ)
        reserved = meta.get("seq_reserved", FIRST_SEQ)
        # After a crash reports up to the reservation may have been sent: skip them.
        self.first = seq_next if clean else max(seq_next, reserved)
        self.last = self.first - 1
        self.reserved = self.first + block
        self.dirty = True  # the reservation differs from what is on disk
        # What a crash of the previous run may have lost for good (see the module docstring).
        # A gap a previous run could not declare (its birth never reached a broker) is
        # carried on until one is: ``gap_from`` stays in ``meta`` until then.
        starts = [meta["gap_from"]] if meta.get("gap_from") else []
        if not clean:
            starts.append(meta.get("seq_durable", seq_next))
        self.gap: tuple[int, int] | None = None
        if starts and min(starts) < self.first:
            self.gap = (min(starts), self.first - 1)
        self._gap_pending = self.gap is not None
        self.durable = self.first  # every seq below is acknowledged or on disk
        self._durable_on_disk: int | None = None
        # Every seq below this is covered by a reservation on the card (the outbox's or the
        # reserve copy); nothing yet: this run's first reservation is not written.
        self._safe_until = self.first

    @property
    def next(self) -> int:
        """The seq after the last one seen: what a clean stop stores."""
        return self.last + 1

    def note(self, seq: int) -> bool:
        """A report with this seq was made. True if the reservation must be
        persisted now, before the report goes out (it crossed the reservation
        last written: while the card refuses writes, every report asks again)."""
        self.last = max(self.last, seq)
        if seq >= self.reserved:
            self.reserved = seq + self._block
            self.dirty = True
        return seq >= self._safe_until

    def top_up(self) -> None:
        """At a batch commit: extend the reservation when less than half a block is left."""
        if self.reserved - self.last < self._block // 2:
            self.reserved = self.last + 1 + self._block
            self.dirty = True

    def note_durable(self, durable: int, *, writing: bool) -> None:
        """At a commit: every seq below ``durable`` is acknowledged or on disk once it is
        done. Carried when the commit writes anyway (``writing``), never a write by itself."""
        self.durable = durable
        if writing and durable != self._durable_on_disk:
            self.dirty = True

    def meta_values(self) -> dict[str, int]:
        """What the outbox writes in ``meta`` with each commit that carries the reservation."""
        return {"seq_reserved": self.reserved, "seq_durable": self.durable,
                "gap_from": self.gap[0] if self.gap is not None and self._gap_pending else 0}

    def gap_declared(self) -> None:
        """The birth that declares the gap reached a broker: the next run need not repeat it."""
        if self._gap_pending:
            self._gap_pending = False
            self.dirty = True

    def clean_stop_values(self) -> dict[str, int]:
        """What a clean stop (or the power-fail commit) writes: the next run resumes at
        exactly ``next`` and declares no gap."""
        return {"clean": 1, "seq_next": self.next}

    def persisted(self) -> None:
        """The values were committed (to the outbox's database)."""
        self.dirty = False
        self._durable_on_disk = self.durable
        self.safe()

    def safe(self) -> None:
        """The reservation is on the card (the database or the reserve copy took it)."""
        self._safe_until = self.reserved

    def gap_json(self) -> dict[str, int] | None:
        """``seq_gap`` of the birth message: ``{"from": a, "to": b}`` or None."""
        return None if self.gap is None else {"from": self.gap[0], "to": self.gap[1]}
