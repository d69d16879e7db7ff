"""The consumer's seq account (hil/seq_ledger.py): received, declared lost, lost in transit."""

import json

from hil.seq_ledger import SeqLedger, ledger_of, ranges


def msg(topic, body):
    return (f"umps/U1/{topic}", json.dumps(body).encode())


def test_a_crash_gap_declared_by_the_next_birth_is_declared_lost_not_lost_in_transit():
    messages = [msg("online", {"online": True, "seq_start": 1, "seq_gap": None})]
    messages += [msg("telemetry", {"seq": s}) for s in range(1, 21)]
    # The crash lost 21..25; the next run starts at 3601 and declares 21..3600.
    messages.append(msg("online", {"online": True, "seq_start": 3601, "seq_gap": {"from": 21, "to": 3600}}))
    messages += [msg("telemetry", {"seq": s}) for s in range(3601, 3611)]
    summary = ledger_of(messages).summary()
    assert (summary.lo, summary.hi, summary.received) == (1, 3610, 30)
    assert summary.lost_in_transit == []
    assert summary.declared_lost == list(range(21, 3601))


def test_a_seq_missing_outside_any_declared_range_is_lost_in_transit():
    messages = [msg("online", {"online": True, "seq_start": 1, "seq_gap": None})]
    messages += [msg("telemetry", {"seq": s}) for s in (1, 2, 4, 5, 9)]
    summary = ledger_of(messages).summary()
    assert summary.lost_in_transit == [3, 6, 7, 8]
    assert ranges(summary.lost_in_transit) == "3, 6-8"
    assert "4 lost in transit (3, 6-8)" in summary.text()


def test_a_declared_seq_that_arrives_later_as_backlog_counts_as_received_and_duplicates_are_counted():
    ledger = SeqLedger()
    ledger.on_message("umps/U1/online", json.dumps({"online": True, "seq_start": 50,
                                                    "seq_gap": {"from": 10, "to": 49}}).encode())
    for s in [*range(1, 12), 50, 51]:
        ledger.on_message("umps/U1/telemetry", json.dumps({"seq": s}).encode())
    ledger.on_message("umps/U1/telemetry/backlog", json.dumps({"seq": 11}).encode())
    summary = ledger.summary()
    assert summary.declared_lost == list(range(12, 50))
    assert summary.duplicates == 1 and summary.lost_in_transit == []


def test_goodbyes_old_births_and_garbage_declare_nothing_and_are_counted_when_bad():
    ledger = SeqLedger()
    ledger.on_message("umps/U1/online", b'{"online": false, "reason": "power"}')
    ledger.on_message("umps/U1/online", b'{"online": true, "agent_version": "0.9"}')
    ledger.on_message("umps/U1/online", b'{"online": true, "seq_start": 5, "seq_gap": {"from": 9, "to": 3}}')
    ledger.on_message("umps/U1/telemetry", b"\xff not json")
    ledger.on_message("umps/U1/telemetry", b'{"seq": "7"}')
    assert ledger.declared == [] and ledger.bad == 3
