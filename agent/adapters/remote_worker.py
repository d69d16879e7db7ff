"""Remote requests on a worker thread: checked, validated and stored off the core thread.

``config/set`` and ``cmd`` (and ``call``, ``alarm/ack``, ``alarm/clear`` when
``[security] dispatch_keys`` is set) arrive from the MQTT link straight here,
never through the core. For each, this thread verifies the signature
(libsodium), validates (pydantic, in this process), consults and updates the
durable replay memory (a config push or a command it cannot judge, because
that memory or the stored config cannot be read, is refused and says why; a
call never is: a spare memory in RAM stands in), stores an accepted config
layer, and posts **one**
result event to the core's inbox:

- :class:`ConfigDone` for ``config/set`` (accepted and stored, or refused);
- :class:`CommandDone` for ``cmd``;
- a :class:`~agent.core.events.MessageReceived` marked ``verified`` for a
  dispatch message that passed, or a :class:`~agent.core.events.DispatchRefused`
  (a replayed copy is dropped and counted, see :mod:`agent.core.signed_dispatch`);
- :class:`ConfigStateChanged` after the core asked to confirm or roll back a
  broker change (the config store has one writer: this thread).

Each request is judged against the unit's clock as :class:`~agent.core.time_floor.UnitClock`
gives it (the best UTC, whether it is trusted, the floor of authenticated time); the ``issued``
time of a request whose signature held raises that floor (``floor``), as of when the request
arrived.

The core thread only applies what comes back: it never waits for a
signature, a validation or an fsync. A job that has not reached its commit
point within :data:`TIMEOUT_S` (well under the 30 s systemd watchdog) is
abandoned: the requester is told nothing was applied, and the worker, when it
gets there, stores and runs nothing. A stuck worker thus costs remote requests,
never the unit (the watchdog checks only that the thread is alive).

Why no child process: validation used to run in a short-lived child so that
the agent never held pydantic (about 9 MiB), to meet a 40 MiB memory figure.
That figure is retired (each real profile stays under 64 MiB and, what a unit
needs, flat over days); the child cost 0.12-0.16 s and a fork per push, an
extra failure mode (a hung child's timeout exceeded the watchdog's) and a
pickle protocol. In-process validation on this thread is simpler and just as
safe for the core: the core thread never waits for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from agent.adapters.config_store import ConfigStore, ConfigStoreError
from agent.adapters.time_floor_store import TimeFloorStore
from agent.config import Validate
from agent.core.events import DispatchRefused, MessageReceived
from agent.core.key_rules import ConfigChange
from agent.core.remote_command import COMMANDS, CommandOutcome, CommandResult, parse_command
from agent.core.remote_config import ConfigOutcome, ConfigResult, ConfigState, handle_config_set
from agent.core.replay import ReplayMemory, WithSpare
from agent.core.requests import Problem, parse_expiry
from agent.core.rollback_guard import Armed
from agent.core.signed_dispatch import DISPATCH_TOPICS, DispatchVerdict, check_dispatch
from agent.core.time_floor import UnitClock

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
QUEUE_SIZE = 64
REQUEST_TOPICS = ("config/set", "cmd")


@dataclass(frozen=True)
class ConfigDone:
    """``config/set`` answered. ``state`` is set when a new layer was accepted and stored."""

    result: ConfigResult
    state: ConfigState | None = None
    change: ConfigChange = field(default_factory=ConfigChange)


@dataclass(frozen=True)
class CommandDone:
    outcome: CommandOutcome


@dataclass(frozen=True)
class ConfigStateChanged:
    """The stored config after a confirm or a rollback the core asked for."""

    state: ConfigState
    rolled_back: Armed | None = None  # the change undone, for a rollback
    rolled_version: int = 0


@dataclass
class _Job:
    kind: str  # a request topic, "confirm" or "rollback"
    payload: bytes = b""
    arg: Any = None
    received: float = field(default_factory=time.monotonic)  # when it arrived: what an ``issued`` proves
    started: float | None = None
    committed: bool = False
    abandoned: bool = False


@dataclass
class WorkerStats:
    handled: int = 0
    dropped_full: int = 0  # the queue was full: the request got no answer
    timed_out: int = 0
    replays_dropped: int = 0  # dispatch copies already accepted
    errors: int = 0


class RemoteWorker:
    def __init__(
        self,
        state: ConfigState,
        store: ConfigStore,
        replay: ReplayMemory,
        post: Callable[[Any], None],
        clock: Callable[[], UnitClock],
        validate: Validate,
        timeout_s: float = TIMEOUT_S,
        floor: TimeFloorStore | None = None,
    ) -> None:
        self.state = state  # written by the worker thread only; read (whole) by the others
        self.store = store
        self.replay = replay
        # Calls are never refused for want of a disk (agent.core.replay.WithSpare).
        self._dispatch_memory = WithSpare(replay)
        self._post = post
        self._clock = clock
        self.floor = floor  # the floor of authenticated time, raised by signed requests' issued
        self.validate = validate
        self.timeout_s = timeout_s
        self.stats = WorkerStats()
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._lock = threading.Lock()
        self._current: _Job | None = None
        self._thread = threading.Thread(target=self._run, name="remote-requests", daemon=True)

    # ------------------------------------------------------------ any thread

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self._jobs.put(None, timeout=timeout)
        except queue.Full:
            log.error("remote-request queue full at stop")
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("remote-request worker did not stop within %g s", timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wants(self, topic: str) -> bool:
        """Is ``topic`` handled here (rather than by the core directly)?"""
        if topic in REQUEST_TOPICS:
            return True
        return topic in DISPATCH_TOPICS and bool(self.state.config.security.dispatch_keys)

    def submit(self, topic: str, payload: bytes) -> bool:
        """From the MQTT thread: never blocks. False (counted) when the queue is full."""
        return self._put(_Job(topic, payload))

    def confirm(self, version: int) -> None:
        """From the core: a broker accepted the unit with config ``version``."""
        self._put(_Job("confirm", arg=version), force=True)

    def rollback(self, armed: Armed) -> None:
        """From the core: the guard expired; restore the previous confirmed layer."""
        self._put(_Job("rollback", arg=armed), force=True)

    def overdue(self, now: float) -> bool:
        """From the core, on every loop: abandon a job past its time and answer for it."""
        with self._lock:
            job = self._current
            if job is None or job.committed or job.abandoned or job.started is None:
                return False
            if now - job.started <= self.timeout_s or job.kind not in REQUEST_TOPICS + DISPATCH_TOPICS:
                return False
            job.abandoned = True
        self.stats.timed_out += 1
        log.error("remote %s not handled within %g s: abandoned, nothing applied", job.kind, self.timeout_s)
        self._answer_failure(job, f"the unit could not handle this request within {self.timeout_s:g} s; nothing was applied")
        return True

    def _put(self, job: _Job, force: bool = False) -> bool:
        try:
            if force:
                self._jobs.put(job, timeout=1.0)
            else:
                self._jobs.put_nowait(job)
            return True
        except queue.Full:
            self.stats.dropped_full += 1
            log.error("remote-request queue full: %s dropped (%d so far)", job.kind, self.stats.dropped_full)
            return False

    # --------------------------------------------------------- worker thread

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                job.started = time.monotonic()
                self._current = job
            try:
                self._do(job)
                self.stats.handled += 1
            except Exception as exc:  # noqa: BLE001 - one bad request never stops the worker
                self.stats.errors += 1
                log.exception("remote %s failed", job.kind)
                if self._commit(job):
                    self._answer_failure(job, f"the unit failed to handle this request: {type(exc).__name__}")
            finally:
                with self._lock:
                    self._current = None

    def _commit(self, job: _Job) -> bool:
        """The point of no return: False when the core already answered (abandoned)."""
        with self._lock:
            if job.abandoned:
                return False
            job.committed = True
            return True

    def _do(self, job: _Job) -> None:
        # Expiry and the replay window are judged on the unit's clock (``clock``: its best UTC,
        # whether that is trusted, and the floor of authenticated time). Without a trusted clock a
        # config push waits, a command and a call are taken unless the floor proves them expired,
        # and an answer to an alarm needs no clock at all (agent.core.time_floor, signed_dispatch).
        if job.kind in REQUEST_TOPICS and (problem := self._unjudgeable(job, self._clock())) is not None:
            # A replay memory or a stored config that cannot be read must not pass for an empty one.
            if self._commit(job):
                log.warning("%s refused: %s", job.kind, problem)
                self._answer_failure(job, problem)
            return
        if job.kind == "config/set":
            clock = self._clock()
            outcome = handle_config_set(job.payload, self.state, clock, self.validate, self.replay)
            self._proof(outcome.issued, job, clock)
            self._config_set(job, outcome)
        elif job.kind == "cmd":
            clock = self._clock()
            command = parse_command(job.payload, self.state.config, clock, self.replay)
            self._proof(command.issued, job, clock)
            if self._commit(job):
                self._post(CommandDone(command))
        elif job.kind in DISPATCH_TOPICS:
            clock = self._clock()
            verdict = check_dispatch(job.kind, job.payload, self.state.config, clock, self._dispatch_memory)
            self._proof(verdict.issued, job, clock)
            self._dispatch(job, verdict)
        elif job.kind == "confirm":
            if self.state.pending and self.state.version == job.arg:
                try:
                    self.state = self.store.confirm(self.state)
                except ConfigStoreError as exc:
                    log.error("%s", exc)
            self._post(ConfigStateChanged(self.state))
        elif job.kind == "rollback":
            rolled = self.state.version
            self.state = self.store.rollback(self.state)
            self._post(ConfigStateChanged(self.state, job.arg, rolled))

    def _unjudgeable(self, job: _Job, clock: UnitClock) -> str | None:
        """Why a ``config/set`` or ``cmd`` cannot be judged safely now (None: judge it)."""
        kind = job.kind
        if kind == "config/set" and self.store.unreadable is not None:
            # The highest version a stored layer holds is unknown: an old push could pass for new.
            return (f"cannot be judged now: the unit's stored remote config cannot be read ({self.store.unreadable});"
                    " nothing was applied")
        refusal = getattr(self.replay, "refusal", None)  # the durable store says; an in-memory one never refuses
        if refusal is None:
            return None
        # The issue time as the request says it; its signature, checked next, covers it.
        issued = parse_expiry(_peek(job.payload, "issued"))
        return refusal(kind, clock.now, clock.trusted, issued if isinstance(issued, dt.datetime) else None)

    def _proof(self, issued: dt.datetime | None, job: _Job, clock: UnitClock) -> None:
        """A request signed by a trusted key said when it was issued: the floor may rise."""
        if issued is not None and self.floor is not None:
            self.floor.prove(issued, job.received, clock.now if clock.trusted else None)

    def _config_set(self, job: _Job, outcome: ConfigOutcome) -> None:
        if not self._commit(job):
            return
        if not outcome.accepted:
            self._post(ConfigDone(outcome.result))
            return
        new_state = outcome.state
        assert new_state is not None
        if outcome.change.dangerous:
            new_state = dataclasses.replace(new_state, pending=True)
        try:
            self.store.save(new_state)
        except ConfigStoreError as exc:
            # Not stored, so not applied: the running config is untouched.
            refused = ConfigResult(outcome.result.id, False, self.state.version, (Problem("", str(exc)),),
                                   warnings=outcome.result.warnings)
            self._post(ConfigDone(refused))
            return
        self.state = new_state
        self._post(ConfigDone(outcome.result, new_state, outcome.change))

    def _dispatch(self, job: _Job, verdict: DispatchVerdict) -> None:
        if not self._commit(job):
            return
        now = time.monotonic()
        if verdict.accepted:
            if verdict.unjudged:
                log.warning("took a signed %s (id %r) whose expiry cannot be judged: the unit has no trusted time "
                            "and nothing proves it expired", job.kind, verdict.id)
            self._post(MessageReceived(job.kind, job.payload, now, verified=True))
        elif verdict.replay:
            self.stats.replays_dropped += 1
            log.warning("dropped a copy of a %s already handled (id %r)", job.kind, verdict.id)
        else:
            log.warning("refused a %s (id %r): %s", job.kind, verdict.id, verdict.error)
            self._post(DispatchRefused(job.kind, verdict.id, verdict.error or "refused", now))

    def _answer_failure(self, job: _Job, message: str, loc: str = "") -> None:
        ref = rid = _peek_id(job.payload)
        if job.kind == "config/set":
            self._post(ConfigDone(ConfigResult(rid, False, self.state.version, (Problem(loc, message),))))
        elif job.kind == "cmd":
            name = _peek(job.payload, "command")
            name = name if name in COMMANDS else None
            self._post(CommandDone(CommandOutcome(rejected=CommandResult(rid, False, name, (Problem(loc, message),)))))
        elif job.kind in DISPATCH_TOPICS:
            self._post(DispatchRefused(job.kind, ref, f"{loc}: {message}" if loc else message, time.monotonic()))


def _peek(payload: bytes, member: str) -> Any:
    try:
        return json.loads(payload).get(member)
    except (ValueError, AttributeError, RecursionError):
        return None


def _peek_id(payload: bytes) -> str | None:
    value = _peek(payload, "id")
    return value[:128] if isinstance(value, str) else None
