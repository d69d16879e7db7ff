"""What every benchmark shares: figures, percentiles, the machine, a private broker.

A benchmark module exposes ``collect(quick: bool) -> dict`` returning::

    {"title": "...", "figures": [Figure.as_dict(), ...], "notes": ["..."], "log": "..."}

``python -m bench`` runs each one in its own process (``bench.run_one``) and
writes ``docs/performance.md`` from what they return. A figure carries the
target named by the issue (with the comparison that passes), the measured
value and, where one was measured in the same run, the peer's value.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hil.broker import BrokerUnavailable, free_port, mosquitto_path, wait_port  # noqa: F401 (the benches import them from here)
from hil.browser import CHROMIUM, launch as launch_chromium  # noqa: F401 (the benches import them from here)
from hil.stats import percentile

ROOT = Path(__file__).resolve().parents[1]



@dataclass
class Figure:
    """One measured figure; ``ok`` is None when the issue sets no target."""

    area: str
    name: str
    value: float | None
    unit: str
    target: float | None = None
    op: str = "<="  # value <op> target passes
    source: str = ""  # which issue names the target, e.g. "#3"
    peer: float | None = None
    peer_label: str = ""
    note: str = ""
    digits: int = 1
    ok: bool | None = field(default=None)

    def __post_init__(self) -> None:
        if self.target is not None and self.value is not None and not _nan(self.value):
            self.ok = self.value <= self.target if self.op == "<=" else self.value >= self.target
        elif self.target is not None:
            self.ok = False  # a target with no figure is not met

    def as_dict(self) -> dict:
        """Plain JSON data (NaN, i.e. nothing measured, becomes null)."""
        return {k: (None if isinstance(v, float) and _nan(v) else v) for k, v in asdict(self).items()}


def _nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)


def ratio(value: float | None, peer: float | None) -> float:
    """``value / peer`` for a target set against the peer in the same run; NaN when either is missing."""
    if value is None or peer is None or _nan(value) or _nan(peer) or peer <= 0:
        return float("nan")
    return value / peer


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "min": min(values) if values else float("nan"),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
    }


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    mosq = ""
    binary = mosquitto_binary()
    if binary:
        try:
            out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5).stdout
            mosq = out.splitlines()[0] if out else ""
        except (OSError, subprocess.SubprocessError):
            pass
    chromium = ""
    if Path("/usr/bin/chromium").exists():
        try:
            chromium = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True,
                                      timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": _os_release(),
        "mosquitto": mosq,
        "chromium": chromium,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return ""


# ---------------------------------------------------------------- broker


def mosquitto_binary() -> str | None:
    try:
        return mosquitto_path()
    except BrokerUnavailable:
        return None



class Skip(Exception):
    """The benchmark cannot run here (a tool is missing); the reason goes in the doc."""


# ------------------------------------------------------------ processes


def proc_memory_kib(pid: int) -> dict[str, int]:
    """The memory lines of /proc/PID/status in KiB: VmRSS, RssAnon, RssFile... ({} when gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {name: int(rest.split()[0]) for name, _, rest in (line.partition(":") for line in lines)
            if rest.strip().endswith("kB")}


def proc_rss_kib(pid: int) -> int | None:
    return proc_memory_kib(pid).get("VmRSS")


def proc_write_bytes(pid: int) -> int | None:
    """Bytes ``pid`` has caused to be written to block devices so far."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or _nan(value):
        return "—"
    value = value + 0.0  # no "-0.0"
    if round(value, digits) == 0:
        value = 0.0
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
