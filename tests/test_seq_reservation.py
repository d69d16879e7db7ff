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
    assert res.meta_values() == {"seq_reserved": 9}
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


