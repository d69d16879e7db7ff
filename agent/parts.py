"""The running agent's parts: its stores, the core's unit, and how each adapter is made.

:class:`Parts` builds at once what is always there, in this order:

1. the state directory (refused when ``[storage] require_encrypted`` is set and
   it is not encrypted: the unit never writes positions to a plain card);
2. the stores on it, each opened whatever the card does (full, read-only,
   damaged), never raising: the replay memory, the floor of authenticated time,
   the secrets version, the unit's state file, the outbox, the crash traces;
3. the remote-request worker (not started), the unit with its stored state
   put back, the last known fix, the storage health of every store;
4. the link and its uplink, and the GNSS reader (not started).

What may be missing (the power lines, the panel, the crash sensor, the
screens, speech) is made by its row of the lifecycle table
(:mod:`agent.lifecycle`), which starts, stops and rebuilds every adapter with
the ``new_*``, ``start_*`` and ``stop_*`` methods here (the screens' are in
:mod:`agent.outputs`). Nothing here starts a thread.

Every adapter's callback only posts an event to the bounded inbox
(:meth:`Parts.post`) and returns; nothing here runs on the core thread except
:meth:`persist` and what the runtime calls.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__
from agent.adapters.alarm_ids import random_alarm_id
from agent.adapters.clock import UnitTime
from agent.adapters.config_store import ConfigStore
from agent.adapters.crash_traces import TraceStore
from agent.adapters.encryption import check_encrypted
from agent.adapters.gpio import PanelIO, PinFactoryError, make_pin_factory, panel_buttons
from agent.adapters.imu_reader import ImuReader
from agent.adapters.last_fix_store import LastFixKeeper, LastFixStore, boot_id
from agent.adapters.mqtt import MqttLink, MqttSettings, birth_payload
from agent.adapters.outbox import Outbox
from agent.adapters.power import PowerInputs
from agent.adapters.remote_worker import RemoteWorker
from agent.adapters.replay_store import ReplayStore
from agent.adapters.run_dir import runtime_dir
from agent.adapters.sdnotify import Notifier, Watchdog
from agent.adapters.secrets_version import SecretsVersion
from agent.adapters.serial_gnss import SerialGnssReader
from agent.adapters.state_file import UnitStateFile
from agent.adapters.time_floor_store import TimeFloorStore
from agent.adapters.uplink import Uplink
from agent.config import AgentConfig, Validate
from agent.core.effects import Effect
from agent.core.events import (
    Event, FixReceived, GnssLost, GnssRestored, IgnitionChanged, ImuSamples, ImuState, LinkDown, LinkUp,
    MessageReceived, StorageChanged,
)
from agent.core.inbound import SUBSCRIPTIONS
from agent.core.remote_config import ConfigState
from agent.core.unit import Now, Unit
from agent.output_guard import OutputGuard
from agent.outputs import Outputs
from agent.storage_health import StorageHealth, Store
from agent.watchdog_rules import CoreProgress

if TYPE_CHECKING:
    from gpiozero import Factory

log = logging.getLogger("agent.runtime")

INBOX_SIZE = 1024
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


def state_directory(cfg: AgentConfig) -> Path:
    """The state directory, made if need be; raises EncryptionError when it must be encrypted and is not."""
    state_dir = Path(cfg.storage.state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # The unit runs anyway: every store keeps in memory what it cannot store, and says so.
        log.error("state directory %s cannot be made: %s", state_dir, exc)
    if cfg.storage.require_encrypted:
        # Raises EncryptionError: the unit refuses to write positions to a plain SD card.
        log.info("state directory %s: %s", state_dir, check_encrypted(state_dir))
    return state_dir


class Parts:
    """What the running agent is made of. See the module docstring."""

    def __init__(self, config_path: Path, state: ConfigState, store: ConfigStore, *, validate: Validate, clock: UnitTime,
                 notifier: Notifier, pin_factory: Factory | None, core_loop: Callable[[], None],
                 execute: Callable[[Effect, Now], None], request_exit: Callable[[str], None]) -> None:
        self.config_path, self.cfg_state, self.config = config_path, state, state.config
        self.store, self.validate = store, validate
        self.clock, self.notifier = clock, notifier
        # The runtime's: its core loop (run by the lifecycle's "core" row), its effect dispatcher, its stop.
        self.core_loop, self.execute, self.request_exit = core_loop, execute, request_exit
        self.started: list[str] = []  # the lifecycle rows started, in order (agent/lifecycle.py)
        self.exit_reason: str | None = None  # why the unit asked itself to stop: said in the link's goodbye
        self.stop_reason = "shutdown"
        self.inbox: queue.Queue[Event] = queue.Queue(maxsize=INBOX_SIZE)
        self.core = CoreProgress()
        self.started_mono = time.monotonic()
        self.guards = {name: OutputGuard(name.replace("_", " "), log) for name in OUTPUTS}
        self.screens_lock = threading.Lock()  # the start brings the screens up while the core runs
        self.core_thread: threading.Thread | None = None  # started by the lifecycle table's "core" row
        self.watchdog: Watchdog | None = None
        self.power: PowerInputs | None = None
        self.power_fail_safe_s: float | None = None  # warning edge to everything on disk
        self.panel: PanelIO | None = None
        self.imu: ImuReader | None = None
        self._injected_factory = pin_factory
        self._factory: Factory | None = None
        cfg = self.config
        state_dir = state_directory(cfg)
        # Each store opens whatever the card does (full, read-only, damaged), never raising.
        self.replay = ReplayStore(state_dir)
        # The floor of authenticated time, kept on the card (memory only when it cannot be).
        self.floor = clock.floor = TimeFloorStore(state_dir, time.monotonic())
        self.secrets = SecretsVersion(state_dir)
        self.state_file = UnitStateFile(state_dir)
        self.state_file.prepare()
        self.secrets.update(cfg)
        self.worker = RemoteWorker(state, store, self.replay, post=lambda e: self.post(e, force=True),
                                   clock=clock.judging_clock, validate=validate, floor=self.floor)
        self.outbox = Outbox(state_dir, max_backlog_reports=cfg.storage.max_backlog_reports,
                             commit_interval_s=cfg.storage.commit_interval_s, exclusive=True,
                             ram_dir=runtime_dir(cfg))
        now = clock.now()
        self.traces = TraceStore(state_dir)
        self.unit, self.pending_restore = self._restored_unit(now)  # effects run once the uplink exists
        # The last known fix, stored at times (agent/core/last_fix.py): reported until a new one comes.
        self.last_fix = LastFixKeeper(LastFixStore(state_dir, runtime_dir(cfg)), boot_id())
        self.last_fix.restore(self.unit, now)
        self.storage = self._storage_health()
        if not self.storage.durable:  # the first status says so
            self.post(StorageChanged(False, self.storage.reason, time.monotonic()), force=True)
        self.outputs = Outputs(self.guards, post=self.post)
        self.link, self.uplink = self.new_link()
        self.reader = self.new_reader()

    # ---------------------------------------------------------------- inbox

    def post(self, event: Event, force: bool = False) -> None:
        """What every adapter calls. A full inbox drops and counts the event; ``force`` (state
        changes: link, receiver, stop) waits up to a second first, never longer, so a stuck
        core cannot freeze an adapter's thread (the watchdog deals with a stuck core)."""
        try:
            if force:
                self.inbox.put(event, timeout=1.0)
            else:
                self.inbox.put_nowait(event)
        except queue.Full:
            self.core.dropped_events += 1
            dropped = self.core.dropped_events
            if dropped in (1, 10, 100) or dropped % 1000 == 0:
                log.error("inbox full: %d events dropped so far (last %s)", dropped, type(event).__name__)

    # ------------------------------------------------------- the unit's state

    def _new_unit(self, next_seq: int, now: Now) -> Unit:
        """The unit, with its crash sensor's mounting as calibrated (``umps-agent imu calibrate``)."""
        cfg = self.config
        unit = Unit(cfg, next_seq, now, config_version=self.cfg_state.version, alarm_ids=random_alarm_id)
        if unit.officer.watch is not None:
            from agent.imu_tools import load_mounting

            mounting, problem = load_mounting(cfg)
            if problem:
                log.error("crash sensor mounting: %s", problem)
            unit.officer.watch.mounting = mounting
        return unit

    def _restored_unit(self, now: Now) -> tuple[Unit, list[Effect]]:
        """The unit with what a previous run stored put back, and what must be re-published."""
        unit = self._new_unit(self.outbox.next_seq(), now)
        pending: list[Effect] = []
        state = self.state_file.load()
        if state is not None:
            try:
                pending = unit.restore(state, now)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("stored unit state %s does not fit (%s); starting from the defaults", self.state_file.path, exc)
                unit = self._new_unit(unit.next_seq, now)
            self.state_file.mark_stored(unit.persistent_state())
        return unit, pending

    def take_config(self, state: ConfigState, now: Now) -> AgentConfig:
        """Make ``state`` the running config for what takes it hot (the unit, the outbox's limits,
        the log level, the secrets version); returns the config it replaces. The lifecycle table
        rebuilds the adapters it touches."""
        old, cfg = self.config, state.config
        self.cfg_state, self.config = state, cfg
        if cfg.secrets() != old.secrets():
            self.secrets.update(cfg)
        self.unit.config_version = state.version
        self.unit.reconfigure(cfg, now)
        if cfg.storage != old.storage:
            self.outbox.set_limits(max_backlog_reports=cfg.storage.max_backlog_reports,
                                   commit_interval_s=cfg.storage.commit_interval_s)
        if cfg.logging.level != old.logging.level:
            logging.getLogger().setLevel(cfg.logging.level)
        return old

    def persist(self, stopping: bool = False) -> None:
        """Store the unit's state when it changed (status, alarm, calls: they survive power loss),
        and its last valid fix when agent/core/last_fix.py says so (at a stop: if it changed)."""
        self.last_fix.keep(self.unit, self.clock.now(), stopping=stopping)
        state = self.unit.persistent_state()
        if self.state_file.changed(state):
            # Not stored (full disk...): still changed, so the next event or tick tries again.
            self.guards["state_file"].run(self.state_file.store, state)

    def backlog(self) -> int:
        # Reports waiting to be sent (a live one waiting while offline is backlog already).
        pending = self.outbox.stats().pending
        return int(pending.get("backlog", 0) + pending.get("live", 0))

    def _storage_health(self) -> StorageHealth:
        """Every store of the state directory, each saying why it is not durable (agent/storage_health.py)."""
        outbox, replay, store, state_file, floor = self.outbox, self.replay, self.store, self.state_file, self.floor
        return StorageHealth([
            Store("outbox", outbox.health, outbox.recover),
            Store("replay memory", lambda: replay.problem, replay.recover),
            # The core thread writes the state again at its next event or tick.
            Store("unit state", lambda: state_file.problem),
            Store("remote config", lambda: store.unreadable and f"stored remote config unreadable ({store.unreadable})"),
            Store("time floor", lambda: floor.write_failures and "time floor not stored (kept in memory)"),
        ], on_change=lambda durable, reason: self.post(StorageChanged(durable, reason, time.monotonic()), force=True))

    def close_stores(self) -> None:
        """At the very end of a stop, every thread stopped: what is kept goes to the card."""
        for name, fn in (("time floor", lambda: self.floor.save(time.monotonic())),
                         ("replay memory", self.replay.close), ("outbox", self.outbox.close)):
            quietly(name, fn)
        if self._factory is not None and self._injected_factory is None:
            quietly("pin factory", self._factory.close)

    # ------------------------------------------------------------- the link

    def new_link(self) -> tuple[MqttLink, Uplink]:
        cfg = self.config
        link = MqttLink(
            mqtt_settings(cfg),
            unit_id=cfg.unit.id,
            on_up=self._on_link_up,
            on_down=self._on_link_down,
            on_message=self._on_message,
            birth=self._birth,
            subscriptions=SUBSCRIPTIONS,
            waiting=lambda: self.backlog() > 0,  # reports waiting: come back quickly (see mqtt.py)
        )
        return link, Uplink(self.outbox, link, backlog_rate_limit=cfg.telemetry.backlog_max_rate)

    def restored_messages(self) -> None:
        """The restored state's messages (an alarm, a call's receipt), into the uplink once (before the link connects)."""
        for effect in self.pending_restore:
            self.execute(effect, self.clock.now())
        self.pending_restore = []

    def stop_link(self, reason: str | None = None) -> None:
        quietly("uplink", self.uplink.stop)
        quietly("link", lambda: self.link.stop(reason=reason))

    def _on_link_up(self, broker: str) -> None:
        self.outbox.gap_declared()  # the birth just went out on this connection
        self.uplink.link_up(broker)  # the waiting reports go now, not at the sender's next idle wake
        self.post(LinkUp(broker, time.monotonic()), force=True)

    def _on_link_down(self, reason: str) -> None:
        self.uplink.link_down(reason)
        self.post(LinkDown(reason, time.monotonic()), force=True)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """From the MQTT thread: remote requests to the worker, the rest to the core."""
        if self.worker.wants(topic, retained):  # agent/core/inbound.py says which
            self.worker.submit(topic, payload)
        else:
            self.post(MessageReceived(topic, payload, time.monotonic(), retained))

    def _birth(self) -> bytes:
        stamp = self.clock.stamp()
        storage = self.storage
        return birth_payload(agent_version=__version__, config_version=self.cfg_state.version,
                             config_hash=self.cfg_state.config.digest(), ts=stamp["ts"],
                             time_source=stamp["time_source"],
                             seq_start=self.outbox.next_seq(), seq_gap=self.outbox.seq_gap(),
                             durable=storage.durable, durable_reason=storage.reason)

    # ------------------------------------------------------- power and inputs

    def pin_factory(self) -> Factory:
        """The one pin factory the panel and the power lines share (made at first use)."""
        if self._factory is None:
            self._factory = self._injected_factory or make_pin_factory(self.config.gpio)
        return self._factory

    def new_power(self) -> PowerInputs | None:
        """The ignition and hold-up supply lines, when configured (raises when the pins cannot be had)."""
        cfg = self.config
        if cfg.power.ignition_pin is None and cfg.power.power_fail_pin is None:
            return None
        return PowerInputs(cfg.power, self.pin_factory(),
                           on_ignition=lambda on: self.post(IgnitionChanged(on, time.monotonic()), force=True),
                           on_power_fail=self._power_failing)

    def stop_power(self) -> None:
        if self.power is not None:
            self.power.close()
            self.power = None

    def _power_failing(self) -> None:
        """The hold-up supply's warning (its own thread): everything on disk first, then a clean stop."""
        started = time.monotonic()
        ok = self.outbox.seal()
        done = time.monotonic()
        self.power_fail_safe_s = done - started
        if ok:
            # The monotonic time lets a bench on the same machine time edge to safe (bench/bench_power.py).
            log.warning("power failing: every unacknowledged record and the next seq on disk in %.1f ms "
                        "(monotonic %.6f)", self.power_fail_safe_s * 1000, done)
        else:
            log.error("power failing: the outbox could not be committed; what is not on disk will be lost")
        self.request_exit("power")

    def new_reader(self) -> SerialGnssReader:
        g = self.config.gnss
        return SerialGnssReader(
            g.port, g.baudrate,
            on_fix=lambda fix: self.post(FixReceived(fix, time.monotonic())),
            on_lost=lambda reason: self.post(GnssLost(reason, time.monotonic()), force=True),
            on_restored=lambda: self.post(GnssRestored(time.monotonic()), force=True),
            silence_timeout=g.silence_timeout_s,
            reopen_max_wait=g.reopen_max_wait_s,
        )

    def start_panel(self) -> None:
        cfg = self.config
        try:
            self.panel = PanelIO(cfg.gpio, self.pin_factory(), buttons=panel_buttons(cfg.gpio, cfg.status_buttons),
                                 post=self.post)
        except (PinFactoryError, ValueError, OSError, RuntimeError) as exc:
            # The unit still reports its position and takes calls on the screens.
            log.error("panel I/O unavailable: %s", exc)
            self.panel = None

    def stop_panel(self) -> None:
        if self.panel is not None:
            self.panel.close()
            self.panel = None

    def new_imu(self) -> ImuReader | None:
        imu = self.config.imu
        if not imu.enabled:
            return None
        return ImuReader(imu, on_samples=lambda batch: self.post(ImuSamples(batch, time.monotonic())),
                         on_state=lambda state, why: self.post(ImuState(state, why, time.monotonic()), force=True))

    def stop_imu(self) -> None:
        if self.imu is not None:
            self.imu.stop()
            self.imu = None


def quietly(name: str, fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - shutting down: do the rest anyway
        log.exception("stopping %s failed", name)
