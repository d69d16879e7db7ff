"""The composition root: the core thread and its effect dispatcher, wired to the agent's parts.

Threads and who owns what
-------------------------
* ``core``: the only thread that touches :class:`~agent.core.unit.Unit`. It
  takes one event at a time from the bounded inbox (or wakes at the unit's
  next deadline), passes it to the unit with the time, carries out the
  effects (:meth:`Runtime._execute`, one ``case`` per effect), and after every
  visible change refreshes the outputs (:mod:`agent.outputs`) and stores the
  unit's state.
* adapters' own threads (GNSS reader, MQTT link, uplink sender, panel I/O,
  web UI, display worker, speech, remote-request worker, watchdog) only ever
  *post* events to the inbox; they never call into the unit. The
  remote-request worker alone writes the config store and the replay memory.

Where the rest is: :mod:`agent.parts` (what the agent is made of, built with
the runtime), :mod:`agent.lifecycle` (the one table of adapters: start order and
why, stops, what a config change rebuilds), :mod:`agent.core.inbound` (which
messages go to the remote-request worker, which the core drops),
:mod:`agent.remote_results` (the worker's results on the core thread),
:mod:`agent.watchdog_rules` and :mod:`agent.status_report`.

The unit may ask itself to stop (:meth:`Runtime.request_exit`): the hold-up
supply's warning (after the outbox is sealed, :mod:`agent.parts`) or the core's
``Shutdown`` effect (parked too long). Such a stop says why in the ``online``
goodbye and runs ``[power] poweroff_command`` once the agent has stopped.

Nothing an adapter does can kill the core thread: an exception handling one
event is logged and counted, and the next event is handled. If the thread
died anyway, or the GNSS reader or uplink thread, or the publish path stalled,
the systemd watchdog pings stop and systemd restarts the agent.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, assert_never

from agent import __version__, lifecycle
from agent.adapters import sdnotify, serial_urls
from agent.adapters.clock import SystemClock, UnitTime
from agent.adapters.config_store import load_effective
from agent.adapters.encryption import EncryptionError
from agent.adapters.power import power_off
from agent.config import AgentConfig
from agent.config_validate import parse_config
from agent.core import inbound
from agent.core.effects import Announce, Effect, Feedback, Shutdown, Speak, StoreCrashTrace
from agent.core.events import (
    CommandDone, ConfigDone, ConfigStateChanged, Event, GnssLost, GnssRestored, LinkDown, LinkUp, MessageReceived,
    Stop, Tick,
)
from agent.core.key_rules import ConfigChange
from agent.core.publish import Publish
from agent.core.remote_config import ConfigState
from agent.core.rollback_guard import RollbackGuard
from agent.core.unit import Now, Unit
from agent.parts import Parts, quietly
from agent.remote_results import RemoteResults, config_current
from agent.status_report import StatusWriter

if TYPE_CHECKING:
    from gpiozero import Factory

log = logging.getLogger("agent.runtime")

# The core loop wakes at least this often, so its heartbeat and the screens' clocks move.
MAX_IDLE_S = 1.0
ERROR_PAUSE_S = 0.2
EXIT_OK, EXIT_FAILURE = 0, 1
# Events after which `umps-agent status` is written at once, not at the next round.
STATUS_CHANGES = (LinkUp, LinkDown, GnssLost, GnssRestored)


class Runtime:
    """One running agent: built (its parts with it), ``start()``, then ``stop()``; :func:`run_agent` does all."""

    def __init__(self, config_path: str | Path, *, base: AgentConfig | None = None, pin_factory: Factory | None = None,
                 clock: SystemClock | None = None, notifier: sdnotify.Notifier | None = None,
                 exit_requested: threading.Event | None = None) -> None:
        # Validated in process; remote pushes on the remote-request worker, off the core thread.
        effective = load_effective(config_path, parse_config, base)
        for problem in effective.problems:
            log.warning("remote config: %s", problem)
        serial_urls.register()
        self.clock = UnitTime(clock)  # the time of events, and every message's ts and time_source
        self.notifier = notifier or sdnotify.Notifier()
        # Set when the agent asks itself to stop (power fail, parked too long); run_agent waits on it.
        self.exit_requested = exit_requested or threading.Event()
        self._stopping = threading.Event()
        self._shown_revision = -1
        self.parts = Parts(Path(config_path), effective.state, effective.store, validate=parse_config,
                           clock=self.clock, notifier=self.notifier, pin_factory=pin_factory,
                           core_loop=self._core_loop, execute=self._execute, request_exit=self.request_exit)
        self.status = StatusWriter(self.parts)
        self.remote = RemoteResults(RollbackGuard(self.parts.config.security.rollback_timeout_s),
                                    publish=self._publish, apply=self._apply, adopt=self._adopt,
                                    current=self._config_current, stamp=self.clock.stamp)

    @property
    def unit(self) -> Unit:
        return self.parts.unit

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        p = self.parts
        self.remote.resume(time.monotonic(), p.cfg_state)  # a broker change never confirmed: its guard again
        lifecycle.start(p)
        self.notifier.ready(self.status.line())
        log.info("umps-agent %s running as unit %s (%s), config version %d",
                 __version__, p.config.unit.id, p.config.unit.kind, p.cfg_state.version)

    def stop(self, reason: str = "shutdown") -> None:
        """Stop in the lifecycle table's order (inputs, the core, then the publish path and the
        screens), then close the stores."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.notifier.stopping(f"stopping: {reason}")
        log.info("stopping: %s", reason)
        self.parts.stop_reason = reason
        lifecycle.stop(self.parts)
        self.parts.close_stores()
        quietly("status file", self.status.remove)

    def post(self, event: Event) -> None:
        """Post an event from outside the adapters (touch, tests, the rig)."""
        self.parts.post(event)

    def request_exit(self, reason: str) -> None:
        """Ask :func:`run_agent` to stop the agent and power the unit off (``power``, ``ignition``)."""
        if self.parts.exit_reason is None:
            self.parts.exit_reason = reason
        self.exit_requested.set()

    # ------------------------------------------------------------ core loop

    def _core_loop(self) -> None:
        p = self.parts
        failed = False
        while True:
            p.core.heartbeat.beat()
            timeout = max(0.0, min(self._next_deadline() - time.monotonic(), MAX_IDLE_S))
            if failed:
                # A deadline that failed stays due: wake for it again later, not in a busy loop.
                timeout = max(timeout, ERROR_PAUSE_S)
            try:
                event = p.inbox.get(timeout=timeout)
            except queue.Empty:
                event = Tick(time.monotonic())
            if isinstance(event, Stop):
                p.persist(stopping=True)
                return
            p.worker.overdue(time.monotonic())
            try:
                self._handle(event)
                p.core.events_handled += 1
                # A trusted clock is proof of the time: the floor follows it, and is stored now and then.
                self.clock.best_time()
                self.clock.floor.maybe_save(time.monotonic())
                failed = False
            except Exception:  # noqa: BLE001 - one bad event never stops the unit
                failed = True
                p.core.core_errors += 1
                if p.core.core_errors in (1, 10, 100) or p.core.core_errors % 1000 == 0:
                    log.exception("error handling %s (%d so far); carrying on", type(event).__name__,
                                  p.core.core_errors)

    def _next_deadline(self) -> float:
        p = self.parts
        deadline = min(p.unit.next_deadline(), self.status.next_write)
        # The rider display's hold bar and cancel countdown move; the rollback guard expires.
        for extra in (p.outputs.next_redraw(p.unit, time.monotonic()), self.remote.deadline()):
            if extra is not None:
                deadline = min(deadline, extra)
        return deadline

    def _handle(self, event: Event) -> None:
        p = self.parts
        unit = p.unit
        now = self.clock.now()
        match event:
            case MessageReceived() if (why := inbound.dropped(event)) is not None:
                log.warning("%s", why)
                effects = unit.handle(Tick(now.mono), now)
            case ConfigDone() | CommandDone() | ConfigStateChanged():
                self.remote.handle(event, now, config=p.config, unit=unit, uplink=p.uplink, traces=p.traces)
                effects = unit.handle(Tick(now.mono), now)
            case _:
                effects = unit.handle(event, now)
        # The receiver's time before any message goes out: an answer to a message stamped with it is
        # judged on the same clock (the remote-request worker reads it from another thread).
        self.clock.gnss_offset = unit.timebase.gnss_offset
        # The crew's screens first: a call is on the displays before its "received" receipt
        # is stored (fsync) and sent, as the receipt says. The LEDs after: pin writes are slow.
        changed = unit.revision != self._shown_revision or isinstance(event, Tick)
        if changed:
            self._shown_revision = unit.revision
            p.outputs.refresh_screens(unit, now, backlog=p.backlog)
        if isinstance(event, MessageReceived):  # a call is stored before its receipt can go (docs/safety.md)
            p.persist()
        if isinstance(event, LinkUp):
            self._publish(self._config_current())
        for effect in effects:
            self._execute(effect, now)
        if changed:
            p.outputs.refresh_panel(unit, now, panel=p.panel, config=p.config)
        self.remote.check_guard(now, link=p.link, worker=p.worker)
        p.persist()
        self.status.after_event(now, changed=isinstance(event, STATUS_CHANGES))

    def _execute(self, effect: Effect, now: Now) -> None:
        p = self.parts
        match effect:
            case Publish():
                if effect.seq is not None:
                    p.core.report_made(now.mono, p.unit.schedule.period)
                self._publish(effect)
            case Feedback(kind=kind):
                p.outputs.feedback(kind, p.panel, p.config)
            case Shutdown(reason=reason):
                log.warning("parked with the ignition off for %g s: stopping and powering off",
                            p.config.power.shutdown_after_s)
                self.request_exit(reason)
            case Speak(call_id=call_id):
                p.outputs.speak(p.unit, call_id, now, p.config.panel.language)
            case StoreCrashTrace(trace_id=trace_id, parts=parts, complete=complete):
                quietly("crash trace", lambda: p.traces.store(trace_id, parts, complete))
            case Announce(seconds=seconds):
                p.outputs.announce(p.unit, seconds, p.config.panel.language)
            case _:
                assert_never(effect)

    def _publish(self, publish: Publish) -> None:
        self.parts.guards["outbox"].run(self.parts.uplink.submit, publish)

    # ------------------------------------------------------- config changes

    def _apply(self, state: ConfigState, reinit: frozenset[str] | set[str], now: Now) -> None:
        """Make ``state`` the running config (an accepted push or a rollback, from
        :mod:`agent.remote_results`): hot changes taken, the adapters it touches rebuilt."""
        old = self.parts.take_config(state, now)
        lifecycle.rebuild(self.parts, reinit, ConfigChange.between(old, state.config).paths)
        self._shown_revision = -1

    def _config_current(self) -> Publish:
        return config_current(self.parts.cfg_state, self.parts.secrets.version, self.clock.stamp())

    def _adopt(self, state: ConfigState) -> None:
        self.parts.cfg_state = state


def run_agent(config: AgentConfig, config_path: str | Path) -> int:
    """Run until SIGTERM or SIGINT, or until the agent asks to stop (power fail, parked too long: then
    ``[power] poweroff_command`` runs); what ``umps-agent run`` does (``config``: the file, validated)."""
    reason = {"why": "shutdown"}
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        reason["why"] = signal.Signals(signum).name
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        runtime = Runtime(config_path, base=config, exit_requested=stop)
    except EncryptionError as exc:  # the unit refuses to write positions to a plain SD card
        log.critical("%s", exc)
        return EXIT_FAILURE
    except Exception:
        log.exception("the agent could not start")
        return EXIT_FAILURE
    try:
        runtime.start()
    except Exception:
        log.exception("the agent could not start")
        runtime.stop("start failed")
        return EXIT_FAILURE
    while not stop.wait(1.0):
        thread = runtime.parts.core_thread
        if thread is not None and not thread.is_alive():
            log.critical("the core thread has died; exiting so systemd restarts the agent")
            runtime.stop("core thread died")
            return EXIT_FAILURE
    asked = runtime.parts.exit_reason
    if asked is None:
        runtime.stop(reason["why"])
        return EXIT_OK
    runtime.stop(f"{asked} (asked by the unit)")
    power_off(runtime.parts.config.power.poweroff_command)
    return EXIT_OK
