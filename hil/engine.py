"""The scenario engine: stand the vehicle up around the agent, play the timeline, judge.

Theory of operation
-------------------
A :class:`Rig` owns everything around one agent: the broker (its own
Mosquitto on a free port, stopped by pid, or one given with ``--broker``),
the GNSS emulator on a pty driving the Kénitra route, the pigpio emulator on
a loopback port (with the boot pulls the agent's buttons ask for, see
``hil.gpio_emulator``), a :class:`~hil.peers.BrokerTap` recording the unit's
topics with the dispatcher and admin beside it, and the agent process started
from a generated configuration (``hil.agent_proc``). When a scenario cuts the
unit's own link (``link_down``), the agent reaches the broker through a
:class:`~hil.netproxy.NetProxy` that can stall or drop its connections while
the broker and dispatch stay up. ``Rig.up()`` brings it all up in that order
and waits for the agent's ``online`` birth message, which is ``t = 0``, and
for its ``READY=1`` to systemd (``hil.ready``) before the first step. ``Rig.down()`` takes it down in reverse, each part
stopped by what started it. ``start_agent()`` and ``stop_agent()`` restart
the agent alone, as a power cycle of the unit would. ``tls=True`` gives the
broker a mutual-TLS listener (``hil.pki``) and every client its certificate;
``admin_key`` makes the agent take signed requests only. The benchmarks
(``bench.rig``) and the end-to-end tests (``tests/test_agent_e2e.py``) stand
the unit up with this same rig.

Bench mode (``RigOptions.unit_config``): the agent is a real unit's, already
running; the rig reads the unit's config for its pins and topics, starts no
broker of its own (one is given) and no agent, drives the pins through the
second Pi's pigpio daemon (``hil.bench.BenchPins``) and sends NMEA out of a
serial adapter.

``run_scenario`` plays a :class:`~hil.scenario.Scenario` on a rig: each step
at its time (waiting on an event with a deadline, so a stop request is
honoured at once), recording when it ran and whether it could; then it waits
out ``duration_s``, notes whether the agent is still alive, takes the rig
down, builds the :class:`~hil.runlog.RunLog` (times converted to rig seconds)
and judges it with :func:`hil.expect.evaluate`. If the agent never comes
online, every expectation fails with that reason and the agent's output.

Progress goes to a ``progress(line)`` callable: each step, and each message
on the unit's topics except telemetry (one line per 10 reports instead).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.adapters.clock import CLOCK_ENV
from agent.admin_tools import public_text
from agent.config import AgentConfig, ConfigError, load_config
from agent import admin_tools
from agent.config_validate import parse_config
from hil import agent_proc
from hil.bench import BenchPins, SerialForwarder
from hil.broker import Broker, TlsListener, free_port
from hil.expect import Outcome, describe_expected, evaluate
from hil.gnss_emulator import GnssEmulator
from hil.gnss_faults import Fault
from hil.gnss_sources import CaptureSource, RouteSource
from hil.gpio_emulator import PigpioEmulator
from hil.imu_emulator import ImuEmulator
from hil.netproxy import NetProxy
from hil.peers import Admin, BrokerTap, Dispatcher, publish_raw
from hil.pki import TlsFiles, make_pki
from hil.recorder import ClientTls, Message
from hil.slowdown import slowdown
from hil.runlog import ActionRecord, Msg, PinSample, RunLog, TruthSample
from hil.scenario import Scenario, Step

ONLINE_TIMEOUT_S = 45.0  # on a Pi or this machine; times hil.slowdown's factor under emulation
AGENT_LINES_KEPT = 10_000  # the agent's output lines a run log keeps (the newest), for the report
UNIT_ID = "HIL-01"
PREFIX = "umps"

Progress = Callable[[str], None]


def _quiet(_line: str) -> None:
    pass


@dataclass
class RigOptions:
    workdir: Path
    unit_id: str = UNIT_ID
    unit_kind: str = "car"
    prefix: str = PREFIX
    gnss_rate_hz: int = 1  # 0: no GNSS emulator (the agent's receiver port stays silent)
    route_offset_s: float = 0.0
    agent_overrides: dict[str, Any] = field(default_factory=dict)
    agent_cmd: str = agent_proc.DEFAULT_AGENT_CMD
    broker: tuple[str, int] | None = None  # None: the rig starts its own
    ui_port: int | None = None
    start_agent: bool = True
    online_timeout_s: float = field(default_factory=lambda: ONLINE_TIMEOUT_S * slowdown())
    # Put a proxy between the agent and the broker, to cut the unit's own link.
    link_proxy: bool = False
    gnss_source: RouteSource | CaptureSource | None = None  # None: the Kénitra route from route_offset_s
    gnss_emulator: type[GnssEmulator] = GnssEmulator
    gpio_emulator: type[PigpioEmulator] = PigpioEmulator
    extra_gnss_ptys: int = 0  # more ptys with the same NMEA, for a peer reading beside the agent
    # Mutual TLS on the broker's only listener, as a fleet's broker has; every client gets a certificate.
    tls: bool = False
    admin_key: Ed25519PrivateKey | None = None  # the agent then only takes signed requests
    broker_persistence: bool = True
    quick_timings: bool = True  # hil.agent_proc.QUICK_TIMINGS; False: a vehicle's timings
    runtime_dir: Path | None = None  # None: <workdir>/run
    # False: the agent starts from an empty state directory (and runtime directory), whatever a
    # past run left in ``workdir``. True: it starts on what is there (a restart within a run
    # always keeps the state; this is about the first start).
    keep_state: bool = False
    # Bench mode: a real unit runs its own agent with this config (pins, unit id, prefix);
    # the rig drives its pins through a pigpio daemon and sends NMEA out of a serial port.
    unit_config: Path | None = None
    bench_gpio: tuple[str, int] | None = None
    gnss_serial: str | None = None
    gnss_baudrate: int = 9600
    # Signed dispatch: the rig makes a dispatch key, lists it in the unit's [security]
    # dispatch_keys and its dispatcher signs every call and alarm message. In bench mode,
    # ``dispatch_key`` (``umps-hil run --dispatch-key``) is the private key file whose public
    # key the real unit lists.
    signed_dispatch: bool = False
    dispatch_key: Path | None = None
    # A cold boot: the agent takes its clock as never synchronised (UMPS_AGENT_CLOCK), and the
    # receiver has no fix ("fix_lost") or is unplugged from before the agent's first read.
    clock_unsynchronised: bool = False
    gnss_at_start: str = "fix"
    # A fleet broker with passwords and ACLs (``broker`` given): the rig's recorder and
    # dispatcher log in with this (a dispatch role reads the fleet and sends calls).
    tap_login: tuple[str, str] | None = None
    # Emulate the crash sensor (hil/imu_emulator.py): the agent's [imu] reads its sysfs tree and pipe.
    imu: bool = False


class RigError(RuntimeError):
    pass


class Rig:
    """Broker, emulators, recorder and peers, and the agent; up() and down()."""

    def __init__(self, options: RigOptions, progress: Progress = _quiet, stop: threading.Event | None = None):
        # Resolved once: the agent's config, its process and the rig's files agree wherever the caller stands.
        options.workdir = Path(options.workdir).resolve()
        if options.runtime_dir is not None:
            options.runtime_dir = Path(options.runtime_dir).resolve()
        self.opt = options
        self.stop_requested = stop or threading.Event()
        self.progress = progress
        self.workdir = options.workdir
        self.broker: Broker | None = None
        self.broker_addr: tuple[str, int] = options.broker or ("127.0.0.1", 0)
        self.gnss: GnssEmulator | None = None
        self.gpio: PigpioEmulator | BenchPins | None = None
        self.imu: ImuEmulator | None = None
        self.boot_pulls: dict[int, str] = {}  # the emulator's pulls at power-on (from the agent's config)
        self.forwarder: SerialForwarder | None = None
        self.proxy: NetProxy | None = None
        self.tap: BrokerTap | None = None
        self.dispatcher: Dispatcher | None = None
        self.admin: Admin | None = None
        self.agent: agent_proc.AgentProcess | None = None
        self.agents: list[agent_proc.AgentProcess] = []  # each one this rig started, the current one last
        self.config: AgentConfig | None = None
        self.config_path: Path | None = None
        self.gnss_path: str = ""
        self.peer_ptys: list[str] = []
        self.pki: TlsFiles | None = None
        self.ui_port: int = options.ui_port or free_port()
        self.t0: float | None = None
        self.online_seen = threading.Event()
        self.power_off = False  # the unit's power is cut (the agent killed on purpose, maybe to restart)
        self._power_timers: list[threading.Timer] = []
        self._telemetry_count = 0
        self.messages_printed = True

    # ---------------------------------------------------------------- up

    def up(self) -> "Rig":
        try:
            self._up()
        except BaseException:
            self.down()
            raise
        return self

    def _up(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.opt.keep_state and self.opt.unit_config is None:
            # A fresh unit: no alarm, seq or call carried over from a past run in this directory.
            for stale in (self.state_dir, self.opt.runtime_dir or self.workdir / "run"):
                shutil.rmtree(stale, ignore_errors=True)
        if self.opt.tls:
            self.pki = make_pki(self.workdir / "pki")
        if self.opt.broker is None:
            shutil.rmtree(self.workdir / "broker", ignore_errors=True)  # no sessions or retained from a past run
            # Persistence, as on the fleet's broker: sessions and queued QoS 1 messages
            # survive a broker_stop/broker_start (and a kill, up to the last 1 s autosave).
            tls = TlsListener(self.pki, require_certificate=True) if self.pki is not None else None
            self.broker = Broker(self.workdir / "broker", persistence=self.opt.broker_persistence, tls=tls).start()
            self.broker_addr = self.broker.address
            self.progress(f"broker    mosquitto pid {self.broker.pid} on {self.broker_addr[0]}:{self.broker_addr[1]}")
        else:
            self.progress(f"broker    given: {self.broker_addr[0]}:{self.broker_addr[1]}")
        host, port = self.broker_addr
        if self.opt.unit_config is not None:
            self._up_bench()
            return
        self.tap = BrokerTap(host, port, prefix=self.opt.prefix, unit_id=self.opt.unit_id, on_message=self._on_message,
                             tls=self.client_tls("umps-hil-tap"), login=self.opt.tap_login).start()
        self.dispatcher, self.admin = Dispatcher(self.tap, self._dispatch_key()), Admin(self.tap)

        if self.opt.link_proxy:
            self.proxy = NetProxy(self.broker_addr).start()
            self.progress(f"link      the agent reaches the broker through a proxy on port {self.proxy.port}")
        # The config first (without the emulator addresses) to learn the pins and pulls.
        data = self._config_data(gnss_port="/dev/null", pigpio_port=8888)
        config = agent_proc.validate(data, "<rig config>")
        pulls = {spec.pin: "up" for spec in config.gpio.inputs.values() if spec.pull_up is True}
        pulls.update({spec.pin: "down" for spec in config.gpio.inputs.values() if spec.pull_up is False})
        power = config.power
        for pin, high in ((power.ignition_pin, power.ignition_active_high),
                          (power.power_fail_pin, power.power_fail_active_high)):
            if pin is not None:
                pulls[pin] = "down" if high else "up"
        self.boot_pulls = pulls
        self.gpio = self.opt.gpio_emulator(boot_pulls=pulls).start()
        if power.ignition_pin is not None:  # the vehicle is running when the unit starts
            self.gpio.set_input(power.ignition_pin, int(power.ignition_active_high))
        if self.opt.gnss_rate_hz:
            source = self.opt.gnss_source or RouteSource(offset_s=self.opt.route_offset_s)
            self.gnss = self.opt.gnss_emulator(source, rate_hz=self.opt.gnss_rate_hz, talker="GN")
            self.gnss_path = self.gnss.serve_pty(self.workdir / "gnss0")
            self.peer_ptys = [self.gnss.serve_pty(self.workdir / f"gnss-peer{k}")
                              for k in range(self.opt.extra_gnss_ptys)]
            if self.opt.gnss_at_start == "fix_lost":
                self.gnss.inject("fix_lost", None)
            elif self.opt.gnss_at_start == "unplugged":
                self.gnss.inject("unplug", None)
            self.gnss.start()
            self.progress(f"gnss      NMEA at {self.opt.gnss_rate_hz} Hz on {self.gnss_path}"
                          + ("" if self.opt.gnss_at_start == "fix" else f" ({self.opt.gnss_at_start} from the start)"))
        else:
            self.gnss_path = str(self.workdir / "no-gnss")
        self.progress(f"gpio      pigpio protocol on 127.0.0.1:{self.gpio.port}")
        if self.opt.imu:
            self.imu = ImuEmulator(self.workdir / "imu", kind=self.opt.unit_kind).start()
            self.opt.agent_overrides["imu"] = {**self.opt.agent_overrides.get("imu", {}), "enabled": True,
                                               "sysfs_dir": str(self.imu.sysfs_dir), "dev_dir": str(self.imu.dev_dir)}
            self.progress(f"imu       an MPU-6050's IIO device under {self.imu.root}")

        data = self._config_data(gnss_port=self.gnss_path, pigpio_port=self.gpio.port)
        self.config = agent_proc.validate(data, "<rig config>")
        self.config_path = agent_proc.write_toml(self.workdir / "agent.toml", data)
        if self.opt.start_agent:
            self.start_agent()

    @property
    def state_dir(self) -> Path:
        """The agent's ``[storage] state_dir`` (see ``hil.agent_proc.rig_config``)."""
        return self.workdir / "state"

    def start_agent(self) -> None:
        """Start the agent process (again); ``t = 0`` is its birth; returns once it has told systemd it is up."""
        assert self.config_path is not None and self.tap is not None
        mark = self.tap.mark()
        self._release_agent()
        if isinstance(self.gpio, PigpioEmulator):  # the emulated pins as at power-on, not as the last agent left them
            self.gpio.set_pulls(self.boot_pulls)
        self.agent = agent_proc.AgentProcess(self.config_path, self.workdir / "agent.log", self.opt.agent_cmd,
                                             env=self._agent_env()).start()
        self.agents.append(self.agent)
        self.progress(f"agent     pid {self.agent.pid}: {' '.join(self.agent.argv)}")
        self._wait_online(mark)

    def _release_agent(self) -> None:
        """What the last agent process held (its output copier, its NOTIFY_SOCKET), once it is gone."""
        if self.agent is not None and self.agent.exit_code() is not None:
            self.agent.stop()

    def _agent_env(self) -> dict[str, str] | None:
        """The agent's environment beyond the rig's: its clock taken as never synchronised, for a cold boot."""
        return {CLOCK_ENV: "unsynchronised"} if self.opt.clock_unsynchronised else None

    def stop_agent(self) -> int | None:
        """Stop the agent (SIGTERM, then SIGKILL); its exit code."""
        return self.agent.stop() if self.agent is not None else None

    def client_tls(self, name: str) -> ClientTls | None:
        """TLS files for one more client of the rig's broker (None when it has no TLS)."""
        return ClientTls.issue(self.pki, name) if self.pki is not None else None

    def _up_bench(self) -> None:
        """A real unit: its config says which pins and topics; its agent is already running."""
        assert self.opt.unit_config is not None
        try:
            self.config = load_config(self.opt.unit_config, parse_config)
        except ConfigError as exc:
            raise RigError(str(exc)) from None
        self.opt.unit_id, self.opt.prefix = self.config.unit.id, self.config.mqtt.prefix
        if self.opt.agent_overrides:
            self.progress("bench: the scenario's [agent] settings are not applied to a real unit")
        host, port = self.broker_addr
        self.tap = BrokerTap(host, port, prefix=self.opt.prefix, unit_id=self.opt.unit_id, on_message=self._on_message).start()
        key = None
        if self.config.security.dispatch_keys:
            if self.opt.dispatch_key is None:
                self.progress("bench: the unit has dispatch_keys and no --dispatch-key was given: it will refuse the rig's calls")
            else:
                key = admin_tools.load_private_key(self.opt.dispatch_key)
        self.dispatcher, self.admin = Dispatcher(self.tap, key), Admin(self.tap)
        if self.opt.bench_gpio is not None:
            self.gpio = BenchPins(*self.opt.bench_gpio, read_pins=[o.pin for o in self.config.gpio.outputs.values()])
            self.progress(f"gpio      the rig's pins through pigpiod at {self.opt.bench_gpio[0]}:{self.opt.bench_gpio[1]}")
        self.gnss = GnssEmulator(RouteSource(offset_s=self.opt.route_offset_s), rate_hz=self.opt.gnss_rate_hz, talker="GN")
        tcp = self.gnss.serve_tcp()
        self.gnss_path = f"socket://127.0.0.1:{tcp}"
        self.gnss.start()
        if self.opt.gnss_serial:
            self.forwarder = SerialForwarder(tcp, self.opt.gnss_serial, self.opt.gnss_baudrate).start()
            self.progress(f"gnss      NMEA at {self.opt.gnss_rate_hz} Hz out of {self.opt.gnss_serial}")
        self.progress(f"unit      {self.opt.unit_id} (its own agent); waiting for its online message")
        self._wait_online()

    def _dispatch_key(self) -> Any:
        """The dispatcher's signing key when dispatch is signed (its public key goes in the config)."""
        if not self.opt.signed_dispatch and self.opt.dispatch_key is None:
            return None
        path = self.opt.dispatch_key or self.workdir / "dispatch.key"
        if not path.exists():
            admin_tools.generate_key(path)
        key = admin_tools.load_private_key(path)
        security = self.opt.agent_overrides.setdefault("security", {})
        security["dispatch_keys"] = [admin_tools.public_text(key)]
        self.progress("dispatch  signed: the unit lists the rig's dispatch key; every call and alarm message is signed")
        return key

    def _config_data(self, *, gnss_port: str, pigpio_port: int) -> dict[str, Any]:
        mqtt_host, mqtt_port = self.proxy.address if self.proxy is not None else self.broker_addr
        admin_keys = (public_text(self.opt.admin_key),) if self.opt.admin_key is not None else ()
        return agent_proc.rig_config(
            unit_id=self.opt.unit_id, unit_kind=self.opt.unit_kind, gnss_port=gnss_port, pigpio_port=pigpio_port,
            mqtt_host=mqtt_host, mqtt_port=mqtt_port, workdir=self.workdir,
            ui_port=self.ui_port, prefix=self.opt.prefix, tls=self.client_tls(self.opt.unit_id),
            admin_keys=admin_keys, runtime_dir=self.opt.runtime_dir, quick=self.opt.quick_timings,
            overrides=self.opt.agent_overrides,
        )

    def _wait_online(self, mark: int = 0) -> None:
        assert self.tap is not None
        deadline = time.monotonic() + self.opt.online_timeout_s
        while time.monotonic() < deadline:
            if self.stop_requested.is_set():
                raise RigError("stopped while waiting for the agent to come online")
            # The rig's own agent starts after the tap subscribed: its birth is live. A retained
            # one is a previous run's (on a given broker); only a real unit's may be retained.
            live_only = self.opt.unit_config is None
            birth = self.tap.wait_for(
                lambda msgs: next((m for m in msgs[mark:] if _is_birth(m) and not (live_only and m.retain)), None),
                0.25)
            if birth is not None:
                self.t0 = birth.mono
                self._wait_ready(deadline)  # the timeline starts once the agent is up: see _wait_ready
                self.online_seen.set()
                self.progress(f"[  0.00 s] agent online: {birth.payload.decode('utf-8', 'replace')}")
                return
            code = self.agent.exit_code() if self.agent is not None else None
            if code is not None and self.agent is not None:
                raise RigError(f"the agent exited with {code} before coming online:\n{self.agent.output_tail(3000)}")
        tail = self.agent.output_tail(3000) if self.agent is not None else "(a real unit: see its journal)"
        raise RigError(f"the agent did not come online within {self.opt.online_timeout_s:g} s:\n{tail}")

    def _wait_ready(self, deadline: float) -> float:
        """When the rig's own agent told systemd it is up (``READY=1``). Its link may connect, and
        its birth (``t = 0``) go out, before the rest of it runs; the rig takes no step before the
        agent is up, so a slow start never eats into the first steps (a step due earlier goes at
        once, and an expectation anchored on it counts from when it went). A real unit's (bench
        mode) is up already."""
        if self.agent is None:
            return 0.0
        ready = self.agent.wait_ready(max(0.0, deadline - time.monotonic()))
        if ready is not None:
            return ready
        code = self.agent.exit_code()
        said = f"exited with {code}" if code is not None else "never told systemd it was up (READY=1)"
        raise RigError(f"the agent came online but {said} within {self.opt.online_timeout_s:g} s:\n"
                       f"{self.agent.output_tail(3000)}")

    # -------------------------------------------------------------- down

    def down(self) -> int | None:
        """Stop everything started; return the agent's exit code (None if never started)."""
        code = None
        for timer in self._power_timers:
            timer.cancel()
        if self.agent is not None:
            code = self.agent.stop()
        if self.tap is not None:
            self.tap.stop()
        if self.proxy is not None:
            self.proxy.stop()
        if self.forwarder is not None:
            self.forwarder.stop()
        if self.gnss is not None:
            self.gnss.stop()
        if self.gpio is not None:
            self.gpio.stop()
        if self.imu is not None:
            self.imu.stop()
        if self.broker is not None:
            self.broker.stop()
        return code

    # ------------------------------------------------------------- times

    def now(self) -> float:
        return time.monotonic() - (self.t0 if self.t0 is not None else time.monotonic())

    def _rel(self, mono: float) -> float:
        return mono - (self.t0 or 0.0)

    def _on_message(self, seen: Message) -> None:
        if not self.online_seen.is_set() or not self.messages_printed:
            return
        if seen.topic in ("telemetry", "telemetry/backlog"):
            self._telemetry_count += 1
            if self._telemetry_count % 10:
                return
            text = f"{self._telemetry_count} telemetry reports so far; last {seen.topic}"
        else:
            text = f"{seen.topic} {seen.payload[:200].decode('utf-8', 'replace')}"
        self.progress(f"[{self._rel(seen.mono):6.2f} s]   ← {text}")

    # ------------------------------------------------------------ inputs

    def pin(self, name: str) -> int:
        assert self.config is not None
        spec = self.config.gpio.inputs.get(name)
        if spec is None:
            raise RigError(f"the agent's config wires no input {name!r}")
        return spec.pin

    def active_low(self, name: str) -> bool:
        assert self.config is not None
        spec = self.config.gpio.inputs[name]
        return spec.pull_up is True or (spec.pull_up is None and spec.active_high is False)

    def perform(self, step: Step) -> str:
        """Do one step; return a description. Raises RigError when it cannot be done."""
        a = step.args
        gpio, gnss, broker = self.gpio, self.gnss, self.broker
        assert self.dispatcher is not None and self.admin is not None
        if gpio is None and step.action in ("tap", "press", "release", "hold", "bounce", "siren"):
            raise RigError("no GPIO on this bench (give --bench-gpio HOST:PORT)")
        if gnss is None and step.action in ("gnss_fault", "gnss_clear", "unplug", "replug"):
            raise RigError("no GNSS emulator on this rig")
        match step.action:
            case "press":
                gpio.press(self.pin(a["button"]), active_low=self.active_low(a["button"]))
                return f"press {a['button']}"
            case "tap":
                gpio.hold(self.pin(a["button"]), a["ms"] / 1000.0, active_low=self.active_low(a["button"]), block=False)
                return f"tap {a['button']}"
            case "release":
                gpio.release(self.pin(a["button"]))
                return f"release {a['button']}"
            case "hold":
                gpio.hold(self.pin(a["button"]), a["seconds"], active_low=self.active_low(a["button"]), block=False)
                return f"hold {a['button']} {a['seconds']:g} s"
            case "bounce":
                gpio.bounce(self.pin(a["button"]), a["n"], a["interval_ms"] / 1000.0, active_low=self.active_low(a["button"]))
                return f"bouncy press of {a['button']} ({a['n']} contacts)"
            case "siren":
                low = self.active_low("siren")
                level = (0 if low else 1) if a["on"] else None
                gpio.set_input(self.pin("siren"), level)
                return f"siren {'on' if a['on'] else 'off'}"
            case "gnss_fault":
                gnss.inject(Fault(a["fault"], ratio=a["ratio"]), a["duration_s"])
                return f"GNSS fault {a['fault']}" + (f" for {a['duration_s']:g} s" if a["duration_s"] else "")
            case "gnss_clear":
                gnss.clear(a["fault"])
                return f"GNSS faults cleared ({a['fault'] or 'all'})"
            case "unplug":
                gnss.inject("unplug", a["duration_s"])
                return "receiver unplugged" + (f" for {a['duration_s']:g} s" if a["duration_s"] else "")
            case "replug":
                gnss.replug()
                return "receiver plugged back"
            case "link_down" | "link_up":
                if self.proxy is None:
                    raise RigError("no link proxy (bench mode has none)")
                if step.action == "link_up":
                    self.proxy.restore()
                    return "the unit's link is back"
                self.proxy.blackhole()
                if a["mode"] == "drop":
                    self.proxy.drop_all()
                    return "the unit's link is cut (connections dropped, new ones stall)"
                return "the unit's link stalls (a dead zone: nothing gets through, nothing closes)"
            case "broker_stop" | "broker_kill" | "broker_start":
                if broker is None:
                    raise RigError("the rig does not own the broker (--broker was given)")
                if step.action == "broker_start":
                    broker.wait_port_free()
                    broker.start()
                    return f"broker started again on port {broker.port}"
                (broker.stop if step.action == "broker_stop" else broker.kill9)()
                return "broker stopped" if step.action == "broker_stop" else "broker killed (SIGKILL)"
            case "call":
                payload = self.dispatcher.call(a["call_id"], priority=a["priority"], nature=a["nature"],
                                               address=a["address"], location=a["location"], details=a["details"],
                                               code=a["code"])
                return f"dispatch sends call {a['call_id']} P{a['priority']} ({len(payload)} bytes)"
            case "call_update":
                self.dispatcher.update(a["call_id"], details=a["details"], priority=a["priority"], address=a["address"])
                return f"dispatch updates call {a['call_id']}"
            case "call_cancel":
                self.dispatcher.cancel(a["call_id"], a["reason"])
                return f"dispatch cancels call {a['call_id']}"
            case "alarm_ack":
                self.dispatcher.alarm_ack(a["alarm_id"])
                return "dispatch acknowledges the alarm"
            case "alarm_clear":
                self.dispatcher.alarm_clear(a["alarm_id"])
                return "dispatch clears the alarm"
            case "config_push":
                self.admin.push(a["request_id"], a["version"], a["config"])
                return f"admin pushes config {a['request_id']} version {a['version']}"
            case "cmd":
                trace = self._latest_trace() if a.get("trace") == "latest" else a.get("trace")
                self.admin.command(a["command"], a["request_id"], trace=trace)
                return f"admin command {a['command']}" + (f" {trace}" if trace else "")
            case "imu" | "imu_unplug" | "imu_replug":
                if self.imu is None:
                    raise RigError("no emulated crash sensor on this rig")
                if step.action == "imu_unplug":
                    self.imu.unplug()
                    return "the crash sensor vanishes (sysfs device and buffer gone)"
                if step.action == "imu_replug":
                    self.imu.replug()
                    return "the crash sensor is back"
                seconds = self.imu.play(a["profile"], a.get("seed"))
                return f"crash sensor plays {a['profile']} ({seconds:.1f} s)"
            case "ignition":
                self._drive_power("ignition", a["on"])
                return f"ignition {'on' if a['on'] else 'off'}"
            case "power_fail":
                self.power_off = True  # the agent stops by itself now: that is no crash
                self._drive_power("power_fail", True)
                self._power_later(a["hold_up_s"], self._cut)
                if a["off_s"] is not None:
                    self._power_later(a["hold_up_s"] + a["off_s"], self._power_on)
                back = f", power back {a['off_s']:g} s later" if a["off_s"] is not None else ""
                return f"power-fail warning; the hold-up supply gives out in {a['hold_up_s']:g} s{back}"
            case "power_cut":
                self._cut()
                if a["off_s"] is not None:
                    self._power_later(a["off_s"], self._power_on)
                return "power cut without warning (agent killed)" + (
                    f"; power back in {a['off_s']:g} s" if a["off_s"] is not None else "")
            case "power_on":
                self._power_on()
                return "power back: the agent starts again on the same state"
            case "publish":
                data = publish_raw(self.tap, a["topic"], a["payload"], qos=a["qos"], retain=a["retain"])  # type: ignore[arg-type]
                return f"publish {len(data)} bytes on {a['topic']}"
        raise RigError(f"unknown action {step.action!r}")

    def _latest_trace(self) -> str:
        """The crash trace the unit's last alarm names (``cmd`` steps with ``trace = "latest"``)."""
        assert self.tap is not None
        for m in reversed(self.tap.snapshot()):
            if m.topic == "alarm":
                crash = json.loads(m.payload).get("crash")
                if crash:
                    return crash["trace"]
        raise RigError("no alarm with a crash trace yet")

    # ------------------------------------------------------------- power

    def _drive_power(self, line: str, active: bool) -> None:
        """Drive the ``[power]`` line ``ignition`` or ``power_fail`` to its active level or back."""
        assert self.config is not None
        power = self.config.power
        pin, high = ((power.ignition_pin, power.ignition_active_high) if line == "ignition"
                     else (power.power_fail_pin, power.power_fail_active_high))
        if pin is None:
            raise RigError(f"the agent's config wires no {line} line ([power] {line}_pin)")
        if not isinstance(self.gpio, PigpioEmulator):
            raise RigError("the power lines need the rig's emulated board")
        self.gpio.set_input(pin, int(high) if active else int(not high))

    def _power_later(self, delay: float, fn: Callable[[], None]) -> None:
        timer = threading.Timer(delay, self._power_guarded, args=(fn,))
        timer.daemon = True
        self._power_timers.append(timer)
        timer.start()

    def _power_guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a timer thread: say it, never raise
            self.progress(f"[{self.now():6.2f} s] power: FAILED: {exc}")

    def _cut(self) -> None:
        """The unit loses its power: the agent process dies at once (SIGKILL)."""
        self.power_off = True
        agent = self.agent
        if agent is not None and agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait(10)
        self.progress(f"[{self.now():6.2f} s] power cut: agent killed")

    def _power_on(self) -> None:
        """Power back: the supply's line at rest and a new agent process on the same state dir."""
        if self.agent is not None and self.agent.exit_code() is None:
            raise RigError("the agent is still running (the power was never cut)")
        self._drive_power("power_fail", False)
        assert self.config_path is not None
        self._release_agent()
        self.agent = agent_proc.AgentProcess(self.config_path, self.workdir / "agent.log", self.opt.agent_cmd,
                                             env=self._agent_env()).start()
        self.agents.append(self.agent)
        self.power_off = False
        self.progress(f"[{self.now():6.2f} s] power back: agent pid {self.agent.pid}")

    # --------------------------------------------------------------- log

    def run_log(self, actions: list[ActionRecord], end_t: float, agent_exit: int | None) -> RunLog:
        assert self.config is not None
        messages = [Msg(self._rel(m.mono), m.topic, m.payload, m.retain, m.qos) for m in (self.tap.snapshot() if self.tap else [])]
        pins: dict[str, list[PinSample]] = {}
        if self.gpio is not None:
            for name, spec in self.config.gpio.outputs.items():
                level_when_on = 1 if spec.active_high else 0
                pins[name] = [PinSample(self._rel(c.mono), 1 if c.level == level_when_on else 0)
                              for c in self.gpio.history(spec.pin)]
        truth: list[TruthSample] = []
        if self.gnss is not None:
            emu_t0 = time.monotonic() - self.gnss.elapsed
            truth = [TruthSample(self._rel(emu_t0 + p.t), p.utc, p.lat, p.lon, p.fix) for p in self.gnss.truth()]
        # Every agent process of the run (a power cycle starts another), each line at its rig time.
        lines = [(round(self._rel(t), 3), line.rstrip("\n")) for agent in self.agents for t, line in agent.lines]
        return RunLog(messages, actions, pins, truth, end_t, agent_exit,
                      self.agent.output_tail() if self.agent else "", lines[-AGENT_LINES_KEPT:])


def _is_birth(m: Message) -> bool:
    if m.topic != "online":
        return False
    try:
        return json.loads(m.payload).get("online") is True
    except (ValueError, AttributeError, UnicodeDecodeError):
        return False


# ---------------------------------------------------------------- results


@dataclass
class ScenarioResult:
    scenario: Scenario
    outcomes: list[Outcome]
    log: RunLog
    wall_s: float
    error: str | None = None
    workdir: Path | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(o.passed for o in self.outcomes)


def run_scenario(scenario: Scenario, *, workdir: Path | None = None, agent_cmd: str = agent_proc.DEFAULT_AGENT_CMD,
                 broker: tuple[str, int] | None = None, progress: Progress = _quiet,
                 stop: threading.Event | None = None, keep_workdir: bool = True, **bench: Any) -> ScenarioResult:
    """Run one scenario end to end against a fresh agent; never raises for a failing agent."""
    started = time.monotonic()
    stop = stop or threading.Event()
    own_tmp = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix=f"umps-hil-{scenario.name}-")) if workdir is None else workdir.resolve()
    if workdir.exists():
        # The scenario's own directory: a fresh unit and broker each run (its state kept if it asks).
        for entry in workdir.iterdir():
            if scenario.keep_state and entry.name == "state":
                continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    options = RigOptions(workdir=workdir, unit_kind=scenario.unit_kind, gnss_rate_hz=scenario.gnss_rate_hz,
                         route_offset_s=scenario.route_offset_s, agent_overrides=dict(scenario.agent),
                         signed_dispatch=scenario.signed_dispatch, keep_state=scenario.keep_state,
                         clock_unsynchronised=scenario.clock == "unsynchronised", gnss_at_start=scenario.gnss_at_start,
                         agent_cmd=agent_cmd, broker=broker, link_proxy=scenario.needs_link_proxy,
                         imu=scenario.needs_imu, **bench)
    rig = Rig(options, progress, stop)
    actions: list[ActionRecord] = []
    error: str | None = None
    agent_exit: int | None = None
    end_t = 0.0
    try:
        rig.up()
        for step in scenario.steps:
            if _wait_until(rig, step.at, stop):
                break
            t = rig.now()
            try:
                detail = rig.perform(step)
                actions.append(ActionRecord(t, step.id, step.action, detail, True))
                progress(f"[{t:6.2f} s] {step.id}: {detail}")
            except Exception as exc:  # a step that cannot be done fails its expectations, not the run
                actions.append(ActionRecord(t, step.id, step.action, f"{type(exc).__name__}: {exc}", False))
                progress(f"[{t:6.2f} s] {step.id}: FAILED: {exc}")
        _wait_until(rig, scenario.duration_s, stop)
        end_t = rig.now()
        agent_exit = rig.agent.exit_code() if rig.agent else None
    except (RigError, ConfigError, TimeoutError, OSError, RuntimeError) as exc:
        error = str(exc)
        end_t = rig.now() if rig.t0 is not None else 0.0
        progress(f"rig error: {exc}")
    finally:
        rig.messages_printed = False
        code = rig.down()
        if agent_exit is None and rig.agent is not None and error is not None:
            agent_exit = code
    log = rig.run_log(actions, end_t, agent_exit) if rig.config is not None else RunLog(end_t=end_t)
    if error is not None:
        outcomes = [Outcome(e.name, e.kind, False, describe_expected(e), f"not run: {error.splitlines()[0]}")
                    for e in scenario.expectations]
    else:
        outcomes = evaluate(scenario, log)
    (workdir / "runlog.json").write_text(json.dumps(log.to_json(), ensure_ascii=False))
    result = ScenarioResult(scenario, outcomes, log, time.monotonic() - started, error, workdir)
    if own_tmp and not keep_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _wait_until(rig: Rig, t: float, stop: threading.Event) -> bool:
    """Wait until scenario time ``t``; True if a stop was asked."""
    while True:
        left = t - rig.now()
        if left <= 0:
            return False
        if stop.wait(min(left, 0.5)):
            return True
