"""One bad message or one broken output costs the unit that message or that output, never its telemetry.

Black-box, against the real agent process (``python -m agent run``), a private
Mosquitto, the GNSS emulator on a pty and the pigpio-protocol GPIO emulator
(the rig of tests/test_agent_e2e.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

from tests.support.broker import free_port, wait_until
from tests.test_agent_e2e import PINS, ROOT, UNIT, Rig

# The call that silenced units in the field: valid JSON, but "\ud800" has no UTF-8 form.
LONE_SURROGATE_CALL = (b'{"id": "C-9", "action": "new", "priority": 1, "nature": "x\\ud800y", '
                       b'"address": "Av. Mohammed V", "created": "2026-11-25T10:00:00Z"}')


def _status(rig: Rig) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RUNTIME_DIRECTORY", None)
    done = subprocess.run([sys.executable, "-m", "agent", "status", "--json", "--config", str(rig.config_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _keeps_reporting(rig: Rig, after_seq: int, reports: int = 3) -> None:
    """Telemetry goes on at 1 Hz: ``reports`` more, each one second apart give or take."""
    rig.wait("telemetry", lambda b: b["seq"] >= after_seq + reports, timeout=reports + 8)


def test_a_call_with_a_lone_surrogate_is_rejected_and_the_unit_keeps_reporting(tmp_path, request):
    ui_port = free_port()
    rig = Rig(tmp_path, ui_port=ui_port)
    request.addfinalizer(rig.down)
    rig.start_agent()
    rig.wait("status", lambda b: b["status"] == "available")
    seq = rig.wait("telemetry", timeout=20)["seq"]

    rig.publish("call", LONE_SURROGATE_CALL)
    rejected = rig.wait("call/rejected")
    assert rejected["error"].startswith("nature: not valid Unicode"), rejected
    _keeps_reporting(rig, seq)

    # The next call is shown, answered, and its text cleaned by the documented rule:
    # the bidi override and the control character are gone, the Arabic stays.
    call = {"id": "C-10", "action": "new", "priority": 2, "nature": "حادث\u202e سير\x07",
            "address": "Rue 12\r\nKénitra", "created": "2026-11-25T10:00:00Z"}
    rig.publish("call", json.dumps(call).encode())
    rig.wait("call/response", lambda b: b["id"] == "C-10" and b["response"] == "received")
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/api/snapshot", timeout=10) as reply:
        snapshot = reply.read().decode("utf-8")
    assert "حادث سير" in snapshot and "Rue 12 Kénitra" in snapshot
    assert "\u202e" not in snapshot and "\\u202e" not in snapshot.lower() and "\\u0007" not in snapshot

    report = _status(rig)
    assert report["core_errors"] == 0
    assert all(out["failures"] == 0 for out in report["outputs"].values()), report["outputs"]
    assert rig.stop_agent() == 0
    assert "UnicodeEncodeError" not in rig.agent_log()


def test_a_state_file_that_cannot_be_written_costs_only_the_state_file(tmp_path, request):
    rig = Rig(tmp_path)
    request.addfinalizer(rig.down)
    # The state file's place is taken by a directory: every write of the state fails.
    blocker = tmp_path / "state" / "unit-state.json"
    blocker.mkdir(parents=True)
    (blocker / "keep").write_text("x")
    rig.start_agent()
    seq = rig.wait("telemetry", timeout=20)["seq"]

    for status in ("en_route", "on_scene", "available", "en_route"):
        rig.gpio.hold(PINS[status], 0.1)
        rig.wait("status", lambda b, s=status: b["status"] == s)
    call = {"id": "C-11", "action": "new", "priority": 1, "nature": "Accident", "address": "Av. Mohammed V",
            "created": "2026-11-25T10:00:00Z"}
    rig.publish("call", json.dumps(call).encode())
    rig.wait("call/response", lambda b: b["id"] == "C-11" and b["response"] == "received")
    _keeps_reporting(rig, seq)

    wait_until(lambda: _status(rig)["outputs"]["state_file"]["state"] == "failing", 5, "state file failing")
    report = _status(rig)
    assert report["outputs"]["state_file"]["failures"] >= 1
    assert "IsADirectoryError" in report["outputs"]["state_file"]["last_error"]
    assert report["outputs"]["status_file"]["failures"] == 0 and report["core_errors"] == 0
    # Logged once with its traceback, not once per event.
    assert rig.agent_log().count("state file failed") == 1, rig.agent_log()

    # The card is back: the state is stored again within a few seconds, and status says so.
    shutil.rmtree(blocker)
    wait_until(lambda: (tmp_path / "state" / "unit-state.json").is_file(), 10, "state stored again")
    stored = json.loads((tmp_path / "state" / "unit-state.json").read_text())
    assert "C-11" in json.dumps(stored)
    wait_until(lambda: _status(rig)["outputs"]["state_file"]["state"] == "ok", 5, "state file ok in status")
    assert rig.stop_agent() == 0
    assert "state file works again" in rig.agent_log()


def test_a_full_disk_is_told_by_status_and_its_end_within_a_second_or_two(tmp_path, request):
    from tests.support.disk import fill, small_tmpfs

    with small_tmpfs(tmp_path / "state", "512k") as state:
        rig = Rig(tmp_path)
        request.addfinalizer(rig.down)
        rig.start_agent()
        rig.wait("telemetry", timeout=20)
        wait_until(lambda: _status(rig)["outbox"]["disk_ok"] is True, 10, "status file")
        filler = fill(state)
        # State changes cannot be stored; the unit goes on reporting and answering.
        rig.gpio.hold(PINS["en_route"], 0.1)
        rig.wait("status", lambda b: b["status"] == "en_route")
        rig.gpio.hold(PINS["on_scene"], 0.1)
        rig.wait("status", lambda b: b["status"] == "on_scene")
        wait_until(lambda: _status(rig)["outbox"]["disk_ok"] is False, 30, "disk_ok false")
        assert _status(rig)["outputs"]["state_file"]["state"] == "failing"
        seq = rig.wait("telemetry")["seq"]
        _keeps_reporting(rig, seq)

        filler.unlink()
        freed = time.time()
        status_file = tmp_path / "run" / "status.json"
        wait_until(lambda: json.loads(status_file.read_text())["outbox"]["disk_ok"] is True, 10, "disk_ok true again")
        took = json.loads(status_file.read_text())["written"] - freed  # by the agent's own account
        wait_until(lambda: _status(rig)["outputs"]["state_file"]["state"] == "ok", 10, "state file ok")
        assert '"on_scene"' in (state / "unit-state.json").read_text()
        assert took < 2.0, took  # status is written every second; the disk is probed as it is written
        assert rig.stop_agent() == 0
        assert rig.agent_log().count("state file failed") == 1


def test_status_tells_link_and_receiver_changes_within_a_second(tmp_path, request):
    rig = Rig(tmp_path)
    request.addfinalizer(rig.down)
    rig.start_agent()
    rig.wait("telemetry", lambda b: b["fix"]["mode"] >= 2, timeout=20)
    status_file = tmp_path / "run" / "status.json"

    def shown(predicate) -> dict:
        holder: list[dict] = []

        def check() -> bool:
            try:
                data = json.loads(status_file.read_text())
            except (OSError, ValueError):
                return False
            holder[:] = [data]
            return predicate(data)
        wait_until(check, 15, "status file")
        return holder[0]

    shown(lambda d: d["link"]["online"] and d["gnss"]["state"] == "fix")
    # The broker goes: the link drops at once, and status says so at once.
    t0 = time.time()
    rig.broker.kill9()
    data = shown(lambda d: not d["link"]["online"])
    assert data["written"] - t0 < 1.5, data["written"] - t0
    rig.broker.restart()
    t0 = time.time()
    data = shown(lambda d: d["link"]["online"])
    up_at = data["written"]
    # The receiver goes quiet: lost after its silence timeout (2 s here), shown at once.
    rig.gnss.unplug()
    t0 = time.time()
    data = shown(lambda d: d["gnss"]["state"] == "lost")
    assert data["written"] - t0 < 2.0 + 1.5, data["written"] - t0
    rig.gnss.replug()
    shown(lambda d: d["gnss"]["state"] != "lost")
    assert up_at and rig.stop_agent() == 0
