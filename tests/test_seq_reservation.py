"""The telemetry seq: the reservation's rules on their own, and through the store across
clean stops and kill -9."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.adapters.outbox import Outbox
from agent.adapters.seq_reservation import FIRST_SEQ, SeqReservation
from agent.core.publish import Lane, Publish


def report(seq: int) -> Publish:
    return Publish("telemetry", json.dumps({"seq": seq}).encode(), Lane.LIVE, seq=seq)


# ------------------------------------------------------------ the rules


def test_a_new_unit_starts_at_the_first_seq() -> None:
    res = SeqReservation({}, block=100)
    assert (res.first, res.next, res.reserved, res.dirty) == (FIRST_SEQ, FIRST_SEQ, FIRST_SEQ + 100, True)


def test_after_a_clean_stop_the_run_resumes_at_exactly_the_stored_next_seq() -> None:
    res = SeqReservation({"clean": 1, "seq_next": 42, "seq_reserved": 400}, block=100)
    assert res.first == 42


def test_after_a_crash_the_run_resumes_at_the_reservation_never_below() -> None:
    assert SeqReservation({"clean": 0, "seq_next": 42, "seq_reserved": 400}, block=100).first == 400
    # A reservation below the last clean stop's next seq (a store from before the stop) is not used.
    assert SeqReservation({"clean": 0, "seq_next": 500, "seq_reserved": 400}, block=100).first == 500


def test_a_report_that_crosses_the_reservation_must_be_persisted_before_it_goes_out() -> None:
    res = SeqReservation({}, block=4)
    res.persisted()
    assert [res.note(seq) for seq in range(1, 5)] == [False, False, False, False]
    assert not res.dirty
    assert res.note(5) is True  # 5 >= 1 + 4
    assert res.dirty and res.reserved == 9
    assert res.meta_values()["seq_reserved"] == 9
    assert res.clean_stop_values() == {"clean": 1, "seq_next": 6}


def test_a_commit_tops_the_reservation_up_when_less_than_half_a_block_is_left() -> None:
    res = SeqReservation({}, block=10)
    res.persisted()
    for seq in range(1, 6):
        res.note(seq)
    res.top_up()
    assert not res.dirty  # 11 - 5 = 6 left, not under half
    res.note(6)
    res.note(7)
    res.top_up()
    assert res.dirty and res.reserved == 18


def test_a_block_under_two_is_refused() -> None:
    with pytest.raises(ValueError):
        SeqReservation({}, block=1)


# ------------------------------------------------------ through the store


def test_seq_continues_exactly_after_a_clean_close(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    assert box.next_seq() == 1
    for seq in range(1, 6):
        box.put(report(seq))
    box.close()
    box = Outbox(tmp_path)
    assert box.next_seq() == 6
    box.close()


def _crash_after(state_dir: Path, seqs: range, seq_block: int) -> None:
    """Put reports in a child process that then dies by SIGKILL (no close)."""
    code = textwrap.dedent(
        f"""
        import os, signal, json
        from agent.adapters.outbox import Outbox
        from agent.core.publish import Lane, Publish
        box = Outbox({str(state_dir)!r}, seq_block={seq_block}, commit_interval_s=3600)
        for seq in range({seqs.start}, {seqs.stop}):
            box.put(Publish("telemetry", json.dumps({{"seq": seq}}).encode(), Lane.LIVE, seq=seq))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], timeout=30)
    assert proc.returncode == -9


def test_seq_is_never_reused_after_a_crash(tmp_path: Path) -> None:
    box = Outbox(tmp_path, seq_block=4)
    start = box.next_seq()
    box.close()
    # 10 reports cross the 4-report reservation twice: each crossing is forced to disk.
    _crash_after(tmp_path, range(start, start + 10), seq_block=4)
    box = Outbox(tmp_path, seq_block=4)
    assert box.next_seq() > start + 9
    resumed = box.next_seq()
    box.close()
    _crash_after(tmp_path, range(resumed, resumed + 1), seq_block=4)
    box = Outbox(tmp_path, seq_block=4)
    assert box.next_seq() > resumed
    box.close()




# ------------------------------------------------------ the declared gap


def test_a_crash_declares_the_range_from_the_last_durable_seq_to_the_new_start() -> None:
    res = SeqReservation({"clean": 0, "seq_next": 1, "seq_reserved": 500, "seq_durable": 120}, block=100)
    assert res.first == 500
    assert res.gap_json() == {"from": 120, "to": 499}


def test_a_clean_stop_declares_no_gap() -> None:
    assert SeqReservation({"clean": 1, "seq_next": 42, "seq_reserved": 400, "seq_durable": 30}, block=100).gap is None
    assert SeqReservation({}, block=100).gap is None


def test_a_gap_never_declared_to_a_broker_is_carried_into_the_next_run_even_after_a_clean_stop() -> None:
    res = SeqReservation({"clean": 0, "seq_next": 1, "seq_reserved": 500, "seq_durable": 120}, block=100)
    assert res.meta_values()["gap_from"] == 120
    # This run stops cleanly at 700, offline all along: its birth never reached a broker.
    carried = SeqReservation({"clean": 1, "seq_next": 700, "seq_reserved": 800, "gap_from": 120}, block=100)
    assert carried.gap == (120, 699)
    carried.persisted()
    carried.gap_declared()
    assert carried.dirty and carried.meta_values()["gap_from"] == 0


def test_the_durable_mark_rides_on_commits_that_write_and_never_forces_one() -> None:
    res = SeqReservation({}, block=100)
    res.persisted()
    res.note_durable(10, writing=False)
    assert not res.dirty and res.meta_values()["seq_durable"] == 10
    res.note_durable(12, writing=True)
    assert res.dirty
    res.persisted()
    res.note_durable(12, writing=True)
    assert not res.dirty


def _run_then_kill(code: str) -> list[str]:
    """Run ``code`` in a child that then dies by SIGKILL; returns the lines it printed."""
    body = textwrap.dedent(
        """
        import os, signal, json
        from agent.adapters.outbox import Outbox
        from agent.core.publish import Lane, Publish
        def report(seq):
            return Publish("telemetry", json.dumps({"seq": seq}).encode(), Lane.LIVE, seq=seq)
        """
    ) + textwrap.dedent(code) + "\nimport sys; sys.stdout.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
    proc = subprocess.run([sys.executable, "-c", body], cwd=Path(__file__).parents[1], timeout=60,
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    return proc.stdout.split()


def test_every_seq_a_crash_loses_is_inside_the_gap_the_next_run_declares(tmp_path: Path) -> None:
    acked = _run_then_kill(
        f"""
        box = Outbox({str(tmp_path)!r}, seq_block=50, commit_interval_s=3600)
        for seq in range(1, 41):
            box.put(report(seq))
            (rec,) = box.take(Lane.LIVE, 1)
            if seq % 3:
                box.ack(rec.id)  # reached the broker
                print(seq)
            else:
                box.nack(rec.id)  # lost on the way: backlog
            if seq == 20:
                box.commit()
        """
    )
    box = Outbox(tmp_path, seq_block=50)
    stored = {r.seq for r in box.take(Lane.BACKLOG, 1000)}
    gap = box.seq_gap()
    assert gap is not None and gap["to"] == box.next_seq() - 1
    declared = set(range(gap["from"], gap["to"] + 1))
    received = {int(s) for s in acked} | stored
    assert set(range(1, box.next_seq())) <= received | declared
    # The commit at 20 made everything before it safe: the gap starts after it.
    assert gap["from"] == 21
    box.close()


def test_after_the_power_fail_commit_a_kill_loses_nothing_and_declares_nothing(tmp_path: Path) -> None:
    _run_then_kill(
        f"""
        box = Outbox({str(tmp_path)!r}, commit_interval_s=3600)
        for seq in range(1, 31):
            box.put(report(seq))
            box.take(Lane.LIVE, 1)  # sent, never acknowledged: the link is down
        box.seal()
        for seq in range(31, 34):  # made after the warning, before the cut
            box.put(report(seq))
        """
    )
    box = Outbox(tmp_path)
    assert sorted(r.seq for r in box.take(Lane.BACKLOG, 1000)) == list(range(1, 34))
    assert box.next_seq() == 34
    assert box.seq_gap() is None
    box.close()
