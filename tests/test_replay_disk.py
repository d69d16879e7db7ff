"""The replay memory when the card is full, read-only or damaged: never an empty memory that lets replays through.

The store on a small tmpfs of its own (tests/support/disk.py, root only), and
the remote-request worker in front of it, as the agent runs them: a config
push or a command the memory cannot judge is refused and says why; a signed
call or alarm answer never waits for the disk.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import admin_tools
from agent.adapters.config_store import ConfigStore
from agent.adapters.remote_worker import CommandDone, ConfigDone, RemoteWorker
from agent.adapters.replay_store import FILE_NAME, ReplayStore
from agent.config_validate import parse_config
from agent.core.events import MessageReceived
from agent.core.remote_config import ConfigState
from agent.core.replay import ReplayUnavailable
from agent.core.time_floor import UnitClock
from tests.support.disk import fill, small_tmpfs

NOW = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.timezone.utc)
DISPATCH_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))
UNIT = "KEN-C-01"


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "card", "512k") as mnt:
        yield mnt


def remount(card: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(card)], check=True)


def later(hours: float) -> dt.datetime:
    return NOW + dt.timedelta(hours=hours)


def test_a_full_card_opens_the_memory_which_keeps_refusing_replays_and_keeping_nothing_new(card: Path) -> None:
    store = ReplayStore(card)
    assert store.remember("cmd:c1", later(1), NOW)
    store.close()
    filler = fill(card)

    store = ReplayStore(card)  # read as usual: a full card is no damaged file
    assert not list(card.glob("*.bad*"))
    assert store.seen("cmd:c1") and not store.seen("cmd:c2")
    assert not store.remember("cmd:c2", later(1), NOW)  # not kept: the request is refused with it
    assert "full" in (store.problem or "") and not store.seen("cmd:c2")

    filler.unlink()
    assert store.recover() and store.problem is None
    assert store.remember("cmd:c2", later(1), NOW) and store.seen("cmd:c2")


def test_a_memory_that_cannot_be_read_is_never_an_empty_one(card: Path) -> None:
    store = ReplayStore(card)
    store.remember("cmd:c1", later(1), NOW)
    store.close()
    remount(card, "ro")
    try:
        store = ReplayStore(card)
        assert "unavailable" in (store.problem or "")
        with pytest.raises(ReplayUnavailable):
            store.seen("cmd:c1")
        for topic in ("config/set", "cmd"):
            assert "cannot be judged" in (store.refusal(topic, NOW, trusted=True) or "")
        assert not store.recover()
    finally:
        remount(card, "rw")
    assert not list(card.glob("*.bad*"))
    assert store.recover() and store.seen("cmd:c1") and store.refusal("cmd", NOW, trusted=True) is None


def test_a_damaged_memory_is_set_aside_and_commands_wait_out_their_longest_life(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"this is not a database" * 100)
    store = ReplayStore(tmp_path)
    assert (tmp_path / (FILE_NAME + ".bad")).exists()
    # No trusted time yet: the loss cannot be dated, so no command can be judged.
    assert "no trusted time" in (store.refusal("cmd", NOW, trusted=False) or "")
    # Dated at the first trusted time: commands refused for 24 h from then; config pushes are
    # judged by their versions, which the config store keeps.
    assert "refused until 2026-11-26T20:00:00" in (store.refusal("cmd", NOW, trusted=True) or "")
    assert store.refusal("config/set", NOW, trusted=True) is None
    # A command signed as issued after the loss cannot be a replay of one the lost memory held.
    assert store.refusal("cmd", later(1), trusted=True, issued=later(0.5)) is None
    assert store.refusal("cmd", later(1), trusted=True, issued=later(-0.5)) is not None
    store.close()
    store = ReplayStore(tmp_path)  # the date survives a restart
    assert store.refusal("cmd", later(23), trusted=True) is not None
    store.prune(later(24))
    assert store.refusal("cmd", later(24), trusted=True) is None


class Inbox:
    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue()

    def post(self, event: Any) -> None:
        self.q.put(event)

    def next(self, timeout: float = 5.0) -> Any:
        return self.q.get(timeout=timeout)


@pytest.fixture
def worker_on(tmp_path: Path) -> Iterator[Any]:
    made: list[RemoteWorker] = []

    def build(state: Path) -> tuple[RemoteWorker, Inbox]:
        base = parse_config({"unit": {"id": UNIT, "kind": "car"}, "storage": {"state_dir": str(state)},
                             "security": {"dispatch_keys": [admin_tools.public_text(DISPATCH_KEY)]}})
        inbox = Inbox()
        worker = RemoteWorker(ConfigState.initial(base), ConfigStore(tmp_path / "config", parse_config),
                              ReplayStore(state), post=inbox.post, clock=lambda: UnitClock(NOW),
                              validate=parse_config)
        worker.start()
        made.append(worker)
        return worker, inbox

    yield build
    for worker in made:
        worker.stop()


def test_the_worker_refuses_what_it_cannot_judge_and_still_takes_a_signed_call(card: Path, worker_on) -> None:
    ReplayStore(card).close()
    remount(card, "ro")
    try:
        worker, inbox = worker_on(card)
        worker.submit("config/set", json.dumps({"id": "r1", "version": 1,
                                                "config": {"telemetry": {"rate_hz": 2}}}).encode())
        done = inbox.next()
        assert isinstance(done, ConfigDone) and not done.result.ok and done.state is None
        assert "replay memory cannot be read" in done.result.errors[0].msg
        worker.submit("cmd", json.dumps({"id": "c1", "command": "report_position"}).encode())
        ran = inbox.next()
        assert isinstance(ran, CommandDone) and ran.outcome.rejected is not None
        assert "replay memory cannot be read" in ran.outcome.rejected.errors[0].msg

        call = {"id": "C-1", "action": "new", "priority": 1, "nature": "Accident", "address": "Av. Mohammed V"}
        signed = json.dumps(admin_tools.dispatch_request(DISPATCH_KEY, UNIT, "call", call, now=NOW)).encode()
        worker.submit("call", signed)
        shown = inbox.next()
        assert isinstance(shown, MessageReceived) and shown.verified and shown.topic == "call"
        worker.submit("call", signed)  # a copy: the spare memory in RAM knows it, no answer
        worker.submit("cmd", json.dumps({"id": "c2", "command": "report_position"}).encode())
        assert isinstance(inbox.next(), CommandDone)  # jobs run in order: the copy was handled first
        assert worker.stats.replays_dropped == 1
    finally:
        remount(card, "rw")
