"""Crash traces on the card (agent/adapters/crash_traces.py) and the crash_trace command.

The store writes each trace at once and keeps the newest in memory, so a card that refuses
loses none; the command sends a stored trace again, as stored, on crash/trace.
"""

from __future__ import annotations

import json

from agent.adapters.crash_traces import KEPT, TraceStore
from agent.adapters.remote_worker import CommandDone
from agent.core.publish import Lane
from agent.core.remote_command import Command, CommandOutcome

from tests.test_remote_results import STAMP, Host

PARTS = (b'{"id":"t-1","part":1,"parts":2}', b'{"id":"t-1","part":2,"parts":2}')


def test_a_trace_is_written_at_once_and_read_back(tmp_path):
    store = TraceStore(tmp_path)
    assert store.store("t-1", PARTS[:1], complete=False)
    assert (tmp_path / "crash-traces" / "t-1.jsonl").read_bytes() == PARTS[0] + b"\n"
    assert store.store("t-1", PARTS, complete=True)
    assert TraceStore(tmp_path).get("t-1") == PARTS  # after a restart: from the card
    assert TraceStore(tmp_path).get("nope") is None and store.get("../etc/passwd") is None


def test_a_card_that_refuses_keeps_the_trace_in_memory(tmp_path):
    blocked = tmp_path / "state"
    blocked.write_text("a file where the directory should be")  # every write under it fails
    store = TraceStore(blocked)
    assert store.store("t-2", PARTS, complete=True) is False
    assert store.failures == 1 and store.get("t-2") == PARTS


def test_only_the_newest_traces_stay_on_the_card(tmp_path):
    store = TraceStore(tmp_path)
    for n in range(KEPT + 5):
        store.store(f"t-{n}", PARTS, complete=True)
    assert len(list((tmp_path / "crash-traces").glob("*.jsonl"))) == KEPT


def test_the_crash_trace_command_sends_the_trace_again_or_says_there_is_none(tmp_path):
    store = TraceStore(tmp_path)
    store.store("t-1", PARTS, complete=True)
    host = Host()

    def run(trace):
        host.results.handle(CommandDone(CommandOutcome(command=Command("c-9", "crash_trace", trace=trace))),
                            host.rig.now(), config=host.state.config, unit=host.rig.unit, uplink=None, traces=store)

    run("t-1")
    sent = [p for p in host.sent if p.topic == "crash/trace"]
    assert [p.payload for p in sent] == list(PARTS) and all(p.lane is Lane.BACKLOG for p in sent)
    assert host.body("cmd/result")[-1] == {"id": "c-9", "ok": True, "command": "crash_trace", "errors": [], **STAMP}
    run("t-404")
    answer = host.body("cmd/result")[-1]
    assert answer["ok"] is False and answer["errors"] == [{"loc": "trace", "msg": "no such crash trace on this unit"}]
    assert json.loads(sent[0].payload)["part"] == 1
