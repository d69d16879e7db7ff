"""secrets_version: moves when a secret changes (push, rollback, file edit across restarts), never leaks it."""

from __future__ import annotations

import json
from pathlib import Path

from agent.adapters.secrets_version import FILE_NAME, SecretsVersion, peek
from agent.config_validate import parse_config
from agent.core.remote_config import ConfigState, current_message


def config(password: str | None = None, port: int = 1883):
    mqtt = {"port": port, **({"password": password} if password is not None else {})}
    return parse_config({"unit": {"id": "KEN-M-07", "kind": "motorcycle"}, "mqtt": mqtt})


def test_it_counts_changes_of_secrets_only_and_survives_restarts(tmp_path: Path) -> None:
    counter = SecretsVersion(tmp_path)
    assert counter.update(config("pw-1")) == 0  # first run
    assert counter.update(config("pw-1", port=8883)) == 0  # not a secret
    assert counter.update(config("pw-2")) == 1
    assert counter.update(config("pw-2")) == 1
    # A restart with the file edited meanwhile (an installer set a new password).
    again = SecretsVersion(tmp_path)
    assert again.version == 1 and again.update(config("pw-3")) == 2
    assert SecretsVersion(tmp_path).update(config(None)) == 3  # removed: a change too
    assert peek(tmp_path) == 3 and peek(tmp_path / "nowhere") is None


def test_the_password_is_not_in_the_file_nor_guessable_from_it(tmp_path: Path) -> None:
    SecretsVersion(tmp_path).update(config("hunter2"))
    path = tmp_path / FILE_NAME
    stored = path.read_text()
    assert "hunter2" not in stored and path.stat().st_mode & 0o777 == 0o600
    # The fingerprint is keyed by a random key of this unit: another unit's differs.
    other = tmp_path / "other"
    other.mkdir()
    SecretsVersion(other).update(config("hunter2"))
    assert json.loads(stored)["fingerprint"] != json.loads((other / FILE_NAME).read_text())["fingerprint"]


def test_a_damaged_file_starts_again_without_failing(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    assert SecretsVersion(tmp_path).update(config("pw")) == 0
    assert (tmp_path / (FILE_NAME + ".bad")).read_text() == "{not json"  # kept for analysis


def test_a_file_the_card_cannot_read_is_never_written_over(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).mkdir()  # reading it fails as an I/O error would: not a damaged file
    (tmp_path / FILE_NAME / "keep").write_text("x")
    assert SecretsVersion(tmp_path).update(config("pw")) == 0
    assert (tmp_path / FILE_NAME / "keep").exists() and not list(tmp_path.glob("*.bad"))


def test_config_current_carries_it_and_the_hash_does_not_move() -> None:
    a, b = ConfigState.initial(config("pw-1")), ConfigState.initial(config("pw-2"))
    ma, mb = current_message(a, 0), current_message(b, 1)
    assert ma["hash"] == mb["hash"] and (ma["secrets_version"], mb["secrets_version"]) == (0, 1)
    assert "pw-1" not in json.dumps(ma) and "secrets_version" not in current_message(a)


def test_secrets_are_found_by_their_type() -> None:
    assert config("pw").secrets() == {"mqtt.password": "pw"}
    assert config(None).secrets() == {}
