"""Carrying out, on the core thread, what the remote-request worker decided.

The worker (:mod:`agent.adapters.remote_worker`) verifies, validates and stores
``config/set`` and ``cmd`` off the core thread and posts one result event back.
:class:`RemoteResults` takes that event on the core thread:

- :class:`~agent.adapters.remote_worker.CommandDone`: the command runs (flush
  the backlog, report the position now, send a crash trace again) and
  ``cmd/result`` goes out;
- :class:`~agent.adapters.remote_worker.ConfigDone`: an accepted config is
  applied in-process (the runtime rebuilds what it must) and ``config/result``
  and the retained ``config/current`` go out. A broker change arms the
  :class:`~agent.core.rollback_guard.RollbackGuard` instead, and its answer
  waits until a broker has acknowledged a publish from the unit with it;
- :class:`~agent.adapters.remote_worker.ConfigStateChanged`: the worker stored
  a confirmation or a rollback. When no broker accepted the unit in time, the
  previous config comes back and the admin is told once the unit is online.

Every answer goes through the outbox: it survives a lost link or power.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Callable

from agent.adapters.remote_worker import CommandDone, ConfigDone, ConfigStateChanged
from agent.core.key_rules import ConfigChange
from agent.core.publish import Lane, Publish
from agent.core.remote_config import current_message, rolled_back_result
from agent.core.requests import Problem
from agent.core.rollback_guard import RollbackGuard

if TYPE_CHECKING:
    from agent.adapters.crash_traces import TraceStore
    from agent.adapters.mqtt import MqttLink
    from agent.adapters.remote_worker import RemoteWorker
    from agent.adapters.uplink import Uplink
    from agent.config import AgentConfig
    from agent.core.remote_command import CommandResult
    from agent.core.remote_config import ConfigResult, ConfigState
    from agent.core.unit import Now, Unit

log = logging.getLogger(__name__)

RESULTS = (ConfigDone, CommandDone, ConfigStateChanged)  # the worker's events this module takes


def config_current(state: ConfigState, secrets_version: int | None, stamp: dict[str, str]) -> Publish:
    """The retained ``config/current``: the unit's config version, hash and secrets version."""
    body = json.dumps(current_message(state, secrets_version, **stamp), ensure_ascii=False).encode("utf-8")
    return Publish("config/current", body, Lane.STATUS, retain=True)


def answer(topic: str, result: ConfigResult | CommandResult, stamp: dict[str, str]) -> Publish:
    """A ``config/result`` or ``cmd/result``, stamped like every message the unit sends."""
    body = result.as_dict(**stamp)
    return Publish(topic, json.dumps(body, ensure_ascii=False).encode("utf-8"), Lane.STATUS)


class RemoteResults:
    """The worker's results on the core thread, and the rollback guard of a broker change.

    ``publish`` sends through the outbox; ``apply(state, reinit, now)`` makes ``state`` the
    running config (the runtime rebuilds the adapters named in ``reinit``); ``adopt(state)``
    records a stored state that changes nothing running (a confirmation); ``current()`` is
    the ``config/current`` message of the running config; ``stamp()`` the ``ts`` and
    ``time_source`` of a message sent now.
    """

    def __init__(self, guard: RollbackGuard, *, publish: Callable[[Publish], None],
                 apply: Callable[[ConfigState, frozenset[str] | set[str], Now], None],
                 adopt: Callable[[ConfigState], None], current: Callable[[], Publish],
                 stamp: Callable[[], dict[str, str]]) -> None:
        self.guard = guard
        self._publish = publish
        self._apply = apply
        self._adopt = adopt
        self._current = current
        self._stamp = stamp
        self._pending_result: ConfigResult | None = None  # config/result of a broker change, sent once a broker accepts it

    def resume(self, now_mono: float, state: ConfigState) -> None:
        """At start: a broker change stored but never confirmed (the unit restarted meanwhile)."""
        if state.pending:
            self.guard.arm(now_mono, state.version, state.request_id)

    def deadline(self) -> float | None:
        """When the core thread must wake for the guard, if it is armed."""
        armed = self.guard.armed
        return None if armed is None else armed.deadline + 0.01

    def handle(self, event: Any, now: Now, *, config: AgentConfig, unit: Unit, uplink: Uplink | None,
               traces: TraceStore | None = None) -> None:
        """Carry out what the worker decided (and, for config, already stored)."""
        if isinstance(event, CommandDone):
            outcome = event.outcome
            if outcome.rejected is not None:
                self._answer("cmd/result", outcome.rejected)
                return
            command = outcome.command
            assert command is not None
            if command.command == "flush_backlog" and uplink is not None:
                uplink.flush_backlog()
            elif command.command == "report_position":
                self._publish(unit.report(now))
            elif command.command == "crash_trace":
                # The trace again on crash/trace (backlog lane), from the card or memory: as stored.
                parts = traces.get(command.trace) if traces is not None and command.trace else None
                if parts is None:
                    self._answer("cmd/result", command.done((Problem("trace", "no such crash trace on this unit"),)))
                    return
                for part in parts:
                    self._publish(Publish("crash/trace", part, Lane.BACKLOG))
            self._answer("cmd/result", command.done())
            return
        if isinstance(event, ConfigStateChanged):
            if event.rolled_back is None:  # confirmed
                self._adopt(event.state)
                return
            restored = event.state
            log.error("remote config version %d reached no broker within %g s: rolled back to version %d",
                      event.rolled_version, self.guard.timeout_s, restored.version)
            self._apply(restored, ConfigChange.between(config, restored.config).reinit, now)
            result = rolled_back_result(event.rolled_back.request_id, event.rolled_version, restored,
                                        self.guard.timeout_s)
            self._pending_result = None
            # Through the outbox: the admin gets it as soon as the unit is back online.
            self._answer("config/result", result)
            self._publish(self._current())
            return
        assert isinstance(event, ConfigDone)
        if event.state is None:
            self._answer("config/result", event.result)
            return
        new_state, change = event.state, event.change
        log.info("remote config version %d accepted (%s)", new_state.version, ", ".join(change.paths) or "no change")
        self._apply(new_state, change.reinit, now)
        if change.dangerous:
            # The answer waits for the guard: ok once a broker accepts the unit with it.
            self.guard.arm(now.mono, new_state.version, new_state.request_id)
            self._pending_result = event.result
        else:
            self._answer("config/result", event.result)
        self._publish(self._current())

    def check_guard(self, now: Now, *, link: MqttLink | None, worker: RemoteWorker | None) -> None:
        """After every event: confirm a broker change a broker accepted, or roll back one
        that reached none in time (the worker stores either; one writer)."""
        armed = self.guard.armed
        if armed is None:
            return
        if link is not None and link.connected and link.stats().acked > 0:
            if self.guard.connected(now.mono, armed.version) is not None:
                assert worker is not None
                worker.confirm(armed.version)  # stored as confirmed by the worker (one writer)
                log.info("remote config version %d confirmed by the broker", armed.version)
                if self._pending_result is not None:
                    self._answer("config/result", self._pending_result)
                    self._pending_result = None
                return
        expired = self.guard.tick(now.mono)
        if expired is None:
            return
        assert worker is not None
        worker.rollback(expired)  # the worker restores and stores; ConfigStateChanged comes back

    def _answer(self, topic: str, result: ConfigResult | CommandResult) -> None:
        self._publish(answer(topic, result, self._stamp()))
