"""An installer's laptop at a running unit: `umps-agent status`, `config show` and `gnss watch`
against a real agent process, and against what a dead one left behind.

Each command is the installed ``umps-agent`` script, run as a separate process from a directory
that is not the repository, as at the vehicle.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.status_report import boot_id, process_start
from hil.wait import wait_until
from tests.test_agent_e2e import ROOT, UNIT, Rig


def command() -> list[str]:
    script = Path(sys.executable).parent / "umps-agent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent"]


def umps(*args: str, cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if not env or "RUNTIME_DIRECTORY" not in env:
        full.pop("RUNTIME_DIRECTORY", None)
    return subprocess.run([*command(), *args], cwd=cwd, env=full, capture_output=True, timeout=timeout, text=True)


def a_dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def status_file(tmp_path: Path, **report) -> tuple[Path, Path]:
    """A config and the status file an agent running it would write; (config, runtime dir)."""
    run, config = tmp_path / "run", tmp_path / "unit.toml"
    run.mkdir()
    config.write_text(f'[unit]\nid = "{UNIT}"\nkind = "car"\n[gnss]\nport = "{tmp_path / "gnss0"}"\n'
                      f'[storage]\nstate_dir = "{tmp_path / "state"}"\nruntime_dir = "{run}"\n')
    (run / "status.json").write_text(json.dumps({
        "unit": UNIT, "version": "test", "config": str(config), "uptime_s": 5.0, "written": time.time(),
        "link": {"online": True, "broker": "broker:8883"}, "outbox": {}, "gnss": {"port": str(tmp_path / "gnss0")},
        "status": "available", "seq": 7, "config_version": 0, **report}))
    return config, run


@pytest.mark.parametrize("who", ["exited", "pid reused"])
def test_status_and_config_show_see_through_a_fresh_file_of_a_dead_agent(tmp_path, who):
    # The file was written a moment ago, so its age alone says "fine"; its writer is gone
    # (or its pid now belongs to another process, started later).
    if who == "exited":
        identity = {"pid": a_dead_pid(), "pid_start": 1, "boot_id": boot_id()}
    else:
        identity = {"pid": os.getpid(), "pid_start": (process_start(os.getpid()) or 0) - 1, "boot_id": boot_id()}
    config, run = status_file(tmp_path, **identity)
    env = {"RUNTIME_DIRECTORY": str(run)}
    text = umps("status", cwd=tmp_path, env=env)
    as_json = umps("status", "--json", cwd=tmp_path, env=env)
    assert text.returncode == as_json.returncode == 1, (text, as_json)
    assert "NOT RUNNING" in text.stdout and "not running" in text.stderr, text
    assert json.loads(as_json.stdout)["unit"] == UNIT and "not running" in as_json.stderr
    shown = umps("config", "show", cwd=tmp_path, env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["config"]["unit"]["id"] == UNIT
    assert "warning: no agent is running" in shown.stderr and "--config" in shown.stderr, shown.stderr
    # The same file from a live writer: both forms say so, with the same exit code.
    (tmp_path / "live").mkdir()
    config, run = status_file(tmp_path / "live", pid=os.getpid(), pid_start=process_start(os.getpid()),
                              boot_id=boot_id())
    env = {"RUNTIME_DIRECTORY": str(run)}
    assert umps("status", cwd=tmp_path, env=env).returncode == umps("status", "--json", cwd=tmp_path,
                                                                     env=env).returncode == 0
    assert "warning" not in umps("config", "show", cwd=tmp_path, env=env).stderr


def test_a_stale_file_of_a_live_agent_fails_in_both_forms(tmp_path):
    config, run = status_file(tmp_path, pid=os.getpid(), pid_start=process_start(os.getpid()), boot_id=boot_id())
    report = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**report, "written": time.time() - 60}))
    text = umps("status", "--config", str(config), cwd=tmp_path)
    as_json = umps("status", "--json", "--config", str(config), cwd=tmp_path)
    assert text.returncode == as_json.returncode == 1
    assert "STALE" in text.stdout and "may be stuck" in as_json.stderr


def test_at_a_running_unit_gnss_watch_leaves_the_receiver_to_the_agent_and_status_sees_a_kill(tmp_path, request):
    (tmp_path / "unit").mkdir()
    rig = Rig(tmp_path / "unit")
    request.addfinalizer(rig.down)
    rig.start_agent()
    first = rig.wait("telemetry", lambda b: b["fix"]["mode"] >= 2, timeout=20)
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    config = str(rig.config_path)
    wait_until(lambda: umps("status", "--config", config, cwd=laptop).returncode == 0, 10,
               "the agent's first status file", interval=0.2)

    # The agent reads the receiver: watching it would split the receiver's data between the two.
    refused = umps("gnss", "watch", "--config", config, cwd=laptop, timeout=20)
    assert refused.returncode == 1, refused
    assert f"pid {rig.agent.pid}" in refused.stderr and "--force" in refused.stderr, refused.stderr
    assert "watching" not in refused.stdout
    # Named through the pty itself rather than its link: the same device.
    assert umps("gnss", "watch", "--port", os.path.realpath(rig.gnss_path), "--config", config,
                cwd=laptop).returncode == 1
    # Insisting warns, and watches.
    first_line, err = watch_briefly(laptop, "--config", config, "--force")
    assert "watching" in first_line
    assert "warning:" in err and "--force" in err, err
    # The agent is still fine once the installer has stopped watching.
    rig.wait("telemetry", lambda b: b["seq"] > first["seq"] + 2 and b["fix"]["mode"] >= 2, timeout=15)

    # A live agent: both forms exit 0.
    assert umps("status", "--json", "--config", config, cwd=laptop).returncode == 0
    # Killed without a chance to remove its status file: at once, both forms say it is not running.
    rig.agent.proc.send_signal(signal.SIGKILL)
    rig.agent.proc.wait(10)
    text = umps("status", "--config", config, cwd=laptop)
    as_json = umps("status", "--json", "--config", config, cwd=laptop)
    assert text.returncode == as_json.returncode == 1, (text, as_json)
    assert "NOT RUNNING" in text.stdout and "not running" in as_json.stderr
    # And gnss watch no longer has anyone to defer to.
    first_line, err = watch_briefly(laptop, "--config", config)
    assert "watching" in first_line and "agent" not in err, err


def watch_briefly(cwd: Path, *args: str) -> tuple[str, str]:
    """Start `gnss watch`, read its first line, stop it as Ctrl-C does: (first line, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RUNTIME_DIRECTORY", None)
    proc = subprocess.Popen([*command(), "gnss", "watch", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    return first, err
