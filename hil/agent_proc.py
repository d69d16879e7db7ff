"""The agent under test: its generated configuration, and the process itself.

The agent runs unmodified, as on the vehicle: ``python -m agent run --config
<file>``. Only its surroundings are the rig's, and the generated file says so:
``[gnss] port`` is the GNSS emulator's pty (or ``socket://``), ``[gpio]
factory = "pigpio"`` with the emulator's address, ``[mqtt]`` the rig's broker
without TLS, ``[storage]`` directories in the run's work directory,
``[display] kind = "none"`` and the touchscreen UI on a free port.

Paths resolve the same wherever the caller stands: the generated file holds
absolute paths only (the run's directory is resolved first), and the agent
runs in the run's directory, so a relative path a scenario or a user adds
lands there too, never in the caller's or the repository's directory.

``rig_config(...)`` returns the dict, ``write_toml`` writes it (tomli-w),
and the result is validated with the agent's own ``parse_config`` before the
agent is started, so a scenario's bad ``[agent]`` table fails fast with the
agent's own key paths.

``AgentProcess`` starts the command (``{config}`` in it is replaced by the
file), copies its output to a log file (each line also kept with its arrival
time), hears its systemd readiness (``READY=1`` on a ``NOTIFY_SOCKET`` of its
own, ``hil.ready``), and stops it by pid: SIGTERM, then SIGKILL after a grace
period. The scenario engine, the bench and the end-to-end tests all start the
agent with it.
"""

from __future__ import annotations

import compileall
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import tomli_w

from agent.config import AgentConfig
from agent.config_validate import parse_config
from hil.ready import ReadyListener
from hil.recorder import ClientTls

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AGENT_CMD = "{python} -m agent run --config {config}"
STOP_GRACE_S = 10.0
LINES_KEPT = 20_000  # output lines kept in memory for wait_line (a soak logs for hours)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# Timings that make a scenario short: a lost receiver, link or broker is noticed
# and retried within seconds, and the outbox commits often. A vehicle keeps the
# defaults; the bench, which measures what a vehicle does, leaves these out.
QUICK_TIMINGS: dict[str, Any] = {
    "gnss": {"silence_timeout_s": 2.0, "reopen_max_wait_s": 1.0},
    "mqtt": {"keepalive_s": 10, "reconnect_min_s": 0.2, "reconnect_max_s": 2.0, "ack_timeout_s": 5.0},
    "storage": {"commit_interval_s": 2.0},
}


# The rig's power lines (agent [power]): free of the panel's default pins.
IGNITION_PIN = 4
POWER_FAIL_PIN = 7


def rig_config(*, unit_id: str, unit_kind: str, gnss_port: str, pigpio_port: int, mqtt_host: str, mqtt_port: int,
               workdir: Path, ui_port: int, prefix: str = "umps", pigpio_host: str = "127.0.0.1",
               tls: ClientTls | None = None, admin_keys: tuple[str, ...] = (), runtime_dir: Path | None = None,
               quick: bool = True, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The agent's config for a rig run: a vehicle's, pointed at the rig's broker, emulators and directories.

    Every path in it is absolute (``workdir`` and ``runtime_dir`` are resolved against the caller's directory).
    """
    workdir = Path(workdir).resolve()
    runtime_dir = Path(runtime_dir).resolve() if runtime_dir is not None else None
    mqtt_tls: dict[str, Any] = {"enabled": False}
    if tls is not None:
        mqtt_tls = {"enabled": True, "ca_file": str(tls.ca), "cert_file": str(tls.cert), "key_file": str(tls.key)}
    base: dict[str, Any] = {
        "unit": {"id": unit_id, "kind": unit_kind, "name": f"Banc HIL {unit_id}"},
        "gnss": {"port": gnss_port},
        "mqtt": {"host": mqtt_host, "port": mqtt_port, "prefix": prefix, "tls": mqtt_tls},
        "storage": {"state_dir": str(workdir / "state"), "runtime_dir": str(runtime_dir or workdir / "run")},
        "gpio": {"factory": "pigpio", "pigpio_host": pigpio_host, "pigpio_port": pigpio_port},
        "display": {"kind": "none"},
        # The vehicle's power lines on the emulated board (active low, as wired on a unit); the
        # rig never powers its host off.
        "power": {"ignition_pin": IGNITION_PIN, "ignition_debounce_s": 0.1, "power_fail_pin": POWER_FAIL_PIN,
                  "poweroff_command": ""},
        "ui": {"http_port": ui_port},
        "logging": {"level": "INFO"},
    }
    if admin_keys:
        base["security"] = {"admin_keys": list(admin_keys)}
    if quick:
        base = deep_merge(base, QUICK_TIMINGS)
    return deep_merge(base, overrides or {})


def validate(data: dict[str, Any], source: str) -> AgentConfig:
    """The agent's own validation (raises ``agent.config.ConfigError``)."""
    return parse_config(data, source)


# ------------------------------------------------------------------- TOML


def write_toml(path: Path, data: dict[str, Any], header: str = "Generated by umps-hil for one rig run.") -> Path:
    """Write ``data`` as the agent's TOML file (tomli-w), with a comment line first."""
    path.write_text(f"# {header}\n" + tomli_w.dumps(_plain(data)), encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    """Paths as strings and tuples as lists: what a TOML writer takes."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# ---------------------------------------------------------------- process


class AgentProcess:
    """One agent process, owned by the rig and stopped by its pid.

    Its output goes through a pipe (to journald on a unit), copied to the log
    file by a thread of this process: the agent's own disk writes are then
    only what it writes itself, and each line is kept with its arrival time
    for :meth:`wait_line`. It runs from byte code, as on the unit
    (``scripts/install.sh`` compiles the venv). The environment is the rig's,
    with the repository first on ``PYTHONPATH`` and systemd's variables
    replaced: a ``NOTIFY_SOCKET`` of the rig's (:meth:`wait_ready`) unless ``env``
    gives one, no watchdog.
    """

    def __init__(self, config_path: Path, log_path: Path, command: str = DEFAULT_AGENT_CMD,
                 env: dict[str, str] | None = None):
        self.config_path = config_path = Path(config_path).resolve()
        self.log_path = Path(log_path).resolve()
        self.argv = [part.format(python=sys.executable, config=str(config_path)) for part in shlex.split(command)]
        if "{config}" not in command:
            self.argv += ["--config", str(config_path)]
        base = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        base["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [base.get("PYTHONPATH")])])
        self.env = {**base, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: deque[tuple[float, str]] = deque(maxlen=LINES_KEPT)  # (monotonic on receipt, line)
        self._lines_cond = threading.Condition()
        self._copier: threading.Thread | None = None
        self._ready: ReadyListener | None = None

    def start(self) -> "AgentProcess":
        compileall.compile_dir(ROOT / "agent", quiet=1)
        env = self.env
        if "NOTIFY_SOCKET" not in env:  # unless the caller plays systemd itself
            self._ready = ReadyListener()
            env = {**env, "NOTIFY_SOCKET": self._ready.address}
        # In the run's directory: whatever the caller's directory, a relative path lands in the run's.
        self.proc = subprocess.Popen(self.argv, cwd=self.config_path.parent, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._copier = threading.Thread(target=self._copy_output, args=(self.proc,), name="agent-log", daemon=True)
        self._copier.start()
        return self

    def _copy_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with open(self.log_path, "ab") as log:
            for line in proc.stdout:
                now = time.monotonic()
                with self._lines_cond:
                    self.lines.append((now, line.decode("utf-8", "replace")))
                    self._lines_cond.notify_all()
                log.write(line)
                log.flush()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exit_code(self) -> int | None:
        """``None`` while it runs."""
        return self.proc.poll() if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float) -> float | None:
        """Monotonic time the agent told systemd it is up (``READY=1``); None if not within ``timeout``."""
        return self._ready.wait_ready(timeout) if self._ready is not None else None

    def wait_line(self, needle: str, since: float, timeout: float) -> float | None:
        """Monotonic receipt time of the first output line after ``since`` containing ``needle``."""
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

    def stop(self, grace: float = STOP_GRACE_S, sig: int = signal.SIGTERM) -> int | None:
        """``sig`` (SIGTERM), then SIGKILL after ``grace`` s; the exit code (None if it had to be killed)."""
        proc = self.proc
        if proc is None:
            return None
        code: int | None = proc.returncode
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                code = proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
                code = None
        else:
            code = proc.returncode
        if self._copier is not None:
            self._copier.join(5.0)
        if self._ready is not None:  # once the process is gone: it never writes to a closed socket
            self._ready.close()
            self._ready = None
        return code

    def output_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no agent log)"
