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

This module holds the numbers and the rules; the outbox (agent/adapters/
outbox.py) writes ``meta_values()`` in its transactions. It does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

FIRST_SEQ = 1


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

    @property
    def next(self) -> int:
        """The seq after the last one seen: what a clean stop stores."""
        return self.last + 1

    def note(self, seq: int) -> bool:
        """A report with this seq was made. True if the reservation must be
        persisted now, before the report goes out (it crossed the reservation)."""
        self.last = max(self.last, seq)
        if seq >= self.reserved:
            self.reserved = seq + self._block
            self.dirty = True
            return True
        return False

    def top_up(self) -> None:
        """At a batch commit: extend the reservation when less than half a block is left."""
        if self.reserved - self.last < self._block // 2:
            self.reserved = self.last + 1 + self._block
            self.dirty = True

    def meta_values(self) -> dict[str, int]:
        """What the outbox writes in ``meta`` with each commit that carries the reservation."""
        return {"seq_reserved": self.reserved}

    def clean_stop_values(self) -> dict[str, int]:
        """What a clean stop writes: the next run resumes at exactly ``next``."""
        return {"clean": 1, "seq_next": self.next}

    def persisted(self) -> None:
        """The values were committed."""
        self.dirty = False
