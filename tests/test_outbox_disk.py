"""The outbox when the card is full, read-only or damaged at start: it runs, and no seq is lost or reused.

Each test uses a small tmpfs of its own (tests/support/disk.py, root only) as
the state directory, and a plain directory as the runtime directory (RAM on a
unit). A "crash" closes the database connection without the outbox's own
close, as a kill would leave it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.adapters.outbox import SEQ_RESERVE_NAME, Outbox, stored_records
from agent.adapters.outbox_spill import SPILL_NAME
from agent.core.publish import Lane, Publish
from tests.support.disk import fill, small_tmpfs


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "card", "512k") as mnt:
        yield mnt


def report(seq: int) -> Publish:
    return Publish("telemetry", b'{"seq":%d}' % seq, Lane.LIVE, seq=seq)


def make(outbox: Outbox, count: int) -> list[int]:
    first = outbox.stats().next_seq
    seqs = list(range(first, first + count))
    for seq in seqs:
        outbox.put(report(seq))
    return seqs


def deliver(outbox: Outbox) -> None:
    """The broker acknowledges everything waiting."""
    for lane in Lane:
        for rec in outbox.take(lane, 10_000):
            outbox.ack(rec.id)


def crash(outbox: Outbox) -> None:
    """What a kill leaves: nothing more written, the file's lock released."""
    if outbox._db is not None:
        outbox._db.close()
        outbox._db = None
    outbox._closed = True


def test_a_restart_on_a_full_card_reuses_no_seq_and_loses_nothing(card: Path, tmp_path: Path) -> None:
    ram = tmp_path / "run"
    box = Outbox(card, ram_dir=ram, exclusive=True)
    assert make(box, 20) == list(range(1, 21))
    deliver(box)
    box.close()
    filler = fill(card)

    box = Outbox(card, ram_dir=ram, exclusive=True)  # a full card still opens
    assert box.next_seq() == 21 and box.seq_gap() is None
    assert "full" in (box.health() or "")
    made = make(box, 10)
    box.put(Publish("status", b'{"status":"en_route"}', Lane.STATUS, retain=True))
    box.close()  # the card refuses the commit: the records go to RAM, the seq to the reserve copy
    assert (ram / SPILL_NAME).exists()

    box = Outbox(card, ram_dir=ram, exclusive=True)  # restarted, the card still full
    assert box.next_seq() == 31 and box.seq_gap() is None  # neither reused nor skipped
    waiting = box.take(Lane.BACKLOG, 100)
    assert [r.seq for r in waiting] == made
    assert [r.payload for r in box.take(Lane.STATUS, 10)] == [b'{"status":"en_route"}']
    for rec in waiting:
        box.nack(rec.id)

    filler.unlink()  # room again: one commit and it is all on the card, the RAM copy gone
    assert box.commit()
    assert box.health() is None and not (ram / SPILL_NAME).exists()
    box.close()
    assert [r.seq for r in stored_records(card) if r.seq is not None] == made
    assert Outbox(card, ram_dir=ram).next_seq() == 31


def test_a_crash_on_a_full_card_declares_what_it_may_have_lost_and_reuses_nothing(card: Path, tmp_path: Path) -> None:
    box = Outbox(card, seq_block=10, exclusive=True)
    box.close()
    fill(card)
    box = Outbox(card, seq_block=10, exclusive=True)
    made = make(box, 25)  # crosses the reservation twice: each time forced to the reserve copy
    crash(box)

    box = Outbox(card, seq_block=10, exclusive=True)
    assert box.next_seq() > made[-1]
    gap = box.seq_gap()
    assert gap is not None and gap["from"] <= made[0] and gap["to"] == box.next_seq() - 1


def test_without_its_reserve_copy_a_full_card_still_keeps_the_reservation_in_ram(card: Path, tmp_path: Path) -> None:
    """A unit whose card filled up before this agent ever wrote a reserve copy: RAM keeps the seq."""
    ram = tmp_path / "run"
    Outbox(card, exclusive=True).close()
    (card / SEQ_RESERVE_NAME).unlink()
    fill(card)
    box = Outbox(card, ram_dir=ram, seq_block=10, exclusive=True)
    made = make(box, 15)
    crash(box)
    assert Outbox(card, ram_dir=ram, seq_block=10, exclusive=True).next_seq() > made[-1]


def test_a_read_only_card_leaves_the_outbox_in_memory_until_it_can_be_opened(card: Path, tmp_path: Path) -> None:
    box = Outbox(card, exclusive=True)
    make(box, 5)
    box.put(Publish("status", b"old", Lane.STATUS, retain=True))
    box.commit()
    crash(box)  # the card goes read-only with the last run's records on it
    subprocess.run(["mount", "-o", "remount,ro", str(card)], check=True)
    try:
        box = Outbox(card, exclusive=True)
        assert "unavailable" in (box.health() or "")
        assert box.next_seq() >= 6  # from the reserve copy, readable on a read-only card
        made = make(box, 3)
        box.put(Publish("status", b"new", Lane.STATUS, retain=True))
        assert not box.recover()
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(card)], check=True)
    assert box.recover() and box.health() is None
    # The last run's records first, then what this run held in memory.
    assert [r.payload for r in box.take(Lane.STATUS, 10)] == [b"old", b"new"]
    box.close()
    stored = [r.seq for r in stored_records(card) if r.seq is not None]
    assert stored[:5] == [1, 2, 3, 4, 5] and stored[-3:] == made


def test_a_damaged_database_keeps_the_seq_from_its_reserve_copy(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    make(box, 7)
    box.close()
    db = tmp_path / "outbox.sqlite3"
    db.write_bytes(b"\0" * 100 + db.read_bytes()[100:])  # the header gone: not a database any more
    box = Outbox(tmp_path)
    assert (tmp_path / "outbox.sqlite3.bad").exists()
    assert box.next_seq() == 8 and box.health() is None
