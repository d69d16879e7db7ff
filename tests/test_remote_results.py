"""The remote-request worker's results carried out on the core thread, and the rollback guard.

The worker and the MQTT link are stood in for by plain objects (what they answer is all that
matters here); the whole path, broker included, runs in test_remote_config.py and
test_security_e2e.py."""

import json
from dataclasses import dataclass, field, replace

from agent.adapters.remote_worker import CommandDone, ConfigDone, ConfigStateChanged
from agent.core.key_rules import ConfigChange
from agent.core.remote_command import Command, CommandOutcome
from agent.core.remote_config import ConfigResult, ConfigState
from agent.core.rollback_guard import RollbackGuard
from agent.remote_results import RemoteResults
from tests.support.unit_rig import Rig

STAMP = {"ts": "2026-05-01T10:00:00.000Z", "time_source": "gnss"}


@dataclass
class LinkStats:
    acked: int = 0


@dataclass
class Link:
    connected: bool = False
    acked: int = 0

    def stats(self) -> LinkStats:
        return LinkStats(self.acked)


@dataclass
class Worker:
    confirmed: list = field(default_factory=list)
    rolled_back: list = field(default_factory=list)

    def confirm(self, version):
        self.confirmed.append(version)

    def rollback(self, armed):
        self.rolled_back.append(armed)


@dataclass
class Uplink:
    flushes: int = 0

    def flush_backlog(self):
        self.flushes += 1


class Host:
    """What the runtime hands RemoteResults: the outbox, its running config, the clock's stamp."""

    def __init__(self, timeout_s: float = 30.0):
        self.rig = Rig()
        cfg = self.rig.unit.config
        self.state = ConfigState(base=cfg, overlay={}, version=1, highest_version=1, request_id="r-1",
                                 pending=False, config=cfg)
        self.sent: list = []
        self.applied: list = []
        self.results = RemoteResults(RollbackGuard(timeout_s), publish=self.sent.append, apply=self.apply,
                                     adopt=self.adopt, current=self.current, stamp=lambda: dict(STAMP))

    def apply(self, state, reinit, now):
        self.applied.append((state.version, set(reinit)))
        self.state = state

    def adopt(self, state):
        self.state = state

    def current(self):
        from agent.remote_results import config_current

        return config_current(self.state, None, dict(STAMP))

    def handle(self, event, uplink=None):
        self.results.handle(event, self.rig.now(), config=self.state.config, unit=self.rig.unit, uplink=uplink)

    def topics(self):
        return [p.topic for p in self.sent]

    def body(self, topic):
        return [json.loads(p.payload) for p in self.sent if p.topic == topic]


def test_a_command_runs_and_is_answered():
    host, uplink = Host(), Uplink()
    host.handle(CommandDone(CommandOutcome(command=Command("c-1", "flush_backlog"))), uplink)
    assert uplink.flushes == 1
    assert host.body("cmd/result") == [{"id": "c-1", "ok": True, "command": "flush_backlog", "errors": [], **STAMP}]


def test_report_position_publishes_a_report_now():
    host = Host()
    host.handle(CommandDone(CommandOutcome(command=Command("c-2", "report_position"))))
    assert host.topics() == ["telemetry", "cmd/result"]


def test_a_refused_config_is_answered_and_changes_nothing():
    host = Host()
    refused = ConfigResult("r-9", False, 1)
    host.handle(ConfigDone(refused))
    assert host.applied == [] and host.topics() == ["config/result"]
    assert host.body("config/result")[0]["ok"] is False


def test_a_safe_change_is_applied_and_answered_at_once():
    host = Host()
    new = replace(host.state, version=2, request_id="r-2")
    host.handle(ConfigDone(ConfigResult("r-2", True, 2), new, ConfigChange(paths=("telemetry.rate_hz",))))
    assert host.applied == [(2, set())]
    assert host.topics() == ["config/result", "config/current"]
    assert host.body("config/current")[0]["version"] == 2
    assert host.results.guard.armed is None and host.results.deadline() is None


def test_a_broker_change_is_answered_once_a_broker_acknowledged_the_unit_with_it():
    host, worker = Host(), Worker()
    new = replace(host.state, version=2, request_id="r-2", pending=True)
    change = ConfigChange(paths=("mqtt.prefix",), reinit=frozenset({"mqtt"}), dangerous=True)
    host.handle(ConfigDone(ConfigResult("r-2", True, 2), new, change))
    assert host.applied == [(2, {"mqtt"})]
    assert host.topics() == ["config/current"]  # the answer waits for the guard
    assert host.results.deadline() is not None
    now = host.rig.now()
    host.results.check_guard(now, link=Link(connected=True, acked=0), worker=worker)
    assert worker.confirmed == [] and host.topics() == ["config/current"]  # a CONNACK alone is not enough
    host.results.check_guard(now, link=Link(connected=True, acked=1), worker=worker)
    assert worker.confirmed == [2]
    assert host.body("config/result") == [{"id": "r-2", "ok": True, "version": 2, "restart_required": False,
                                           "errors": [], **STAMP}]
    assert host.results.deadline() is None
    host.handle(ConfigStateChanged(replace(new, pending=False)))  # the worker stored the confirmation
    assert host.state.pending is False and host.applied == [(2, {"mqtt"})]


def test_a_broker_change_no_broker_accepted_is_rolled_back_and_the_admin_told():
    host, worker = Host(timeout_s=5.0), Worker()
    old = host.state
    new = replace(old, version=2, request_id="r-2", pending=True)
    change = ConfigChange(paths=("mqtt.prefix",), reinit=frozenset({"mqtt"}), dangerous=True)
    host.handle(ConfigDone(ConfigResult("r-2", True, 2), new, change))
    host.rig.after(4.0)
    host.results.check_guard(host.rig.now(), link=Link(), worker=worker)
    assert worker.rolled_back == []
    host.rig.after(1.5)
    host.results.check_guard(host.rig.now(), link=Link(), worker=worker)
    assert [a.version for a in worker.rolled_back] == [2]
    # The worker stored version 1 again and says so.
    restored = replace(old, highest_version=2)
    host.handle(ConfigStateChanged(restored, rolled_back=worker.rolled_back[0], rolled_version=2))
    assert host.applied[-1] == (1, set())
    result = host.body("config/result")[-1]
    assert result["ok"] is False and result["id"] == "r-2" and result["version"] == 1
    assert "no broker accepted the unit with version 2 within 5 s" in result["errors"][0]["msg"]
    assert host.topics()[-1] == "config/current" and host.body("config/current")[-1]["version"] == 1


def test_a_change_stored_unconfirmed_before_a_restart_arms_the_guard():
    host = Host()
    host.results.resume(host.rig.t, replace(host.state, pending=True, version=3))
    assert host.results.guard.armed.version == 3
    other = Host()
    other.results.resume(other.rig.t, other.state)
    assert other.results.guard.armed is None
