"""The remote-request worker (agent.adapters.remote_worker): off the core thread, one result each.

Real config store and replay memory in a temporary state directory; the core's inbox is a
queue the test reads with a timeout.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import admin_tools
from agent.adapters.config_store import CURRENT_NAME, ConfigStore
from agent.adapters.remote_worker import CommandDone, ConfigDone, ConfigStateChanged, RemoteWorker
from agent.adapters.replay_store import ReplayStore
from agent.adapters.time_floor_store import TimeFloorStore
from agent.config_validate import parse_config
from agent.core.events import DispatchRefused, MessageReceived
from agent.core.remote_config import ConfigState
from agent.core.rollback_guard import Armed
from agent.core.time_floor import UnitClock
from hil.wait import wait_until

NOW = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.timezone.utc)
DISPATCH_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))
ADMIN_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
UNIT = "KEN-C-01"
ALARM = "8f14e45f-ceea-4e7a-9b3c-1d2e3f405a6b"
CALL = {"id": "C-7", "action": "new", "priority": 1, "nature": "Vol", "address": "Rue 12",
        "created": "2026-11-25T19:58:00Z"}


class Inbox:
    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue()
        self.threads: list[str] = []

    def post(self, event: Any) -> None:
        self.threads.append(threading.current_thread().name)
        self.q.put(event)

    def next(self, timeout: float = 5.0) -> Any:
        return self.q.get(timeout=timeout)


@pytest.fixture
def make(tmp_path):
    made: list[RemoteWorker] = []

    def build(validate=None, security: dict | None = None, store: ConfigStore | None = None,
              source: str = "gnss", floor: dt.datetime | None = None,
              floor_store: TimeFloorStore | None = None) -> tuple[RemoteWorker, Inbox]:
        base = parse_config({"unit": {"id": UNIT, "kind": "car"}, "storage": {"state_dir": str(tmp_path)},
                             **({"security": security} if security else {})})
        inbox = Inbox()
        worker = RemoteWorker(ConfigState.initial(base), store or ConfigStore(tmp_path, parse_config),
                              ReplayStore(tmp_path), post=inbox.post,
                              clock=lambda: UnitClock(NOW, source != "system_unsynced", floor),
                              validate=validate or parse_config, floor=floor_store)
        worker.start()
        made.append(worker)
        return worker, inbox

    yield build
    for worker in made:
        worker.stop()


def push(version: int = 1, rid: str | None = None, **config: Any) -> bytes:
    return json.dumps({"id": rid or f"r{version}", "version": version,
                       "config": config or {"telemetry": {"rate_hz": 2}}}).encode()


def test_a_push_is_validated_and_stored_on_the_worker_and_one_result_comes_back(make, tmp_path) -> None:
    seen_on: list[str] = []

    def validate(data, source="<config>", *, strict=False):
        seen_on.append(threading.current_thread().name)
        return parse_config(data, source, strict=strict)

    worker, inbox = make(validate)
    assert worker.wants("config/set") and worker.wants("cmd") and not worker.wants("call")
    worker.submit("config/set", push())
    done = inbox.next()
    assert isinstance(done, ConfigDone) and done.result.ok and done.state is not None
    assert done.state.config.telemetry.rate_hz == 2
    assert seen_on == ["remote-requests"] and inbox.threads == ["remote-requests"]
    assert json.loads((tmp_path / CURRENT_NAME).read_text())["version"] == 1
    assert worker.state is done.state
    with pytest.raises(queue.Empty):
        inbox.next(timeout=0.2)  # one result, not more


def test_a_command_and_its_replay(make) -> None:
    worker, inbox = make()
    body = json.dumps({"id": "c1", "command": "report_position"}).encode()
    worker.submit("cmd", body)
    first = inbox.next()
    assert isinstance(first, CommandDone) and first.outcome.command is not None
    worker.submit("cmd", body)
    again = inbox.next()
    assert again.outcome.rejected is not None and again.outcome.rejected.errors[0].msg == "this command was already handled"


def test_a_stuck_job_is_abandoned_answered_and_never_applied(make, tmp_path) -> None:
    release = threading.Event()

    def slow(data, source="<config>", *, strict=False):
        release.wait(10)
        return parse_config(data, source, strict=strict)

    worker, inbox = make(slow)
    worker.submit("config/set", push(rid="slow-1"))
    # The core calls overdue() on every loop; a clock past the timeout, not a sleep.
    wait_until(lambda: worker.overdue(time.monotonic() + worker.timeout_s + 1), 5, "the job to start")
    answer = inbox.next()
    assert isinstance(answer, ConfigDone) and not answer.result.ok and answer.result.id == "slow-1"
    assert "nothing was applied" in answer.result.errors[0].msg
    release.set()
    # The worker finishes validating, sees it was abandoned, stores and posts nothing.
    worker.submit("cmd", json.dumps({"id": "after", "command": "flush_backlog"}).encode())
    assert isinstance(inbox.next(), CommandDone)
    assert not (tmp_path / CURRENT_NAME).exists() and worker.state.version == 0
    assert worker.stats.timed_out == 1


def test_a_store_that_cannot_write_refuses_the_push(make, tmp_path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the state directory should be")
    worker, inbox = make(store=ConfigStore(blocked, parse_config))
    worker.submit("config/set", push())
    done = inbox.next()
    assert isinstance(done, ConfigDone) and not done.result.ok and done.state is None
    assert "cannot store" in done.result.errors[0].msg and worker.state.version == 0


def test_signed_dispatch_goes_through_the_worker(make) -> None:
    worker, inbox = make(security={"dispatch_keys": [admin_tools.public_text(DISPATCH_KEY)]})
    assert worker.wants("call") and worker.wants("alarm/clear")
    call = json.dumps(admin_tools.dispatch_request(DISPATCH_KEY, UNIT, "call", CALL, now=NOW)).encode()
    worker.submit("call", call)
    ok = inbox.next()
    assert isinstance(ok, MessageReceived) and ok.verified and ok.topic == "call" and ok.payload == call
    worker.submit("call", call)  # a copy: dropped, no answer
    worker.submit("alarm/clear", b"")
    refused = inbox.next()
    assert isinstance(refused, DispatchRefused) and refused.error.startswith("sig: required")
    assert worker.stats.replays_dropped == 1
    # An answer to an alarm goes to the core, which applies it to the alarm it names only; a copy
    # changes nothing there, so it needs no replay memory.
    clear = json.dumps(admin_tools.dispatch_request(DISPATCH_KEY, UNIT, "alarm/clear", {"id": ALARM},
                                                    now=NOW)).encode()
    for _ in range(2):
        worker.submit("alarm/clear", clear)
        ok = inbox.next()
        assert isinstance(ok, MessageReceived) and ok.verified and ok.payload == clear


def test_confirm_and_rollback_are_stored_by_the_worker(make, tmp_path) -> None:
    worker, inbox = make()
    worker.submit("config/set", push(1, mqtt={"host": "other-broker"}))
    done = inbox.next()
    assert done.state.pending and done.change.dangerous
    worker.confirm(1)
    confirmed = inbox.next()
    assert isinstance(confirmed, ConfigStateChanged) and not confirmed.state.pending and confirmed.rolled_back is None
    assert json.loads((tmp_path / CURRENT_NAME).read_text())["pending"] is False
    worker.submit("config/set", push(2, mqtt={"host": "unreachable"}))
    assert inbox.next().state.pending
    armed = Armed(2, "r2", 0.0)
    worker.rollback(armed)
    rolled = inbox.next()
    assert isinstance(rolled, ConfigStateChanged) and rolled.rolled_back is armed and rolled.rolled_version == 2
    assert rolled.state.version == 1 and rolled.state.config.mqtt.host == "other-broker"


def test_without_trusted_time_the_floor_judges_and_a_config_push_waits(make, tmp_path) -> None:
    # No GNSS time, the system clock not synchronised; the unit has proof that it is at least FLOOR.
    floor = NOW - dt.timedelta(minutes=30)
    worker, inbox = make(security={"dispatch_keys": [admin_tools.public_text(DISPATCH_KEY)]}, source="system_unsynced",
                         floor=floor)

    def cmd(rid: str, expires: dt.datetime) -> bytes:
        return json.dumps({"id": rid, "command": "flush_backlog", "expires": iso(expires)}).encode()

    # A command the floor proves expired is refused as expired; one it cannot judge runs (no clock needed).
    worker.submit("cmd", cmd("c1", floor - dt.timedelta(seconds=1)))
    refused = inbox.next().outcome.rejected
    assert refused is not None and [p.loc for p in refused.errors] == ["expires"]
    assert "expired at" in refused.errors[0].msg and "proof that it is at least" in refused.errors[0].msg
    worker.submit("cmd", cmd("c2", floor + dt.timedelta(minutes=5)))
    assert inbox.next().outcome.command is not None
    worker.submit("cmd", cmd("c2", floor + dt.timedelta(minutes=5)))  # and a copy is still refused by its id
    assert inbox.next().outcome.rejected.errors[0].msg == "this command was already handled"
    # A config push waits for trusted time, unless the floor already proves it expired.
    worker.submit("config/set", json.dumps({"id": "r1", "version": 1, "config": {"telemetry": {"rate_hz": 2}},
                                            "expires": iso(NOW + dt.timedelta(days=1))}).encode())
    waits = inbox.next().result
    assert not waits.ok and [(p.loc, "cannot be judged yet" in p.msg) for p in waits.errors] == [("expires", True)]
    worker.submit("config/set", json.dumps({"id": "r2", "version": 1, "config": {"telemetry": {"rate_hz": 2}},
                                            "expires": iso(floor - dt.timedelta(hours=1))}).encode())
    assert "proof that it is at least" in inbox.next().result.errors[0].msg
    # A signed call is shown; one the floor proves expired is refused.
    call = admin_tools.dispatch_request(DISPATCH_KEY, UNIT, "call", CALL, now=NOW)
    worker.submit("call", json.dumps(call).encode())
    shown = inbox.next()
    assert isinstance(shown, MessageReceived) and shown.verified
    old = admin_tools.dispatch_request(DISPATCH_KEY, UNIT, "call", {**CALL, "id": "C-OLD"}, now=floor - dt.timedelta(hours=1))
    worker.submit("call", json.dumps(old).encode())
    refused = inbox.next()
    assert isinstance(refused, DispatchRefused) and refused.id == "C-OLD" and "proof that it is at least" in refused.error
    # Dispatch's answer to an alarm needs no clock: its alarm id, not its expiry, makes it fresh.
    clear = json.dumps(admin_tools.dispatch_request(DISPATCH_KEY, UNIT, "alarm/clear", {"id": ALARM},
                                                    now=NOW)).encode()
    worker.submit("alarm/clear", clear)
    dispatch = inbox.next()
    assert isinstance(dispatch, MessageReceived) and dispatch.verified and dispatch.payload == clear


def test_a_signed_request_raises_the_floor_by_its_issued_time(make, tmp_path) -> None:
    store = TimeFloorStore(tmp_path, time.monotonic())
    worker, inbox = make(security={"dispatch_keys": [admin_tools.public_text(DISPATCH_KEY)]}, source="system_unsynced",
                         floor_store=store)
    assert store.at(time.monotonic()) is None
    signed_at = NOW - dt.timedelta(minutes=2)
    worker.submit("call", json.dumps(admin_tools.dispatch_request(DISPATCH_KEY, UNIT, "call", CALL, now=signed_at)).encode())
    assert inbox.next().verified
    proven = store.at(time.monotonic())
    assert proven is not None and signed_at - dt.timedelta(seconds=1) <= proven < signed_at + dt.timedelta(seconds=30)
    # A forged one proves nothing: only a key the unit trusts can vouch for the time.
    forged = admin_tools.dispatch_request(ADMIN_KEY, UNIT, "call", {**CALL, "id": "C-F"}, now=NOW + dt.timedelta(days=9))
    worker.submit("call", json.dumps(forged).encode())
    assert isinstance(inbox.next(), DispatchRefused)
    assert store.at(time.monotonic()) < NOW


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
