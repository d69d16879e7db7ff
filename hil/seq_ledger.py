"""A consumer's account of one unit's telemetry ``seq``: received, declared lost, lost in transit.

This is the algorithm docs/mqtt-api.md ("Counting lost reports") gives to
track servers, written once for the rig's scenarios, the fleet tooling and
the tests.

Theory of operation
-------------------
Every ``online`` birth (``{"online": true, ...}``) of a unit carries
``seq_start`` (the first seq of that run) and ``seq_gap`` (``{"from": a, "to":
b}`` or null): the seq that run declares may never come (the tail a crash or
a power cut without warning lost, and the unused reservation). Reports come
on ``telemetry`` (live) and ``telemetry/backlog`` (late, oldest first), at
least once (QoS 1: a duplicate is the same report again).

The ledger keeps the set of seq received and the declared ranges. The
*span* runs from the lowest seq known (a report or a ``seq_start``) to the
highest seq received. Every seq of the span is, at any moment:

* received;
* *declared lost*: not received and inside a declared range;
* *lost in transit*: not received and declared nowhere.

A declared range may hold seq that were received (they reached the broker
before the crash, or wait in the unit's outbox and come as backlog later):
they count as received. Until the unit's backlog has drained, a missing seq
may still arrive, so "lost in transit" is final only then (the unit's
``status`` shows its backlog; ``umps-agent status`` too). With an agent
that keeps its contract, lost in transit is zero: every seq a consumer can
miss is inside a declared range.

A birth from an agent older than this contract has no ``seq_start``: it
declares nothing, and a crash's jump in seq counts as lost in transit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SeqSummary:
    lo: int | None
    hi: int | None
    received: int  # distinct seq received in the span
    duplicates: int  # receptions of a seq already received (QoS 1 allows them)
    declared_lost: list[int]
    lost_in_transit: list[int]
    declared: list[tuple[int, int]]  # the ranges declared by births

    def to_json(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "received": self.received, "duplicates": self.duplicates,
                "declared_lost": len(self.declared_lost), "lost_in_transit": len(self.lost_in_transit),
                "lost_in_transit_seq": ranges(self.lost_in_transit),
                "declared_lost_seq": ranges(self.declared_lost),
                "declared": [list(r) for r in self.declared]}

    def text(self) -> str:
        if self.lo is None:
            return "no telemetry"
        out = (f"seq {self.lo}..{self.hi}: {self.received} received, {len(self.declared_lost)} declared lost, "
               f"{len(self.lost_in_transit)} lost in transit")
        if self.lost_in_transit:
            out += f" ({ranges(self.lost_in_transit)})"
        if self.duplicates:
            out += f", {self.duplicates} duplicate(s)"
        return out


@dataclass
class SeqLedger:
    """One unit's seq account (see the module docstring). Feed it in arrival order or not: the
    result does not depend on order."""

    received: set[int] = field(default_factory=set)
    duplicates: int = 0
    declared: list[tuple[int, int]] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    bad: int = 0  # messages without a usable seq or birth fields (counted, skipped)

    def on_birth(self, body: Any) -> None:
        """An ``online`` message body (decoded JSON); goodbyes and old births declare nothing."""
        if not isinstance(body, dict) or body.get("online") is not True:
            return
        start = body.get("seq_start")
        if isinstance(start, int) and not isinstance(start, bool):
            self.starts.append(start)
        gap = body.get("seq_gap")
        if gap is None:
            return
        if (isinstance(gap, dict) and all(isinstance(gap.get(k), int) for k in ("from", "to"))
                and gap["from"] <= gap["to"]):
            if (gap["from"], gap["to"]) not in self.declared:
                self.declared.append((gap["from"], gap["to"]))
        else:
            self.bad += 1

    def on_report(self, body: Any) -> None:
        """A ``telemetry`` or ``telemetry/backlog`` body (decoded JSON)."""
        seq = body.get("seq") if isinstance(body, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool):
            self.bad += 1
            return
        if seq in self.received:
            self.duplicates += 1
        else:
            self.received.add(seq)

    def on_message(self, topic: str, payload: bytes) -> None:
        """Any message of the unit, by its topic's last levels (``.../online``, ``.../telemetry``...)."""
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            self.bad += 1
            return
        if topic.endswith("/online") or topic == "online":
            self.on_birth(body)
        elif topic.endswith(("/telemetry", "/telemetry/backlog")) or topic in ("telemetry", "telemetry/backlog"):
            self.on_report(body)

    def is_declared(self, seq: int) -> bool:
        return any(a <= seq <= b for a, b in self.declared)

    def summary(self) -> SeqSummary:
        if not self.received:
            return SeqSummary(None, None, 0, self.duplicates, [], [], sorted(self.declared))
        lo = min(self.received | set(self.starts))
        hi = max(self.received)
        missing = [s for s in range(lo, hi + 1) if s not in self.received]
        declared = [s for s in missing if self.is_declared(s)]
        transit = [s for s in missing if not self.is_declared(s)]
        return SeqSummary(lo, hi, len(self.received), self.duplicates, declared, transit, sorted(self.declared))


def ledger_of(messages: Iterable[tuple[str, bytes]]) -> SeqLedger:
    """The ledger of ``(topic, payload)`` messages of one unit."""
    ledger = SeqLedger()
    for topic, payload in messages:
        ledger.on_message(topic, payload)
    return ledger


def ranges(values: list[int], most: int | None = None) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``; past ``most`` ranges, the rest is "…"."""
    if not values:
        return ""
    parts: list[str] = []
    start = prev = values[0]
    for v in values[1:] + [None]:  # type: ignore[list-item]
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    if most is not None and len(parts) > most:
        return ", ".join(parts[:most]) + " …"
    return ", ".join(parts)
