"""What ``umps-agent status`` shows: the live status report, the file it is read from, and the
one-line status systemd shows.

The runtime's core thread builds the report (:func:`build_report`) every
:data:`STATUS_EVERY_S` and at once when the link or the receiver changes, and
writes it to :data:`STATUS_FILE` in the runtime directory (:func:`runtime_dir`,
a tmpfs: systemd's ``RuntimeDirectory`` when set), replacing it whole so a
reader never sees half a report. The CLI reads the same file (``status``, and
``config show`` to find the running agent's config). The file is removed when
the agent stops.

A file left behind by an agent that did not stop cleanly (a crash, ``kill -9``, a
power cut with ``/run`` on a disk) must not pass for a live agent, even while it is
young, and a new process that happens to get the dead agent's pid must not either:
the report carries the agent's ``pid``, the kernel's start time of that process
(``pid_start``, ``/proc/<pid>/stat``) and the boot it ran in (``boot_id``), and
:func:`agent_alive` checks all three.

``disk_ok`` in the report comes from :class:`DiskCheck`, which also lets the
outbox commit again as soon as the state directory takes writes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from agent import __version__
from agent.adapters import sdnotify

if TYPE_CHECKING:
    from agent.adapters.mqtt import LinkStats
    from agent.adapters.outbox import OutboxStats
    from agent.adapters.serial_gnss import ReaderCounters
    from agent.config import AgentConfig
    from agent.core.unit import Now, Unit

STATUS_FILE = "status.json"
STATUS_EVERY_S = 1.0  # `umps-agent status` tells the present within a second
DISK_PROBE_EVERY_S = 1.0


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the command name
    except (OSError, IndexError, ValueError):
        return None


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


_IDENTITY = {"pid": os.getpid(), "pid_start": process_start(os.getpid()), "boot_id": boot_id()}


def agent_alive(report: dict[str, Any]) -> bool | None:
    """Whether the agent that wrote ``report`` still runs: the same boot, its pid alive, and that
    pid's process started when the agent's did (so not a newer process given the same pid).
    None when the report does not say which process wrote it."""
    pid = report.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    if report.get("boot_id") and boot_id() and report["boot_id"] != boot_id():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process (the service's own user): it exists
    recorded, now = report.get("pid_start"), process_start(pid)
    return recorded is None or now is None or recorded == now


def runtime_dir(config: AgentConfig) -> Path:
    """Where the live status file goes: systemd's ``RuntimeDirectory`` when set."""
    return Path(os.environ.get("RUNTIME_DIRECTORY") or config.storage.runtime_dir)


def write_status_file(directory: Path, report: dict[str, Any]) -> None:
    """Replace :data:`STATUS_FILE` in ``directory`` with ``report`` (a tmpfs: no fsync needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (STATUS_FILE + ".tmp")
    tmp.write_text(json.dumps(report, ensure_ascii=False))
    os.replace(tmp, directory / STATUS_FILE)


def status_line(unit: Unit, backlog: int, mono: float) -> str:
    """The unit in one line, for systemd's ``STATUS=`` (``systemctl status umps-agent``)."""
    mode = unit.current_mode(mono)
    return sdnotify.status_line(
        link="online" if unit.link_up else "offline",
        fix={3: "3D", 2: "2D"}.get(mode, "none"),
        backlog=backlog,
        unit_status=unit.status.state,
        emergency=unit.emergency.state.value,
    )


def build_report(now: Now, *, unit: Unit, config: AgentConfig, config_path: Path, config_version: int,
                 started_mono: float, link: LinkStats | None, outbox: OutboxStats | None,
                 gnss: ReaderCounters | None, disk_ok: bool, panel: bool, inbox_dropped: int, core_errors: int,
                 outputs: dict[str, Any], storage: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status file's content (``umps-agent status --json`` prints it)."""
    call = unit.calls.shown()
    fix = unit.fix(now)
    return {
        "unit": config.unit.id,
        "version": __version__,
        **_IDENTITY,  # pid, pid_start, boot_id: `umps-agent status` checks the writer still runs
        "config": str(config_path.resolve()),  # so `umps-agent status` / `config show` find it
        "uptime_s": round(now.mono - started_mono, 1),
        "written": time.time(),
        "link": {
            "online": unit.link_up,
            "broker": link.broker if link else None,
            "connects": link.connects if link else 0,
            "drops": link.disconnects if link else 0,
        },
        "outbox": {
            **(outbox.pending if outbox else {}),
            "dropped": outbox.dropped if outbox else 0,
            "disk_ok": disk_ok,
        },
        "gnss": {
            "port": config.gnss.port,  # `umps-agent gnss watch` will not compete with the agent for it
            "state": "lost" if unit.gnss_lost else ("fix" if unit.has_fix(now.mono) else "no fix"),
            "receiver": unit.receiver,
            "mode": fix["mode"],
            "age": fix.get("age"),
            **(vars(gnss) if gnss else {}),  # flat counters: see the note on "counters" below
        },
        "status": unit.status.state,
        "ignition": unit.parking.ignition_json,
        "parked": unit.parked,
        "siren": unit.siren,
        "emergency": unit.emergency.state.value,
        "call": f"{call.id} (P{call.priority}, {call.state})" if call else None,
        "seq": unit.next_seq - 1,
        "config_version": config_version,
        "panel": panel,
        "inbox_dropped": inbox_dropped,
        "core_errors": core_errors,
        "outputs": outputs,
        # Whether what the unit keeps reaches its card, why not, and each store's state (agent/storage_health.py).
        "storage": storage if storage is not None else {"durable": unit.durable, "reason": unit.durable_reason,
                                                          "stores": {}},
        # vars(), not dataclasses.asdict(): these counters are flat, and asdict() calls
        # dataclasses.fields(), whose tuple(generator) leaves a tuple of the field count in the
        # interpreter's free lists each time (2,000 per size, filled at this 1 Hz in half an hour).
        "counters": dict(vars(unit.counters)),
    }


class DiskCheck:
    """Whether the state directory takes writes now. The outbox only learns it at its next
    commit, which may be far off (a link that acknowledges at once leaves it nothing to
    write), so the free space is read as well (statvfs: no write). While anything says no,
    a one-byte file probes the directory once a second, and the outbox may commit again."""

    def __init__(self) -> None:
        self._probe: tuple[float, bool] | None = None  # (when, writable) while something says no

    def ok(self, now_mono: float, state_dir: str | Path, *, outbox_ok: bool, state_file_ok: bool,
           recommit: Callable[[], object]) -> bool:
        """``outbox_ok``/``state_file_ok``: whether their last writes went through; ``recommit``
        lets the outbox commit again once the directory takes writes."""
        full = disk_full(state_dir)
        if outbox_ok and not full and state_file_ok:
            self._probe = None
            return True
        if self._probe is None or now_mono - self._probe[0] >= DISK_PROBE_EVERY_S:
            writable = not full and probe_disk(state_dir)
            self._probe = (now_mono, writable)
            if writable and not outbox_ok:
                recommit()
        return self._probe[1]


def disk_full(state_dir: str | Path) -> bool:
    try:
        return os.statvfs(state_dir).f_bavail == 0
    except OSError:
        return True


def probe_disk(state_dir: str | Path) -> bool:
    """Write, fsync and remove a one-byte file: whether the directory takes writes now."""
    probe = Path(state_dir) / ".disk-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
        return True
    except OSError:
        probe.unlink(missing_ok=True)
        return False
