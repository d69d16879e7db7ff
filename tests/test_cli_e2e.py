"""Every command of the README's `umps-agent` table, run as an installer or an admin runs it.

Each command is a separate process (``python -m agent ...``); the ones that talk to a
running unit talk to the real agent process on a private Mosquitto (the rig of
tests/test_agent_e2e.py), and what an admin's tool signs is published to it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.broker import wait_until
from tests.test_agent_e2e import ROOT, UNIT, Rig

CORPUS = Path(__file__).parent / "data" / "gnss-corpus"
# What this module runs, as the README table names it; test_the_readme_table_is_covered keeps them equal.
COVERED = {"run", "status", "config check", "config show", "gnss decode", "gnss watch", "admin keygen",
           "admin pubkey", "admin sign", "admin sign-cmd", "admin sign-dispatch", "decode"}


def umps(*args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RUNTIME_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, timeout=timeout)


def test_the_readme_table_is_covered():
    readme = (ROOT / "README.md").read_text()
    table = re.findall(r"^\| `umps-agent ([a-z -]+?)(?: \[|`| [A-Z-]| --)", readme, re.M)
    assert set(table) == COVERED, set(table) ^ COVERED


def test_decode_prints_the_json_report_of_a_cbor_payload_from_stdin():
    from agent.core.telemetry_cbor import encode_report

    report = {"unit": UNIT, "seq": 7, "ts": "2026-12-03T10:00:00.000Z", "time_source": "gnss",
              "fix": {"mode": 1, "time": None, "lat": None, "lon": None, "alt": None, "speed": None, "track": None,
                      "hdop": None, "sats": None, "age": None, "receiver": "lost"},
              "status": "busy", "siren": False, "emergency": False, "call": None, "ignition": "off"}
    done = umps("decode", "--topic", f"umps/{UNIT}/telemetry", "-", stdin=encode_report(report))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == report
    assert umps("decode", "--hex", "-", stdin=b"not hex").returncode == 2
    assert umps("decode", "-", stdin=b"\x00").returncode == 1


def test_version_and_usage_errors():
    done = umps("--version")
    assert done.returncode == 0 and done.stdout.decode().startswith("umps-agent ")
    assert umps("nonsense").returncode == 2
    assert umps("admin", "sign-cmd", "--key", "k", "--unit", "U", "reboot").returncode == 2


def test_sign_dispatch_makes_messages_a_unit_with_dispatch_keys_accepts(tmp_path):
    # The whole path, through a running unit and the shipped ACLs: tests/test_security_e2e.py.
    from agent.config_validate import parse_config
    from agent.core.replay import RecentIds
    from agent.core.signed_dispatch import check_dispatch

    key = tmp_path / "dispatch.key"
    public = umps("admin", "keygen", str(key)).stdout.decode().strip()
    config = parse_config({"unit": {"id": UNIT, "kind": "car"}, "security": {"dispatch_keys": [public]}})
    call = tmp_path / "call.json"
    call.write_text(json.dumps({"id": "C-7", "action": "cancel"}))
    alarm = "8F14E45F-CEEA-4E7A-9B3C-1D2E3F405A6B"  # as a dispatch database may print it
    signed = []
    for args in (["call", str(call)], ["alarm/ack", "--alarm-id", alarm], ["alarm/clear", "--alarm-id", alarm]):
        done = umps("admin", "sign-dispatch", "--key", str(key), "--unit", UNIT, *args)
        assert done.returncode == 0, done.stderr
        signed.append((args[0], done.stdout))
    assert json.loads(signed[1][1])["id"] == json.loads(signed[2][1])["id"] == alarm.lower()
    now = dt.datetime.now(dt.timezone.utc)
    for topic, payload in signed:
        assert check_dispatch(topic, payload, config, now, RecentIds()).accepted, topic
    # Bad usage: no call file, a file for an alarm message, a life over 1 h, an answer naming no alarm
    # or a numbered one (alarm ids are UUIDs).
    assert umps("admin", "sign-dispatch", "--key", str(key), "--unit", UNIT, "call").returncode == 2
    assert umps("admin", "sign-dispatch", "--key", str(key), "--unit", UNIT, "alarm/clear", str(call)).returncode == 2
    assert umps("admin", "sign-dispatch", "--key", str(key), "--unit", UNIT, "--expires-in", "7200",
                "alarm/clear", "--alarm-id", alarm).returncode == 2
    unnamed = umps("admin", "sign-dispatch", "--key", str(key), "--unit", UNIT, "alarm/clear")
    assert unnamed.returncode == 2 and b"needs --alarm-id" in unnamed.stderr
    numbered = umps("admin", "sign-dispatch", "--key", str(key), "--unit", UNIT, "alarm/ack", "--alarm-id", "3")
    assert numbered.returncode == 2 and b"not an alarm id" in numbered.stderr


def test_config_check_accepts_a_good_file_and_names_every_problem_of_a_bad_one(tmp_path):
    done = umps("config", "check", str(ROOT / "agent.example.toml"))
    assert done.returncode == 0 and b"OK (unit" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[unit]\nid = "KEN-M-07"\nkind = "tank"\n[mqtt]\nport = 99999\ncolour = "blue"\n')
    done = umps("config", "check", str(bad))
    err = done.stderr.decode()
    assert done.returncode == 2
    assert "unit.kind" in err and "mqtt.port" in err and "mqtt.colour" in err, err
    assert umps("config", "check", str(tmp_path / "missing.toml")).returncode == 2


def test_config_show_prints_the_effective_config_with_secrets_hidden(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(f'[unit]\nid = "{UNIT}"\nkind = "motorcycle"\n[mqtt]\nusername = "u"\npassword = "hunter2-secret"\n'
                    f'[storage]\nstate_dir = "{tmp_path / "state"}"\nruntime_dir = "{tmp_path / "run"}"\n')
    done = umps("config", "show", "--config", str(path))
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["version"] == 0 and body["config"]["unit"]["id"] == UNIT and body["hash"]
    assert b"hunter2-secret" not in done.stdout


def test_gnss_decode_a_capture_from_a_file_and_from_stdin():
    capture = CORPUS / "bu353s4.log"
    from_file = umps("gnss", "decode", str(capture))
    from_stdin = umps("gnss", "decode", "-", stdin=capture.read_bytes())
    assert from_file.returncode == from_stdin.returncode == 0
    assert from_file.stdout == from_stdin.stdout
    epochs = [json.loads(line) for line in from_file.stdout.splitlines()]
    assert epochs and {"time", "mode", "lat", "lon", "alt", "speed", "track", "hdop", "sats"} <= set(epochs[0])
    assert any(e["mode"] == 3 for e in epochs)
    assert b"sentences_ok=" in from_file.stderr
    assert umps("gnss", "decode", "/nonexistent.log").returncode == 2


def test_gnss_watch_shows_live_fixes_from_the_receiver_until_interrupted(tmp_path):
    from hil.gnss_emulator import GnssEmulator

    gnss = GnssEmulator(rate_hz=5)
    port = gnss.serve_pty(tmp_path / "gnss0")
    gnss.start()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "agent", "gnss", "watch", "--port", port, "--config",
                             str(tmp_path / "none.toml")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        seen = b""
        deadline = time.monotonic() + 30
        while b"3D" not in seen and time.monotonic() < deadline:
            chunk = proc.stdout.read()
            if chunk:
                seen += chunk
            elif proc.poll() is not None:
                break
            else:
                time.sleep(0.05)
        assert b"3D" in seen, seen.decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        gnss.stop()


def test_admin_tools_sign_what_a_running_unit_accepts_and_status_shows_it(tmp_path, request):
    key = tmp_path / "admin.key"
    done = umps("admin", "keygen", str(key))
    assert done.returncode == 0 and key.stat().st_mode & 0o777 == 0o600
    public = done.stdout.decode().strip()
    assert umps("admin", "keygen", str(key)).returncode == 2  # never overwrites a key
    done = umps("admin", "pubkey", str(key))
    assert done.returncode == 0 and done.stdout.decode().strip() == public

    (tmp_path / "unit").mkdir()
    rig = Rig(tmp_path / "unit", overrides={"security": {"admin_keys": [public]}})
    request.addfinalizer(rig.down)
    rig.start_agent()
    rig.wait("config/current", lambda b: b["version"] == 0)
    seq = rig.wait("telemetry", timeout=20)["seq"]

    # `umps-agent status` from the unit's own config: human and JSON.
    def status_json() -> dict:
        done = umps("status", "--json", "--config", str(rig.config_path))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    wait_until(lambda: umps("status", "--config", str(rig.config_path)).returncode == 0, 10,
               "`umps-agent status` to find the agent", interval=0.2)
    human = umps("status", "--config", str(rig.config_path))
    assert human.returncode == 0 and f"unit        {UNIT}".encode() in human.stdout and b"online to" in human.stdout
    assert b"outputs" in human.stdout
    # The status file is rewritten every second: it catches up with the report seen on the broker.
    wait_until(lambda: status_json()["seq"] >= seq, 5, "the status file's seq")

    # A signed command, made by the documented tool, is carried out.
    done = umps("admin", "sign-cmd", "--key", str(key), "--unit", UNIT, "report_position")
    assert done.returncode == 0, done.stderr
    command = json.loads(done.stdout)
    rig.publish("cmd", done.stdout)
    result = rig.wait("cmd/result", lambda b: b.get("id") == command["id"])
    assert result["ok"] is True, result
    # The same command again is a replay.
    rig.publish("cmd", done.stdout)
    replay = rig.wait("cmd/result", lambda b: b.get("id") == command["id"] and b["ok"] is False)
    assert replay["errors"], replay

    # A signed config push, from a TOML file.
    partial = tmp_path / "push.toml"
    partial.write_text("[telemetry]\nbacklog_max_rate = 25.0\n")
    done = umps("admin", "sign", "--key", str(key), "--unit", UNIT, "--version", "1", str(partial))
    assert done.returncode == 0, done.stderr
    rig.publish("config/set", done.stdout)
    assert rig.wait("config/result", lambda b: b.get("version") == 1)["ok"] is True
    rig.wait("config/current", lambda b: b["version"] == 1)
    wait_until(lambda: status_json()["config_version"] == 1, 10, "the status file's config version", interval=0.2)

    assert rig.stop_agent() == 0
    stopped = umps("status", "--config", str(rig.config_path))
    assert stopped.returncode == 1 and b"not running" in stopped.stderr
