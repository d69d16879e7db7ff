"""The end-to-end bench rig: the real agent process between emulated sensors and a broker.

What it starts, all on loopback and owned by the benchmark:

* a private Mosquitto on a free port (``hil.broker.Broker``; never a
  broker that was already running), with a TLS listener that requires a
  client certificate, as a fleet's broker does (``hil.pki`` makes the CA,
  the broker's certificate and one client certificate per client);
* the GPIO emulator (``hil.gpio_emulator.PigpioEmulator``) serving the pigpio
  daemon protocol; the agent's ``[gpio] factory = "pigpio"`` points at it.
  :class:`TimedPigpio` also stamps when each level report leaves for the
  client (after the glitch filter, i.e. after the debounce time);
* optionally the GNSS emulator (``hil.gnss_emulator.GnssEmulator``) on a pty;
  :class:`TimedGnss` stamps the wall-clock time at which each epoch's bytes
  were written, keyed by the epoch's UTC time;
* the agent itself: ``python -m agent run --config FILE`` with a config
  written for the run (state and runtime dirs in a temp dir, mutual TLS, an
  admin key so remote requests must be signed, display none, UI on a free
  port for cars);
* a subscriber (:class:`Watcher`) on ``<prefix>/<unit>/#`` that stamps every
  message on receipt (monotonic and wall clock).

The agent runs unmodified; only its config differs from a vehicle's. Its
memory and CPU figures include what a vehicle's security costs (TLS, the
signature checker).
"""

from __future__ import annotations

import compileall
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.admin_tools import public_text
from bench.common import ROOT, Skip, free_port, mosquitto_binary, proc_cpu_seconds, proc_rss_kib, wait_port
from hil.broker import Broker, TlsListener
from hil.gnss_emulator import GnssEmulator
from hil.gnss_sources import RouteSource
from hil.gpio_emulator import PigpioEmulator
from hil.pki import TlsFiles, make_pki

UNIT = "BENCH-01"
PREFIX = "umps"

# The agent's default input pins (agent.config._default_inputs), all pulled up.
INPUT_PINS = {
    "available": 5, "en_route": 6, "on_scene": 13, "busy": 19, "out_of_service": 26,
    "ack": 16, "emergency": 20, "siren": 21,
}


# ------------------------------------------------------------- emulators


class TimedPigpio(PigpioEmulator):
    """The pigpio emulator, also stamping when each level report is sent."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reports: list[tuple[int, int, float]] = []  # (pin, level, monotonic)

    def _report_level(self, pin: int, level: int, tick: int) -> None:
        before = self._reported
        super()._report_level(pin, level, tick)
        if self._reported != before:
            self.reports.append((pin, level, time.monotonic()))

    def report_after(self, pin: int, level: int, since: float) -> float | None:
        with self._lock:
            for p, lv, t in reversed(self.reports):
                if t < since:
                    break
                if p == pin and lv == level:
                    return t
        return None


class TimedGnss(GnssEmulator):
    """The GNSS emulator, also stamping the wall time each epoch went out, by its UTC."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent_at: dict[str, float] = {}  # epoch UTC "HH:MM:SS.ss" -> time.time() after the write
        # The receiver's UTC minus the system clock (s), known once started: the
        # agent takes its time from the GNSS, so its stamps are on this timeline.
        self.utc_offset_s = 0.0

    def start(self, *, run_thread: bool = True) -> None:
        super().start(run_thread=run_thread)
        wall_at_t0 = time.time() - (time.monotonic() - self._t0)
        self.utc_offset_s = self._stream.start_utc.timestamp() - wall_at_t0

    def _emit(self, t: float):
        emission = super()._emit(t)
        if emission.heard and emission.truth is not None:
            self.sent_at[emission.truth.utc.strftime("%H:%M:%S.%f")[:11]] = time.time()
        return emission

    def emitted_wall(self, fix_time: dt.datetime) -> float | None:
        return self.sent_at.get(fix_time.astimezone(dt.timezone.utc).strftime("%H:%M:%S.%f")[:11])


# ------------------------------------------------------------ the broker


def start_broker(workdir: Path, pki: TlsFiles) -> Broker:
    """A private Mosquitto on a free port (the rig's own launcher), stopped by its pid.

    Its only listener is TLS with client certificates required."""
    if mosquitto_binary() is None:
        raise Skip("mosquitto is not installed (Debian package mosquitto; `make test` installs it)")
    return Broker(workdir, tls=TlsListener(pki, require_certificate=True)).start()


@dataclass(frozen=True)
class ClientTls:
    """A client's TLS files: the CA to trust, its certificate and key."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def issue(cls, pki: TlsFiles, name: str) -> "ClientTls":
        cert, key = pki.client(name)
        return cls(pki.ca_cert, cert, key)

    def apply(self, client: paho.Client) -> None:
        client.tls_set(ca_certs=str(self.ca), certfile=str(self.cert), keyfile=str(self.key))

    def argv(self) -> list[str]:
        """The files as ``peer_connect`` takes them on a peer's command line."""
        return [str(self.ca), str(self.cert), str(self.key)]


# The MQTT side of a bench peer (a minimal process run with ``python -c``, next to
# the agent): raw paho, MQTT 5, the rig's mutual TLS. A peer's code starts with this.
PEER_MQTT = r'''
import threading
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

def peer_connect(client_id, port, ca, cert, key):
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
    client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
    up = threading.Event()
    client.on_connect = lambda *a: up.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    up.wait(10)
    return client
'''


# -------------------------------------------------------------- watcher


@dataclass(frozen=True)
class Seen:
    topic: str
    payload: bytes
    retain: bool
    mono: float
    wall: float

    def json(self) -> dict | None:
        try:
            value = json.loads(self.payload)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


class Watcher:
    """A plain paho subscriber that stamps each message when it arrives."""

    def __init__(self, port: int, topics: list[str], tls: ClientTls, client_id: str = "bench-watcher") -> None:
        self.messages: list[Seen] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv311)
        tls.apply(self.client)
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("bench subscriber did not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        seen = Seen(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic(), time.time())
        with self._cond:
            self.messages.append(seen)
            self._cond.notify_all()

    def wait(self, predicate: Callable[[Seen], bool], timeout: float, start: int = 0) -> Seen | None:
        """The first message from index ``start`` on that satisfies ``predicate``; None on timeout."""
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.messages):
                    if predicate(self.messages[i]):
                        return self.messages[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    def on(self, topic: str) -> list[Seen]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False):
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def topic(name: str) -> str:
    return f"{PREFIX}/{UNIT}/{name}"


# ----------------------------------------------------------- the agent


def agent_config(
    workdir: Path,
    *,
    broker_port: int,
    pigpio_port: int,
    tls: ClientTls,
    admin_key: str,
    kind: str = "motorcycle",
    gnss_port: str | None = None,
    ui_port: int | None = None,
    rate_hz: float = 1.0,
) -> Path:
    """Write the agent's TOML for this run; returns its path."""
    state = workdir / "state"
    state.mkdir(exist_ok=True)
    # As on the unit (/run/umps-agent), the runtime dir is a tmpfs where there is one.
    shm = Path("/dev/shm")
    runtime = Path(tempfile.mkdtemp(prefix="bench-run-", dir=shm)) if shm.is_dir() else workdir / "run"
    runtime.mkdir(exist_ok=True)
    lines = [
        "[unit]", f'id = "{UNIT}"', f'kind = "{kind}"', 'name = "Bench unit"', "",
        "[gnss]", f'port = "{gnss_port or (workdir / "no-gnss")}"', "baudrate = 115200", "",
        "[mqtt]", 'host = "127.0.0.1"', f"port = {broker_port}", f'prefix = "{PREFIX}"', 'protocol = "5"',
        "reconnect_min_s = 0.2", "reconnect_max_s = 2.0", "",
        "[mqtt.tls]", "enabled = true", f'ca_file = "{tls.ca}"', f'cert_file = "{tls.cert}"',
        f'key_file = "{tls.key}"', "",
        "[security]", f'admin_keys = ["{admin_key}"]', "",
        "[storage]", f'state_dir = "{state}"', f'runtime_dir = "{runtime}"', "",
        "[telemetry]", f"rate_hz = {rate_hz}", "",
        "[gpio]", 'factory = "pigpio"', 'pigpio_host = "127.0.0.1"', f"pigpio_port = {pigpio_port}", "",
        "[display]", 'kind = "none"', "",
        "[ui]", f"enabled = {'true' if ui_port else 'false'}", 'host = "127.0.0.1"',
        f"http_port = {ui_port or 8080}", 'language = "fr"', 'theme = "day"', "sound = false", "",
        "[logging]", 'level = "INFO"', "",
    ]
    path = workdir / "agent.toml"
    path.write_text("\n".join(lines))
    return path


class AgentProcess:
    """``python -m agent run --config FILE`` as a child process, output to a log file."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.log_path = workdir / "agent.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        # The agent runs from byte code, as on the unit (scripts/install.sh compiles the
        # venv); a machine that sets PYTHONDONTWRITEBYTECODE would otherwise have it
        # compile its own sources at every start.
        compileall.compile_dir(ROOT / "agent", quiet=1)
        # Its output goes through a pipe (to journald on the unit), copied to the log file by
        # this process, so the agent's own disk writes are only what it writes itself.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.lines: list[tuple[float, str]] = []  # (monotonic on receipt, log line)
        self._lines_cond = threading.Condition()
        self._copier = threading.Thread(target=self._copy_output, name="agent-log", daemon=True)
        self._copier.start()

    def _copy_output(self) -> None:
        with open(self.log_path, "ab") as log:
            for line in self.proc.stdout:
                now = time.monotonic()
                with self._lines_cond:
                    self.lines.append((now, line.decode("utf-8", "replace")))
                    self._lines_cond.notify_all()
                log.write(line)
                log.flush()

    def wait_line(self, needle: str, since: float, timeout: float) -> float | None:
        """Monotonic receipt time of the first log line after ``since`` containing ``needle``."""
        deadline = time.monotonic() + timeout
        with self._lines_cond:
            while True:
                for t, line in self.lines:
                    if t >= since and needle in line:
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lines_cond.wait(left)

    def write_bytes(self) -> int | None:
        """Bytes the agent process has caused to be written to block devices so far."""
        try:
            for line in Path(f"/proc/{self.pid}/io").read_text().splitlines():
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> int | None:
        return proc_rss_kib(self.pid)

    def cpu_seconds(self) -> float | None:
        return proc_cpu_seconds(self.pid)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no agent log)"

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self._copier.join(5)
                return None
        self._copier.join(5)
        return self.proc.returncode


class Rig:
    """Broker + GPIO emulator (+ GNSS emulator) + the agent, torn down in reverse order."""

    def __init__(self, *, kind: str = "motorcycle", gnss_rate_hz: int | None = None, ui: bool = False,
                 extra_ptys: int = 0) -> None:
        if not Path(ROOT / "agent" / "runtime.py").exists():
            raise Skip("agent/runtime.py is not there yet: `umps-agent run` cannot start the agent")
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-rig-"))
        self.kind = kind
        self.gnss_rate_hz = gnss_rate_hz
        self.ui_port = free_port() if ui else None
        self.extra_ptys = extra_ptys
        self.broker: Broker | None = None
        self.gpio: TimedPigpio | None = None
        self.gnss: TimedGnss | None = None
        self.agent: AgentProcess | None = None
        self.watcher: Watcher | None = None
        self.peer_ptys: list[str] = []
        self.pki: TlsFiles | None = None
        # The fleet admin's key: the agent trusts its public half, as a vehicle does.
        self.admin_key = Ed25519PrivateKey.generate()

    def client_tls(self, name: str) -> ClientTls:
        """TLS files for one more client of the rig's broker (a peer, a tool)."""
        assert self.pki is not None
        return ClientTls.issue(self.pki, name)

    def start(self, ready_timeout: float = 30.0) -> "Rig":
        try:
            self.pki = make_pki(self.workdir / "pki")
            self.broker = start_broker(self.workdir, self.pki)
            self.watcher = Watcher(self.broker.port, [f"{PREFIX}/{UNIT}/#"], self.client_tls("bench-watcher"))
            pulls = {pin: "up" for pin in INPUT_PINS.values()}
            self.gpio = TimedPigpio(boot_pulls=pulls).start()
            gnss_path = None
            if self.gnss_rate_hz:
                # The receiver's UTC starts at the system clock's time, as a real one
                # (with the machine's clock in sync) would; the offset left is measured.
                # Whole centiseconds: NMEA times carry two decimals, so the epochs' UTC is exact.
                now = dt.datetime.now(dt.timezone.utc)
                source = RouteSource(auto_tunnel=False,
                                     start_utc=now.replace(microsecond=now.microsecond // 10_000 * 10_000))
                self.gnss = TimedGnss(source, rate_hz=self.gnss_rate_hz, talker="GN")
                gnss_path = self.gnss.serve_pty(self.workdir / "gnss0")
                for k in range(self.extra_ptys):
                    self.peer_ptys.append(self.gnss.serve_pty(self.workdir / f"gnss-peer{k}"))
                self.gnss.start()
            config = agent_config(self.workdir, broker_port=self.broker.port, pigpio_port=self.gpio.port,
                                  tls=self.client_tls(UNIT), admin_key=public_text(self.admin_key),
                                  kind=self.kind, gnss_port=gnss_path, ui_port=self.ui_port)
            self.agent = AgentProcess(config, self.workdir)
            self.wait_ready(ready_timeout)
            return self
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float) -> None:
        """The agent is up when it said ``online`` and published its status."""
        assert self.watcher is not None and self.agent is not None
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        for name in ("online", "status"):
            seen = None
            while seen is None and left() > 0:
                if not self.agent.alive():
                    raise RuntimeError(f"the agent exited with {self.agent.proc.returncode}:\n{self.agent.log_tail()}")
                seen = self.watcher.wait(
                    lambda m, n=name: m.topic == topic(n) and (n != "online" or (m.json() or {}).get("online") is True),
                    min(0.5, left()))
            if seen is None:
                raise RuntimeError(f"the agent did not publish {topic(name)} within {timeout} s:\n"
                                   f"{self.agent.log_tail()}")
        if self.ui_port and not wait_port("127.0.0.1", self.ui_port, left()):
            raise RuntimeError(f"the touchscreen server did not listen on {self.ui_port}:\n{self.agent.log_tail()}")

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}/"

    def stop(self) -> dict:
        """Tear down; returns what is worth reporting (agent exit code, log tail on trouble)."""
        info: dict = {}
        if self.agent is not None:
            info["agent_exit"] = self.agent.stop()
            info["agent_log_tail"] = self.agent.log_tail(1500)
        if self.watcher is not None:
            self.watcher.stop()
        if self.gnss is not None:
            self.gnss.stop()
        if self.gpio is not None:
            self.gpio.stop()
        if self.broker is not None:
            self.broker.stop()
        for runtime in Path("/dev/shm").glob("bench-run-*"):
            if (self.workdir / "agent.toml").exists() and str(runtime) in (self.workdir / "agent.toml").read_text():
                shutil.rmtree(runtime, ignore_errors=True)
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            info["workdir"] = str(self.workdir)
        return info
