"""The agent under test: its generated configuration, and the process itself.

The agent runs unmodified, as on the vehicle: ``python -m agent run --config
<file>``. Only its surroundings are the rig's, and the generated file says so:
``[gnss] port`` is the GNSS emulator's pty (or ``socket://``), ``[gpio]
factory = "pigpio"`` with the emulator's address, ``[mqtt]`` the rig's broker
without TLS, ``[storage]`` directories in the run's work directory,
``[display] kind = "none"`` and the touchscreen UI on a free port.

``rig_config(...)`` returns the dict, ``write_toml`` writes it (a small TOML
emitter for the shapes a config has: tables, scalars, arrays, inline tables),
and the result is validated with the agent's own ``parse_config`` before the
agent is started, so a scenario's bad ``[agent]`` table fails fast with the
agent's own key paths.

``AgentProcess`` starts the command (``{config}`` in it is replaced by the
file), sends its output to a log file, and stops it by pid: SIGTERM, then
SIGKILL after a grace period.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, parse_config

DEFAULT_AGENT_CMD = "{python} -m agent run --config {config}"
STOP_GRACE_S = 10.0


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# The rig's power lines (agent [power]): free of the panel's default pins.
IGNITION_PIN = 4
POWER_FAIL_PIN = 7


def rig_config(*, unit_id: str, unit_kind: str, gnss_port: str, pigpio_port: int, mqtt_host: str, mqtt_port: int,
               workdir: Path, ui_port: int, prefix: str = "umps", pigpio_host: str = "127.0.0.1",
               overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    base: dict[str, Any] = {
        "unit": {"id": unit_id, "kind": unit_kind, "name": f"Banc HIL {unit_id}"},
        "gnss": {"port": gnss_port, "silence_timeout_s": 2.0, "reopen_max_wait_s": 1.0},
        "mqtt": {
            "host": mqtt_host, "port": mqtt_port, "prefix": prefix, "keepalive_s": 10,
            "reconnect_min_s": 0.2, "reconnect_max_s": 2.0, "ack_timeout_s": 5.0,
            "tls": {"enabled": False},
        },
        "storage": {"state_dir": str(workdir / "state"), "runtime_dir": str(workdir / "run"), "commit_interval_s": 2.0},
        "gpio": {"factory": "pigpio", "pigpio_host": pigpio_host, "pigpio_port": pigpio_port},
        "display": {"kind": "none"},
        # The vehicle's power lines on the emulated board (active low, as wired on a unit); the
        # rig never powers its host off.
        "power": {"ignition_pin": IGNITION_PIN, "ignition_debounce_s": 0.1, "power_fail_pin": POWER_FAIL_PIN,
                  "poweroff_command": ""},
        "ui": {"http_port": ui_port},
        "logging": {"level": "INFO"},
    }
    return deep_merge(base, overrides or {})


def validate(data: dict[str, Any], source: str) -> AgentConfig:
    """The agent's own validation (raises ``agent.config.ConfigError``)."""
    return parse_config(data, source)


# ------------------------------------------------------------------- TOML


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("TOML has no place for NaN/inf here")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON strings are TOML basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Path):
        return toml_value(str(value))
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def toml_text(data: dict[str, Any]) -> str:
    lines: list[str] = []

    def table(prefix: str, body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in body.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{_key(k)} = {toml_value(v)}")
        if prefix and scalars:
            lines.append("")
        for k, v in tables.items():
            table(f"{prefix}.{_key(k)}" if prefix else _key(k), v)

    top_scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for k, v in top_scalars.items():
        lines.append(f"{_key(k)} = {toml_value(v)}")
    table("", {k: v for k, v in data.items() if isinstance(v, dict)})
    return "\n".join(lines).rstrip() + "\n"


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text("# Generated by umps-hil for one rig run.\n" + toml_text(data), encoding="utf-8")
    return path


# ---------------------------------------------------------------- process


class AgentProcess:
    """One agent process, owned by the rig and stopped by its pid."""

    def __init__(self, config_path: Path, log_path: Path, command: str = DEFAULT_AGENT_CMD,
                 env: dict[str, str] | None = None):
        self.config_path = config_path
        self.log_path = log_path
        self.argv = [part.format(python=sys.executable, config=str(config_path)) for part in shlex.split(command)]
        if "{config}" not in command:
            self.argv += ["--config", str(config_path)]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "AgentProcess":
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env)
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exit_code(self) -> int | None:
        """``None`` while it runs."""
        return self.proc.poll() if self.proc else None

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        return proc.returncode

    def output_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""
