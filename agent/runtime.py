"""The composition root: builds every adapter around the pure core and runs it.

Threads and who owns what
-------------------------
* ``core``: the only thread that touches :class:`~agent.core.unit.Unit`. It
  takes one event at a time from the bounded inbox (or wakes at the unit's
  next deadline), passes it to the unit with the time, carries out the
  effects, and after every visible change refreshes the outputs (LEDs and
  buzzer, rider display, touchscreen) and stores the unit's state.
* adapters' own threads (GNSS reader, MQTT link, uplink sender, panel I/O,
  web UI, display worker, speech, remote-request worker, watchdog) only ever
  *post* events to the inbox; they never call into the unit. The
  remote-request worker alone writes the config store and the replay memory.

Remote configuration (``config/set``), commands (``cmd``) and, when dispatch
is signed, ``call``, ``alarm/ack`` and ``alarm/clear`` go from the MQTT link
to the remote-request worker (:mod:`agent.adapters.remote_worker`), which
verifies, validates and stores them off the core thread and posts one result
event back. The core thread carries the result out
(:mod:`agent.remote_results`): the unit takes hot changes, and the adapter a
change needs rebuilt is rebuilt in-process (:meth:`Runtime._apply`). A broker
change arms a rollback guard: when no broker has acknowledged a publish from
the unit with the new settings in time, the previous config comes back and
the admin is told once the unit is online.

The vehicle's power (:mod:`agent.adapters.power`): the ignition line becomes
events for the core (parked mode, :mod:`agent.core.power`); the hold-up
supply's warning commits the outbox at once, on its own thread
(:meth:`Outbox.seal`: every unacknowledged record and the exact next seq,
fsynced), then asks for a clean stop. The core's ``Shutdown`` effect (parked
too long) asks the same. A stop asked this way says why in the ``online``
goodbye and runs ``[power] poweroff_command`` once the agent has stopped.

Nothing an adapter does can kill the core thread: an exception handling one
event is logged and counted, and the next event is handled. If the thread
died anyway, or the GNSS reader or uplink thread, or the publish path stalled,
the systemd watchdog pings stop and systemd restarts the agent.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any

from agent import __version__
from agent.adapters import sdnotify, serial_urls
from agent.adapters.alarm_ids import random_alarm_id
from agent.adapters.clock import SystemClock, UnitTime
from agent.adapters.config_store import load_effective, write_atomic
from agent.adapters.encryption import EncryptionError, check_encrypted
from agent.adapters.gpio import PanelIO, PinFactoryError, make_pin_factory, panel_buttons
from agent.adapters.mqtt import MqttLink, MqttSettings, birth_payload
from agent.adapters.outbox import Outbox
from agent.adapters.power import PowerInputs, power_off
from agent.adapters.remote_worker import RemoteWorker
from agent.adapters.replay_store import ReplayStore
from agent.adapters.secrets_version import SecretsVersion
from agent.adapters.time_floor_store import TimeFloorStore
from agent.adapters.serial_gnss import SerialGnssReader
from agent.adapters.state_file import UnitStateFile
from agent.adapters.uplink import Uplink
from agent.config import AgentConfig, Validate
from agent.config_validate import parse_config
from agent.core import views
from agent.core.effects import Feedback, Shutdown, Speak
from agent.core.events import (
    FixReceived, GnssLost, GnssRestored, IgnitionChanged, LinkDown, LinkUp, MessageReceived, Stop, StorageChanged,
    Tick,
)
from agent.core.indicators import feedback, indicator_plan
from agent.core.publish import Publish
from agent.core.remote_config import ConfigState
from agent.core.rollback_guard import RollbackGuard
from agent.core.unit import SUBSCRIPTIONS, Now, Unit
from agent.output_guard import OutputGuard
from agent.remote_results import RESULTS, RemoteResults, config_current
from agent.status_report import (
    STATUS_EVERY_S, STATUS_FILE, DiskCheck, build_report, runtime_dir, status_line, write_status_file,
)
from agent.storage_health import StorageHealth, Store

log = logging.getLogger("agent.runtime")

INBOX_SIZE = 1024
# The core loop wakes at least this often, so its heartbeat and the screens' clocks move.
MAX_IDLE_S = 1.0
ERROR_PAUSE_S = 0.2
HEARTBEAT_MAX_AGE_S = 10.0
PUBLISH_MAX_STALL_S = 60.0
# Progress the watchdog asks for (else systemd restarts the agent at once, see sdnotify):
# a telemetry report at least this often (or every 5 report periods, if longer) ...
REPORT_MAX_GAP_S = 10.0
# ... and, while events wait in the inbox, one handled at least this often.
INBOX_MAX_STALL_S = 10.0
WATCHDOG_CHECK_EVERY_S = 2.0  # checks (and pings) this often at most, so a stall is seen quickly
# Topics whose retained copy is stale by definition: an old ack or clear must never touch a new alarm.
# (A retained command would run again at every connect.)
NEVER_RETAINED = ("alarm/ack", "alarm/clear", "cmd")
EXIT_OK, EXIT_FAILURE = 0, 1
# Every output refreshed behind its own guard (agent.output_guard), by its name in `umps-agent status`.
OUTPUTS = ("touchscreen", "display", "leds", "speech", "state_file", "status_file", "outbox")


def mqtt_settings(config: AgentConfig) -> MqttSettings:
    m = config.mqtt
    tls = m.tls
    return MqttSettings(
        brokers=tuple((b.host, b.port) for b in m.brokers),
        prefix=m.prefix,
        client_id=m.client_id,
        username=m.username,
        password=m.password.get_secret_value() if m.password is not None else None,
        tls=tls.enabled,
        tls_ca=str(tls.ca_file) if tls.enabled and tls.ca_file else None,
        tls_cert=str(tls.cert_file) if tls.enabled and tls.cert_file else None,
        tls_key=str(tls.key_file) if tls.enabled and tls.key_file else None,
        keepalive=m.keepalive_s,
        protocol=m.protocol,
        reconnect_min=m.reconnect_min_s,
        reconnect_max=m.reconnect_max_s,
        ack_timeout=m.ack_timeout_s,
        max_inflight=m.max_inflight,
        max_queued=max(m.max_queued, m.max_inflight),
    )


class Runtime:
    """One running agent. ``start()``, then ``stop()``; :func:`run_agent` does both."""

    def __init__(self, config_path: str | Path, *, base: AgentConfig | None = None, pin_factory: Any = None,
                 clock: SystemClock | None = None, notifier: sdnotify.Notifier | None = None) -> None:
        # Validated in process; remote pushes on the remote-request worker, off the core thread.
        self.validate: Validate = parse_config
        effective = load_effective(config_path, self.validate, base)
        for problem in effective.problems:
            log.warning("remote config: %s", problem)
        self.config_path = Path(config_path)
        self.store = effective.store
        self.cfg_state: ConfigState = effective.state
        self.config: AgentConfig = effective.config
        self.clock = UnitTime(clock)  # the time of events, and every message's ts and time_source
        self.notifier = notifier or sdnotify.Notifier()
        self._injected_factory = pin_factory
        self.inbox: queue.Queue[Any] = queue.Queue(maxsize=INBOX_SIZE)
        self.dropped_events = 0
        self.core_errors = 0
        self.events_handled = 0  # handled without an error: what the watchdog calls progress
        self.reports_made = 0
        self._last_report_mono = time.monotonic()
        self._last_report_period = 1.0  # the report period when the last report was made
        self._disk = DiskCheck()  # disk_ok in the status report
        self.started_mono = time.monotonic()
        self._stopping = threading.Event()
        self._screens_lock = threading.Lock()  # the start brings the screens up while the core runs
        # Set when the agent asks itself to stop (power fail, parked too long); run_agent waits on it.
        self.exit_requested = threading.Event()
        self.exit_reason: str | None = None
        self.power: PowerInputs | None = None
        self.power_fail_safe_s: float | None = None  # warning edge to everything on disk
        self._core_thread: threading.Thread | None = None
        self._heartbeat = sdnotify.Heartbeat("core loop", HEARTBEAT_MAX_AGE_S)
        self.remote = RemoteResults(RollbackGuard(self.config.security.rollback_timeout_s), publish=self._publish,
                                    apply=self._apply, adopt=self._adopt, current=self._config_current,
                                    stamp=self.clock.stamp)
        self.worker: RemoteWorker | None = None
        self.secrets: SecretsVersion | None = None
        self.replay: ReplayStore | None = None
        self.state_file: UnitStateFile | None = None
        self.storage: StorageHealth | None = None
        self._shown_revision = -1
        self._next_status_write = 0.0
        self._factory: Any = None
        self.reader: SerialGnssReader | None = None
        self.link: MqttLink | None = None
        self.uplink: Uplink | None = None
        self.panel: PanelIO | None = None
        self.web = None
        self.display = None
        self.speaker = None
        self.outbox: Outbox | None = None
        self.unit: Unit | None = None
        self.watchdog: sdnotify.Watchdog | None = None
        self._pending_restore: list[Any] = []  # effects of the restored state, run once the uplink exists
        self.guards = {name: OutputGuard(name.replace("_", " "), log) for name in OUTPUTS}

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        cfg = self.config
        serial_urls.register()
        state_dir = Path(cfg.storage.state_dir)
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # The unit runs anyway: every store keeps in memory what it cannot store, and says so.
            log.error("state directory %s cannot be made: %s", state_dir, exc)
        if cfg.storage.require_encrypted:
            # Raises EncryptionError: the unit refuses to write positions to a plain SD card.
            log.info("state directory %s: %s", state_dir, check_encrypted(state_dir))
        # Each store opens whatever the card does (full, read-only, damaged), never raising.
        self.replay = ReplayStore(state_dir)
        # The floor of authenticated time, kept on the card (memory only when it cannot be).
        self.clock.floor = TimeFloorStore(state_dir, time.monotonic())
        self.secrets = SecretsVersion(state_dir)
        self.state_file = UnitStateFile(state_dir)
        self.state_file.prepare()
        self.secrets.update(cfg)
        self.worker = RemoteWorker(self.cfg_state, self.store, self.replay, post=lambda e: self._post(e, force=True),
                                   clock=self.clock.judging_clock, validate=self.validate, floor=self.clock.floor)
        self.worker.start()
        self.outbox = Outbox(state_dir, max_backlog_reports=cfg.storage.max_backlog_reports,
                             commit_interval_s=cfg.storage.commit_interval_s, exclusive=True,
                             ram_dir=runtime_dir(cfg))
        now = self.clock.now()
        self.unit = Unit(cfg, self.outbox.next_seq(), now, config_version=self.cfg_state.version,
                         alarm_ids=random_alarm_id)
        self._restore_state(now)
        self.storage = self._storage_health()
        if not self.storage.durable:  # the first status says so
            self._post(StorageChanged(False, self.storage.reason, time.monotonic()), force=True)
        # The ignition's level is on the inbox before the first LinkUp: the first status says it.
        self._start_power()
        self._start_link()
        self._start_gnss()
        self._start_panel()
        self.remote.resume(now.mono, self.cfg_state)
        self._core_thread = threading.Thread(target=self._core_loop, name="core", daemon=True)
        self._core_thread.start()
        self.storage.start()
        # The core runs before the screens come up: the touchscreen's server takes seconds to start
        # (longer on a Pi), and an alarm held meanwhile must go out then, not once the page is up.
        # The screens get their first picture at the core's next round (at most MAX_IDLE_S).
        with self._screens_lock:
            self._start_screens()
        self._start_watchdog()
        self.notifier.ready(self._status_line())
        log.info("umps-agent %s running as unit %s (%s), config version %d",
                 __version__, cfg.unit.id, cfg.unit.kind, self.cfg_state.version)

    def stop(self, reason: str = "shutdown") -> None:
        """Stop in order: inputs, the core, then the publish path (outbox committed), then the link."""
        if self._stopping.is_set():
            return
        self.notifier.stopping(f"stopping: {reason}")
        log.info("stopping: %s", reason)
        for name, fn in (("watchdog", lambda: self.watchdog and self.watchdog.stop()), ("gnss", self._stop_gnss),
                         ("panel", self._stop_panel), ("power", self._stop_power)):
            self._quietly(name, fn)
        self._stopping.set()
        self._post(Stop(reason, time.monotonic()), force=True)
        if self._core_thread is not None:
            self._core_thread.join(10.0)
            if self._core_thread.is_alive():
                log.error("core thread did not stop within 10 s")
        self._quietly("storage", lambda: self.storage and self.storage.stop())
        self._quietly("remote worker", lambda: self.worker and self.worker.stop())
        self._quietly("time floor", lambda: self.clock.floor.save(time.monotonic()))
        self._quietly("replay memory", lambda: self.replay and self.replay.close())
        self._quietly("screens", self._stop_screens)
        self._quietly("uplink", lambda: self.uplink and self.uplink.stop())
        self._quietly("link", lambda: self.link and self.link.stop(reason=self.exit_reason))
        self._quietly("outbox", lambda: self.outbox and self.outbox.close())
        if self._factory is not None and self._injected_factory is None:
            self._quietly("pin factory", self._factory.close)
        self._quietly("status file", lambda: (runtime_dir(self.config) / STATUS_FILE).unlink(missing_ok=True))

    @staticmethod
    def _quietly(name: str, fn) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - shutting down: do the rest anyway
            log.exception("stopping %s failed", name)

    # ---------------------------------------------------------------- inbox

    def _post(self, event: Any, force: bool = False) -> None:
        """What every adapter calls. A full inbox drops and counts the event; ``force`` (state
        changes: link, receiver, stop) waits up to a second first, never longer, so a stuck
        core cannot freeze an adapter's thread (the watchdog deals with a stuck core)."""
        try:
            if force:
                self.inbox.put(event, timeout=1.0)
            else:
                self.inbox.put_nowait(event)
        except queue.Full:
            self.dropped_events += 1
            if self.dropped_events in (1, 10, 100) or self.dropped_events % 1000 == 0:
                log.error("inbox full: %d events dropped so far (last %s)", self.dropped_events, type(event).__name__)

    def post(self, event: Any) -> None:
        """Post an event from outside the adapters (touch, tests, the rig)."""
        self._post(event)

    # ------------------------------------------------------------ core loop

    def _core_loop(self) -> None:
        assert self.unit is not None
        failed = False
        while True:
            self._heartbeat.beat()
            timeout = max(0.0, min(self._next_deadline() - time.monotonic(), MAX_IDLE_S))
            if failed:
                # A deadline that failed stays due: wake for it again later, not in a busy loop.
                timeout = max(timeout, ERROR_PAUSE_S)
            try:
                event = self.inbox.get(timeout=timeout)
            except queue.Empty:
                event = Tick(time.monotonic())
            if isinstance(event, Stop):
                self._persist()
                return
            if self.worker is not None:
                self.worker.overdue(time.monotonic())
            try:
                self._handle(event)
                self.events_handled += 1
                self.clock.gnss_offset = self.unit.timebase.gnss_offset
                self._keep_time_floor()
                failed = False
            except Exception:  # noqa: BLE001 - one bad event never stops the unit
                failed = True
                self.core_errors += 1
                if self.core_errors in (1, 10, 100) or self.core_errors % 1000 == 0:
                    log.exception("error handling %s (%d so far); carrying on", type(event).__name__,
                                  self.core_errors)

    def _keep_time_floor(self) -> None:
        """A trusted clock is proof of the time: the floor follows it, and is stored now and then."""
        self.clock.best_time()
        self.clock.floor.maybe_save(time.monotonic())

    def _next_deadline(self) -> float:
        assert self.unit is not None
        deadline = min(self.unit.next_deadline(), self._next_status_write)
        if self.display is not None and (redraw := views.next_redraw(self.unit, time.monotonic())) is not None:
            deadline = min(deadline, redraw)  # the rider display's hold bar and cancel countdown move
        guard = self.remote.deadline()
        return deadline if guard is None else min(deadline, guard)

    def _handle(self, event: Any) -> None:
        unit = self.unit
        assert unit is not None
        now = self.clock.now()
        if isinstance(event, MessageReceived) and event.retained and event.topic in NEVER_RETAINED:
            log.warning("ignoring a retained %s (stale by definition; senders must not retain it)", event.topic)
            effects = unit.handle(Tick(now.mono), now)
        elif isinstance(event, MessageReceived) and event.topic in ("config/set", "cmd"):
            log.warning("ignoring a %s that did not come through the remote-request worker", event.topic)
            effects = unit.handle(Tick(now.mono), now)
        elif isinstance(event, RESULTS):
            self.remote.handle(event, now, config=self.config, unit=unit, uplink=self.uplink)
            effects = unit.handle(Tick(now.mono), now)
        else:
            effects = unit.handle(event, now)
        # The crew's screens first: a call is on the displays before its "received" receipt
        # is stored (fsync) and sent, as the receipt says.
        if unit.revision != self._shown_revision or isinstance(event, Tick):
            self._refresh_outputs(now)
        if isinstance(event, LinkUp):
            self._publish(self._config_current())
        for effect in effects:
            self._execute(effect, now)
        self.remote.check_guard(now, link=self.link, worker=self.worker)
        self._persist()
        # A change `umps-agent status` shows is written at once, not at the next round.
        if now.mono >= self._next_status_write or isinstance(event, (LinkUp, LinkDown, GnssLost, GnssRestored)):
            self._next_status_write = now.mono + STATUS_EVERY_S
            self._write_status(now)

    def _execute(self, effect: Any, now: Now) -> None:
        if isinstance(effect, Publish):
            if effect.seq is not None:
                self.reports_made += 1
                self._last_report_mono = now.mono
                self._last_report_period = self.unit.schedule.period if self.unit else 1.0
            self._publish(effect)
        elif isinstance(effect, Feedback):
            if self.panel is not None:
                self.guards["leds"].run(lambda: self.panel.apply(feedback(effect.kind, self.config.panel.patterns)))
        elif isinstance(effect, Shutdown):
            log.warning("parked with the ignition off for %g s: stopping and powering off",
                        self.config.power.shutdown_after_s)
            self.request_exit(effect.reason)
        elif isinstance(effect, Speak):
            if self.speaker is not None:
                self.guards["speech"].run(self._speak, effect.call_id, now)
        else:
            log.error("unknown effect %r", effect)

    def _speak(self, call_id: str, now: Now) -> None:
        text = views.spoken_text(self.unit, call_id, now)
        if text and self.speaker is not None:
            self.speaker.speak(text, self.config.panel.language)

    def _publish(self, publish: Publish) -> None:
        assert self.uplink is not None
        self.guards["outbox"].run(self.uplink.submit, publish)

    # -------------------------------------------------------------- outputs

    def _refresh_outputs(self, now: Now) -> None:
        unit = self.unit
        assert unit is not None
        self._shown_revision = unit.revision
        # Each behind its own guard: one that fails never keeps the others (or the event) from running.
        if self.panel is not None:
            self.guards["leds"].run(lambda: self.panel.apply(
                indicator_plan(views.indicator_view(unit, now), self.config.panel.patterns)))
        if self.display is not None:
            self.guards["display"].run(lambda: self.display.post(views.rider_view(unit, now, views.clock_text(now.wall))))
        if self.web is not None:
            self.guards["touchscreen"].run(lambda: self._show_on_touchscreen(now))

    def _show_on_touchscreen(self, now: Now) -> None:
        assert self.unit is not None and self.web is not None
        if self.web.update(views.screen_snapshot(self.unit, now, backlog=self._backlog())) is False:
            raise ValueError("the touchscreen refused the snapshot")

    def _backlog(self) -> int:
        if self.outbox is None:
            return 0
        # Reports waiting to be sent (a live one waiting while offline is backlog already).
        pending = self.outbox.stats().pending
        return int(pending.get("backlog", 0) + pending.get("live", 0))

    def _persist(self) -> None:
        """Store the unit's state when it changed (status, alarm, calls: they survive power loss)."""
        assert self.unit is not None and self.state_file is not None
        state = self.unit.persistent_state()
        if self.state_file.changed(state):
            # Not stored (full disk...): still changed, so the next event or tick tries again.
            self.guards["state_file"].run(self.state_file.store, state)

    def _restore_state(self, now: Now) -> None:
        assert self.unit is not None and self.state_file is not None
        state = self.state_file.load()
        if state is None:
            return
        try:
            self._pending_restore = self.unit.restore(state, now)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("stored unit state %s does not fit (%s); starting from the defaults", self.state_file.path, exc)
            self.unit = Unit(self.config, self.unit.next_seq, now, config_version=self.cfg_state.version,
                             alarm_ids=random_alarm_id)
        self.state_file.mark_stored(self.unit.persistent_state())

    # ------------------------------------- remote requests, config changes

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """From the MQTT thread: remote requests to the worker, the rest to the core."""
        worker = self.worker
        if worker is not None and not (retained and topic in NEVER_RETAINED) and worker.wants(topic):
            worker.submit(topic, payload)
        else:
            self._post(MessageReceived(topic, payload, time.monotonic(), retained))

    def _apply(self, state: ConfigState, reinit: frozenset[str] | set[str], now: Now) -> None:
        """Make ``state`` the running config (an accepted push or a rollback, from
        :mod:`agent.remote_results`): hot changes to the unit, ``reinit`` adapters rebuilt."""
        old = self.config
        self.cfg_state, self.config = state, state.config
        if self.secrets is not None and state.config.secrets() != old.secrets():
            self.secrets.update(state.config)
        assert self.unit is not None
        self.unit.config_version = state.version
        self.unit.reconfigure(state.config, now)
        cfg = state.config
        if self.outbox is not None and cfg.storage != old.storage:
            self.outbox.set_limits(max_backlog_reports=cfg.storage.max_backlog_reports,
                                   commit_interval_s=cfg.storage.commit_interval_s)
        if cfg.logging.level != old.logging.level:
            logging.getLogger().setLevel(cfg.logging.level)
        with self._screens_lock:  # the start may still be bringing the screens up
            if cfg.display.speech != old.display.speech:
                self._quietly("speech", self._stop_speech)
                self._start_speech()
        if "gnss" in reinit:
            self._quietly("gnss", self._stop_gnss)
            self._start_gnss()
        if "gpio" in reinit:
            self._quietly("panel", self._stop_panel)
            self._start_panel()
        with self._screens_lock:
            if "display" in reinit or (self.display is not None and cfg.panel.labels != old.panel.labels):
                self._quietly("display", self._stop_display)
                self._start_display()
        if "mqtt" in reinit:
            self._restart_link()
        self._shown_revision = -1

    def _config_current(self) -> Publish:
        return config_current(self.cfg_state, self.secrets.version if self.secrets is not None else None,
                              self.clock.stamp())

    def _adopt(self, state: ConfigState) -> None:
        self.cfg_state = state

    # ------------------------------------------------------------- adapters

    def _start_link(self) -> None:
        cfg = self.config
        self.link = MqttLink(
            mqtt_settings(cfg),
            unit_id=cfg.unit.id,
            on_up=self._on_link_up,
            on_down=self._on_link_down,
            on_message=self._on_message,
            birth=self._birth,
            subscriptions=SUBSCRIPTIONS,
            waiting=lambda: self._backlog() > 0,  # reports waiting: come back quickly (see mqtt.py)
        )
        self.uplink = Uplink(self.outbox, self.link, backlog_rate_limit=cfg.telemetry.backlog_max_rate)
        self.uplink.start()
        for effect in self._pending_restore:
            self._execute(effect, self.clock.now())
        self._pending_restore = []
        self.link.start()

    def _on_link_up(self, broker: str) -> None:
        if self.outbox is not None:
            self.outbox.gap_declared()  # the birth just went out on this connection
        if self.uplink is not None:
            self.uplink.link_up(broker)  # the waiting reports go now, not at the sender's next idle wake
        self._post(LinkUp(broker, time.monotonic()), force=True)

    def _on_link_down(self, reason: str) -> None:
        if self.uplink is not None:
            self.uplink.link_down(reason)
        self._post(LinkDown(reason, time.monotonic()), force=True)

    def _restart_link(self) -> None:
        log.warning("broker settings changed: reconnecting")
        self._quietly("uplink", lambda: self.uplink and self.uplink.stop())
        self._quietly("link", lambda: self.link and self.link.stop())
        self._start_link()

    def _birth(self) -> bytes:
        assert self.outbox is not None
        stamp = self.clock.stamp()
        storage = self.storage
        return birth_payload(agent_version=__version__, config_version=self.cfg_state.version,
                             config_hash=self.cfg_state.config.digest(), ts=stamp["ts"],
                             time_source=stamp["time_source"],
                             seq_start=self.outbox.next_seq(), seq_gap=self.outbox.seq_gap(),
                             durable=storage.durable if storage else None,
                             durable_reason=storage.reason if storage else None)

    # ---------------------------------------------------------------- power

    def request_exit(self, reason: str) -> None:
        """Ask :func:`run_agent` to stop the agent and power the unit off (``power``, ``ignition``)."""
        if self.exit_reason is None:
            self.exit_reason = reason
        self.exit_requested.set()

    def _start_power(self) -> None:
        cfg = self.config
        if cfg.power.ignition_pin is None and cfg.power.power_fail_pin is None:
            return
        try:
            self.power = PowerInputs(
                cfg.power, self._pin_factory(),
                on_ignition=lambda on: self._post(IgnitionChanged(on, time.monotonic()), force=True),
                on_power_fail=self._power_failing)
            self.power.start()
        except (PinFactoryError, ValueError, OSError, RuntimeError) as exc:
            # Without the lines the unit still works: always "driving", and a cut may lose a batch.
            log.error("power inputs unavailable: %s", exc)
            self.power = None

    def _pin_factory(self) -> Any:
        """The one pin factory the panel and the power lines share (made at first use)."""
        if self._factory is None:
            self._factory = self._injected_factory or make_pin_factory(self.config.gpio)
        return self._factory

    def _stop_power(self) -> None:
        if self.power is not None:
            self.power.close()
            self.power = None

    def _power_failing(self) -> None:
        """The hold-up supply's warning (its own thread): everything on disk first, then a clean stop."""
        started = time.monotonic()
        ok = self.outbox.seal() if self.outbox is not None else False
        done = time.monotonic()
        self.power_fail_safe_s = done - started
        if ok:
            # The monotonic time lets a bench on the same machine time edge to safe (bench/bench_power.py).
            log.warning("power failing: every unacknowledged record and the next seq on disk in %.1f ms "
                        "(monotonic %.6f)", self.power_fail_safe_s * 1000, done)
        else:
            log.error("power failing: the outbox could not be committed; what is not on disk will be lost")
        self.request_exit("power")

    # ------------------------------------------------ receiver, panel, screens

    def _start_gnss(self) -> None:
        g = self.config.gnss
        self.reader = SerialGnssReader(
            g.port, g.baudrate,
            on_fix=lambda fix: self._post(FixReceived(fix, time.monotonic())),
            on_lost=lambda reason: self._post(GnssLost(reason, time.monotonic()), force=True),
            on_restored=lambda: self._post(GnssRestored(time.monotonic()), force=True),
            silence_timeout=g.silence_timeout_s,
            reopen_max_wait=g.reopen_max_wait_s,
        )
        self.reader.start()

    def _stop_gnss(self) -> None:
        if self.reader is not None:
            self.reader.stop()

    def _start_panel(self) -> None:
        cfg = self.config
        try:
            self.panel = PanelIO(cfg.gpio, self._pin_factory(), buttons=panel_buttons(cfg.gpio, cfg.status_buttons),
                                 post=self._post)
        except (PinFactoryError, ValueError, OSError, RuntimeError) as exc:
            # The unit still reports its position and takes calls on the screens.
            log.error("panel I/O unavailable: %s", exc)
            self.panel = None

    def _stop_panel(self) -> None:
        if self.panel is not None:
            self.panel.close()
            self.panel = None

    def _start_screens(self) -> None:
        cfg = self.config
        if cfg.ui_enabled:
            from agent.adapters.web_ui import WebUi

            web = WebUi(cfg.ui.host, cfg.ui.http_port, post=self._post)
            try:
                web.start()
                self.web = web
                log.info("touchscreen page at %s", web.url)
            except OSError as exc:
                log.error("touchscreen page cannot start on %s:%d: %s", cfg.ui.host, cfg.ui.http_port, exc)
        self._start_display()
        self._start_speech()

    def _start_speech(self) -> None:
        if self.config.display.speech:
            from agent.adapters.speech import Speaker

            self.speaker = Speaker(enabled=True)

    def _stop_speech(self) -> None:
        if self.speaker is not None:
            self.speaker.close()
            self.speaker = None

    def _start_display(self) -> None:
        cfg = self.config
        kind = cfg.display_kind
        if kind == "none":
            return
        from agent.adapters.panel_display import DisplayError, DisplayWorker, open_display

        try:
            device = open_display(kind, cfg.display.i2c_port, cfg.display.i2c_address, cfg.display.width,
                                  cfg.display.height, cfg.display.rotate, labels=views.display_labels(self.unit),
                                  mirror_png=cfg.display.mirror_png or None)
        except (DisplayError, OSError) as exc:
            log.error("rider display unavailable: %s", exc)
            return
        if device is not None:
            self.display = DisplayWorker(device)

    def _stop_display(self) -> None:
        if self.display is not None:
            self.display.close()
            self.display = None

    def _stop_screens(self) -> None:
        if self.web is not None:
            self.web.stop()
        self._stop_display()
        self._stop_speech()

    # ------------------------------------------------------ health, status

    def _start_watchdog(self) -> None:
        checks = [
            self._heartbeat.check(),
            sdnotify.HealthCheck("gnss reader", lambda: (bool(self.reader and self.reader.alive), "reader thread")),
            sdnotify.HealthCheck("uplink", lambda: (bool(self.uplink and self.uplink.alive), "sender thread")),
            sdnotify.HealthCheck("remote requests",
                                 lambda: (bool(self.worker and self.worker.alive), "remote-request worker thread")),
            sdnotify.Progress(
                "publish path",
                pending=lambda: (self.outbox.stats().in_flight if self.link and self.link.connected else 0),
                done=lambda: self.link.stats().acked if self.link else 0,
                max_stall=PUBLISH_MAX_STALL_S,
            ).check(),
            sdnotify.HealthCheck("telemetry", self._reports_on_schedule, restart_now=True),
            sdnotify.Progress("inbox", pending=self.inbox.qsize, done=lambda: self.events_handled,
                              max_stall=INBOX_MAX_STALL_S).check(restart_now=True),
        ]
        interval = sdnotify.watchdog_interval()
        self.watchdog = sdnotify.Watchdog(self.notifier, checks,
                                          interval and min(interval, WATCHDOG_CHECK_EVERY_S))
        self.watchdog.start()

    def _reports_on_schedule(self) -> tuple[bool, str]:
        """Telemetry is the unit's first duty: a core that stops producing it is stuck, even if it ticks."""
        assert self.unit is not None
        # The longer of the periods before and after a rate change (parked <-> driving).
        limit = max(REPORT_MAX_GAP_S, 5 * max(self.unit.schedule.period, self._last_report_period))
        gap = time.monotonic() - self._last_report_mono
        if gap <= limit:
            return True, f"last report {gap:.1f} s ago ({self.reports_made} made)"
        return False, f"no telemetry report for {gap:.1f} s (limit {limit:g} s)"

    def _status_line(self) -> str:
        assert self.unit is not None
        return status_line(self.unit, self._backlog(), time.monotonic())

    def status_report(self, now: Now) -> dict[str, Any]:
        """What ``umps-agent status`` shows (written to the runtime directory)."""
        assert self.unit is not None
        return build_report(
            now, unit=self.unit, config=self.config, config_path=self.config_path,
            config_version=self.cfg_state.version, started_mono=self.started_mono,
            link=self.link.stats() if self.link else None,
            outbox=self.outbox.stats() if self.outbox else None,
            gnss=self.reader.counters if self.reader else None,
            disk_ok=self._disk_ok(now.mono), panel=self.panel is not None,
            inbox_dropped=self.dropped_events, core_errors=self.core_errors,
            outputs={name: guard.snapshot() for name, guard in self.guards.items()},
            storage=self.storage.snapshot() if self.storage else None,
        )

    def _storage_health(self) -> StorageHealth:
        """Every store of the state directory, each saying why it is not durable (agent/storage_health.py)."""
        assert self.outbox is not None and self.replay is not None
        outbox, replay, store, state_file = self.outbox, self.replay, self.store, self.state_file
        floor = self.clock.floor
        assert state_file is not None and floor is not None
        return StorageHealth([
            Store("outbox", outbox.health, outbox.recover),
            Store("replay memory", lambda: replay.problem, replay.recover),
            # The core thread writes the state again at its next event or tick.
            Store("unit state", lambda: state_file.problem),
            Store("remote config", lambda: store.unreadable and f"stored remote config unreadable ({store.unreadable})"),
            Store("time floor", lambda: floor.write_failures and "time floor not stored (kept in memory)"),
        ], on_change=lambda durable, reason: self._post(StorageChanged(durable, reason, time.monotonic()), force=True))

    def _disk_ok(self, now_mono: float) -> bool:
        outbox = self.outbox
        if outbox is None:
            return False
        return self._disk.ok(now_mono, self.config.storage.state_dir, outbox_ok=outbox.stats().disk_ok,
                             state_file_ok=self.guards["state_file"].ok,
                             recommit=lambda: self.guards["outbox"].run(outbox.commit))

    def _write_status(self, now: Now) -> None:
        self.guards["status_file"].run(lambda: write_status_file(runtime_dir(self.config), self.status_report(now)))
        self.notifier.status(self._status_line())  # never raises: a failed send is logged by the notifier


def run_agent(config: AgentConfig, config_path: str | Path) -> int:
    """Run until SIGTERM or SIGINT, or until the agent asks to stop (power fail, parked too long: then
    ``[power] poweroff_command`` runs); what ``umps-agent run`` does (``config``: the file, validated)."""
    reason = {"why": "shutdown"}
    runtime = Runtime(config_path, base=config)
    stop = runtime.exit_requested

    def on_signal(signum: int, _frame: Any) -> None:
        reason["why"] = signal.Signals(signum).name
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        runtime.start()
    except EncryptionError as exc:
        log.critical("%s", exc)
        runtime.stop("state directory not encrypted")
        return EXIT_FAILURE
    except Exception:
        log.exception("the agent could not start")
        runtime.stop("start failed")
        return EXIT_FAILURE
    while not stop.wait(1.0):
        thread = runtime._core_thread
        if thread is not None and not thread.is_alive():
            log.critical("the core thread has died; exiting so systemd restarts the agent")
            runtime.stop("core thread died")
            return EXIT_FAILURE
    if runtime.exit_reason is None:
        runtime.stop(reason["why"])
        return EXIT_OK
    runtime.stop(f"{runtime.exit_reason} (asked by the unit)")
    power_off(runtime.config.power.poweroff_command)
    return EXIT_OK
