"""The remote config layer on disk: atomic, restart-proof, never a brick."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agent.config_validate import parse_config
from agent.adapters import config_store
from agent.adapters.config_store import ConfigStoreError, load_effective
from agent.core.remote_config import ConfigState, handle_config_set, rolled_back_result
from agent.core.rollback_guard import RollbackGuard

UTC = dt.timezone.utc
NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def write_toml(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [unit]
            id = "KEN-M-07"
            kind = "motorcycle"
            [mqtt]
            host = "broker-a.umps.example"
            password = "pw-0"
            [storage]
            state_dir = "{tmp_path / 'state'}"
            """
        )
        + extra,
        encoding="utf-8",
    )
    return path


def accept(state: ConfigState, config: dict[str, Any], version: int) -> ConfigState:
    body = {"id": f"r{version}", "version": version, "config": config}
    outcome = handle_config_set(json.dumps(body).encode(), state, NOW, validate=parse_config)
    assert outcome.state is not None, outcome.result
    return outcome.state


def files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


def test_a_unit_never_pushed_runs_on_its_file(tmp_path: Path) -> None:
    effective = load_effective(write_toml(tmp_path), validate=parse_config)
    assert (effective.version, effective.source, effective.problems) == (0, "toml", ())
    assert effective.config.mqtt.host == "broker-a.umps.example"
    assert files(tmp_path / "state") == set()


def test_a_push_survives_a_restart(tmp_path: Path) -> None:
    toml = write_toml(tmp_path)
    first = load_effective(toml, validate=parse_config)
    s1 = accept(first.state, {"telemetry": {"rate_hz": 2}}, 1)
    first.store.save(s1)
    s2 = accept(s1, {"panel": {"labels": {"fr": {"busy": "Occupé"}}}}, 2)
    first.store.save(s2)

    again = load_effective(toml, validate=parse_config)
    assert (again.version, again.source, again.problems) == (2, "current", ())
    assert again.config.telemetry.rate_hz == 2
    assert again.config.panel.labels == {"fr": {"busy": "Occupé"}}
    assert again.config.mqtt.password is not None and again.config.mqtt.password.get_secret_value() == "pw-0"
    assert again.state.request_id == "r2" and again.state.highest_version == 2
    assert json.loads((tmp_path / "state" / "remote-config.prev.json").read_text())["version"] == 1
    # The local file still counts for keys no push set.
    toml.write_text(toml.read_text().replace("broker-a", "broker-b"))
    assert load_effective(toml, validate=parse_config).config.mqtt.host == "broker-b.umps.example"


def test_files_are_private_and_complete(tmp_path: Path) -> None:
    effective = load_effective(write_toml(tmp_path), validate=parse_config)
    effective.store.save(accept(effective.state, {"mqtt": {"password": "pw-1"}}, 1))
    current = tmp_path / "state" / "remote-config.json"
    assert stat.S_IMODE(current.stat().st_mode) == 0o600  # it may hold the broker password
    data = json.loads(current.read_text())
    assert set(data) == {"format", "version", "highest_version", "request_id", "pending", "overlay", "sha256"}
    assert files(tmp_path / "state") == {"remote-config.json"}  # no temporary file left


def test_a_failed_write_leaves_the_old_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = write_toml(tmp_path)
    effective = load_effective(toml, validate=parse_config)
    s1 = accept(effective.state, {"telemetry": {"rate_hz": 2}}, 1)
    effective.store.save(s1)
    before = (tmp_path / "state" / "remote-config.json").read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(config_store.os, "fsync", disk_full)
    with pytest.raises(ConfigStoreError, match="No space left"):
        effective.store.save(accept(s1, {"telemetry": {"rate_hz": 3}}, 2))
    monkeypatch.undo()
    assert not [n for n in files(tmp_path / "state") if n.endswith(".tmp")]
    reloaded = load_effective(toml, validate=parse_config)
    assert reloaded.version == 1 and reloaded.config.telemetry.rate_hz == 2
    assert before in {
        p.read_bytes() for p in (tmp_path / "state").iterdir() if p.name.startswith("remote-config")
    }


def test_an_unwritable_state_dir_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the directory should be")
    effective = load_effective(write_toml(tmp_path), validate=parse_config)
    assert effective.version == 0
    with pytest.raises(ConfigStoreError):
        effective.store.save(accept(effective.state, {"telemetry": {"rate_hz": 2}}, 1))


WRITER = textwrap.dedent(
    """\
    import json, sys
    from agent.adapters.config_store import load_effective
    from agent.config_validate import parse_config
    from agent.core.remote_config import handle_config_set
    import datetime as dt
    effective = load_effective(sys.argv[1], validate=parse_config)
    state, store = effective.state, effective.store
    now = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)
    for version in range(state.version + 1, state.version + 100000):
        labels = {"fr": {"busy": "Occupé " + str(version) + " " + "x" * 30}}
        body = {"id": f"r{version}", "version": version, "config": {"panel": {"labels": labels}, "unit": {"name": "n" * 2000}}}
        state = handle_config_set(json.dumps(body).encode(), state, now, validate=parse_config).state
        store.save(state)
        print(version, flush=True)
    """
)


def test_kill_9_while_writing_never_loses_a_saved_version(tmp_path: Path) -> None:
    toml = write_toml(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for saves_before_kill in (1, 7, 23):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(toml)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        assert proc.stdout is not None
        saved = 0
        try:
            for _ in range(saves_before_kill):
                line = proc.stdout.readline()
                assert line, proc.stderr.read().decode() if proc.stderr else "writer died"
                saved = int(line)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc.stdout.close()
            if proc.stderr:
                proc.stderr.close()
        effective = load_effective(toml, validate=parse_config)
        assert effective.problems == ()
        assert effective.version >= saved, "a save that returned was lost"
        assert effective.config.panel.labels["fr"]["busy"].startswith(f"Occupé {effective.version} ")


def corrupt_cases() -> list[tuple[str, Any]]:
    def garbage(path: Path) -> None:
        path.write_bytes(b"\x00\x13garbage")

    def truncated(path: Path) -> None:
        path.write_bytes(path.read_bytes()[:40])

    def flipped(path: Path) -> None:  # still JSON, but not what was written
        data = json.loads(path.read_text())
        data["overlay"]["telemetry"]["rate_hz"] = 9
        path.write_text(json.dumps(data))

    def empty(path: Path) -> None:
        path.write_bytes(b"")

    return [("garbage", garbage), ("truncated", truncated), ("flipped", flipped), ("empty", empty)]


@pytest.mark.parametrize(("name", "damage"), corrupt_cases(), ids=[c[0] for c in corrupt_cases()])
def test_a_corrupt_layer_falls_back_to_the_previous(tmp_path: Path, name: str, damage) -> None:
    toml = write_toml(tmp_path)
    effective = load_effective(toml, validate=parse_config)
    s1 = accept(effective.state, {"telemetry": {"rate_hz": 2}}, 1)
    effective.store.save(s1)
    effective.store.save(accept(s1, {"telemetry": {"rate_hz": 3}}, 2))
    damage(tmp_path / "state" / "remote-config.json")

    fallback = load_effective(toml, validate=parse_config)
    assert (fallback.version, fallback.source) == (1, "previous")
    assert fallback.config.telemetry.rate_hz == 2
    assert len(fallback.problems) == 1 and fallback.problems[0].startswith("remote-config.json: ")
    assert "remote-config.json.bad" in files(tmp_path / "state")
    # Repaired: the next start is clean and a new push rotates a good layer.
    assert load_effective(toml, validate=parse_config).problems == ()
    fallback.store.save(accept(fallback.state, {"telemetry": {"rate_hz": 4}}, 3))
    assert json.loads((tmp_path / "state" / "remote-config.prev.json").read_text())["version"] == 1


def test_nothing_usable_falls_back_to_the_file_alone(tmp_path: Path) -> None:
    toml = write_toml(tmp_path)
    effective = load_effective(toml, validate=parse_config)
    s1 = accept(effective.state, {"telemetry": {"rate_hz": 2}}, 1)
    effective.store.save(s1)
    effective.store.save(accept(s1, {"telemetry": {"rate_hz": 3}}, 2))
    for name in ("remote-config.json", "remote-config.prev.json"):
        (tmp_path / "state" / name).write_bytes(b"{not json")
    fallback = load_effective(toml, validate=parse_config)
    assert (fallback.version, fallback.source, len(fallback.problems)) == (0, "toml", 2)
    assert fallback.config.telemetry.rate_hz == 1.0
    assert load_effective(toml, validate=parse_config).problems == ()


def test_a_layer_the_card_cannot_read_is_left_alone_and_pushes_wait(tmp_path: Path) -> None:
    """An I/O error is no damage: nothing is set aside or written over, and the highest version the
    layer may hold is unknown, so the worker refuses pushes (tests/test_replay_disk.py has the worker)."""
    toml = write_toml(tmp_path)
    effective = load_effective(toml, validate=parse_config)
    effective.store.save(accept(effective.state, {"telemetry": {"rate_hz": 2}}, 5))
    layer = tmp_path / "state" / "remote-config.json"
    kept = layer.read_bytes()
    layer.unlink()
    layer.mkdir()  # reading it now fails as an I/O error would
    fallback = load_effective(toml, validate=parse_config)
    assert fallback.source == "toml" and fallback.store.unreadable is not None
    assert "cannot read" in fallback.problems[0]
    assert layer.is_dir() and not [f for f in files(tmp_path / "state") if ".bad" in f]
    layer.rmdir()
    layer.write_bytes(kept)
    assert load_effective(toml, validate=parse_config).version == 5


def test_a_second_damaged_layer_never_overwrites_the_first_set_aside(tmp_path: Path) -> None:
    toml = write_toml(tmp_path)
    for body in (b"{first", b"{second"):
        (tmp_path / "state").mkdir(exist_ok=True)
        (tmp_path / "state" / "remote-config.json").write_bytes(body)
        load_effective(toml, validate=parse_config)
    state = tmp_path / "state"
    assert (state / "remote-config.json.bad").read_bytes() == b"{first"
    assert (state / "remote-config.json.bad.1").read_bytes() == b"{second"


def test_a_layer_the_local_file_no_longer_allows_falls_back_but_keeps_its_version(tmp_path: Path) -> None:
    toml = write_toml(tmp_path)
    effective = load_effective(toml, validate=parse_config)
    effective.store.save(accept(effective.state, {"gpio": {"inputs": {"ack": {"pin": 7}}}}, 3))
    # A technician wires the busy button to pin 7 in the local file.
    toml.write_text(toml.read_text() + "[gpio.inputs]\nbusy = { pin = 7 }\n")
    fallback = load_effective(toml, validate=parse_config)
    assert (fallback.version, fallback.source) == (0, "toml")
    assert "does not validate with the local file" in fallback.problems[0]
    assert "pin 7 used by both" in fallback.problems[0]
    # Its version stays used: a replay of push 3 is still refused.
    assert fallback.state.highest_version == 3
    replay = {"id": "r3", "version": 3, "config": {"gpio": {"inputs": {"ack": {"pin": 7}}}}}
    assert not handle_config_set(json.dumps(replay).encode(), fallback.state, NOW, validate=parse_config).result.ok


def test_rollback_restores_the_previous_confirmed_layer(tmp_path: Path) -> None:
    toml = write_toml(tmp_path)
    effective = load_effective(toml, validate=parse_config)
    store = effective.store
    s1 = accept(effective.state, {"telemetry": {"rate_hz": 2}}, 1)
    store.save(s1)
    s2 = accept(s1, {"mqtt": {"host": "broker-x.umps.example"}}, 2)
    assert s2.pending
    store.save(s2)
    s3 = accept(s2, {"panel": {"language": "ar"}}, 3)  # arrives before the guard decides
    store.save(s3)
    assert load_effective(toml, validate=parse_config).state.pending  # a restart re-arms the guard

    restored = store.rollback(s3)
    assert (restored.version, restored.highest_version, restored.pending) == (1, 3, False)
    assert restored.config.mqtt.host == "broker-a.umps.example"
    assert restored.config.telemetry.rate_hz == 2 and restored.config.panel.language == "fr"
    after_restart = load_effective(toml, validate=parse_config)
    assert (after_restart.version, after_restart.state.highest_version) == (1, 3)
    assert not after_restart.state.pending
    retry = {"id": "again", "version": 3, "config": {"mqtt": {"host": "broker-x.umps.example"}}}
    assert not handle_config_set(json.dumps(retry).encode(), after_restart.state, NOW, validate=parse_config).result.ok
    retry["version"] = 4
    assert handle_config_set(json.dumps(retry).encode(), after_restart.state, NOW, validate=parse_config).result.ok


def test_rollback_without_a_previous_layer_returns_to_the_file(tmp_path: Path) -> None:
    toml = write_toml(tmp_path)
    effective = load_effective(toml, validate=parse_config)
    s1 = accept(effective.state, {"mqtt": {"host": "broker-x.umps.example"}}, 1)
    effective.store.save(s1)
    restored = effective.store.rollback(s1)
    assert (restored.version, restored.highest_version) == (0, 1)
    assert restored.config.mqtt.host == "broker-a.umps.example"
    assert load_effective(toml, validate=parse_config).state.highest_version == 1


def test_confirm_clears_pending_on_disk(tmp_path: Path) -> None:
    toml = write_toml(tmp_path)
    effective = load_effective(toml, validate=parse_config)
    s1 = accept(effective.state, {"mqtt": {"host": "broker-x.umps.example"}}, 1)
    effective.store.save(s1)
    confirmed = effective.store.confirm(s1)
    assert not confirmed.pending and not load_effective(toml, validate=parse_config).state.pending
    # Once confirmed, it is what the next dangerous push rolls back to.
    s2 = accept(confirmed, {"mqtt": {"host": "broker-y.umps.example"}}, 2)
    effective.store.save(s2)
    assert effective.store.rollback(s2).config.mqtt.host == "broker-x.umps.example"


def test_an_unreachable_broker_rolls_back_end_to_end(tmp_path: Path) -> None:
    """The sequence the runtime follows, with a fake monotonic clock."""
    toml = write_toml(tmp_path, "[security]\nrollback_timeout_s = 30\n")
    effective = load_effective(toml, validate=parse_config)
    state, store = effective.state, effective.store
    guard = RollbackGuard(state.config.security.rollback_timeout_s)
    mono = 1000.0

    body = {"id": "move-broker", "version": 1, "config": {"mqtt": {"host": "nowhere.invalid"}}}
    outcome = handle_config_set(json.dumps(body).encode(), state, NOW, validate=parse_config)
    assert outcome.state is not None and outcome.change.dangerous
    store.save(outcome.state)  # persist first, then apply
    state = outcome.state
    guard.arm(mono, state.version, state.request_id)

    due = None
    while due is None:  # the link keeps failing; one tick a second
        mono += 1.0
        due = guard.tick(mono)
        assert mono < 1000.0 + 32
    assert (due.version, due.request_id) == (1, "move-broker")
    state = store.rollback(state)
    result = rolled_back_result(due.request_id, due.version, state, guard.timeout_s)
    assert state.config.mqtt.host == "broker-a.umps.example"
    assert result.as_dict()["ok"] is False and result.as_dict()["version"] == 0
    assert "within 30 s" in result.errors[0].msg
    assert load_effective(toml, validate=parse_config).config.mqtt.host == "broker-a.umps.example"
