"""The TOML config: required keys, defaults, field-level errors, the CLI check."""

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError, load_config
from agent.config_validate import parse_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "agent.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_is_valid_and_complete():
    config = load_config(EXAMPLE, validate=parse_config)
    assert config.unit.id == "KEN-M-07"
    assert config.unit.kind == "motorcycle"
    assert config.gnss.port == "/dev/serial0" and config.gnss.baudrate == 9600
    assert config.mqtt.host and config.mqtt.port == 8883
    assert config.telemetry.rate_hz == 1.0
    assert config.storage.state_dir == Path("/var/lib/umps-agent")


def test_minimal_file_gets_defaults(tmp_path):
    config = load_config(write(tmp_path, '[unit]\nid = "KEN-C-01"\nkind = "car"\n'), validate=parse_config)
    assert config.telemetry.rate_hz == 1.0
    assert config.mqtt.port == 1883 and config.mqtt.prefix == "umps"
    assert config.ui_enabled and config.display_kind == "none"
    assert config.status_buttons == ["available", "en_route", "on_scene", "busy", "out_of_service"]


def test_models_are_frozen():
    config = parse_config({"unit": {"id": "U1", "kind": "car"}})
    with pytest.raises(Exception):
        config.unit.id = "U2"  # type: ignore[misc]


def test_every_problem_reported_with_key_path(tmp_path):
    path = write(
        tmp_path,
        '[unit]\nid = "bad/id"\nkind = "bicycle"\n'
        "[gnss]\nbaudrate = -1\nspeed = 3\n"
        "[telemetry]\nrate_hz = 0\n"
        "[colour]\nx = 1\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, validate=parse_config)
    locs = {loc for loc, _ in err.value.problems}
    assert {"unit.id", "unit.kind", "gnss.baudrate", "gnss.speed", "telemetry.rate_hz", "colour"} <= locs
    assert dict(err.value.problems)["gnss.speed"] == "unknown key"


def test_missing_unit_section_and_toml_syntax(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_config({})
    assert err.value.problems == [("unit", "Field required")]
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[unit\nid = 1\n"), validate=parse_config)
    assert "TOML syntax" in err.value.problems[0][1]


def test_gpio_pin_clash_and_unknown_input():
    with pytest.raises(ConfigError) as err:
        parse_config({"unit": {"id": "U1", "kind": "car"},
                      "gpio": {"inputs": {"ack": {"pin": 5}, "avalable": {"pin": 6}}, "outputs": {"link": {"pin": 5}}}})
    text = str(err.value)
    assert "avalable" in text


def test_redacted_hides_password_and_the_hash_leaves_secrets_out():
    a = parse_config({"unit": {"id": "U1", "kind": "car"}, "mqtt": {"password": "s3cret"}})
    b = parse_config({"unit": {"id": "U1", "kind": "car"}, "mqtt": {"password": "other"}})
    none = parse_config({"unit": {"id": "U1", "kind": "car"}})
    c = parse_config({"unit": {"id": "U1", "kind": "car"}, "mqtt": {"password": "s3cret", "port": 1884}})
    assert a.redacted()["mqtt"]["password"] == "***"
    assert "s3cret" not in str(a.redacted())
    # Changing only a secret leaves the published hash as it was: a reader of config/current
    # cannot test password guesses against it offline.
    assert a.digest() == b.digest() == none.digest()  # set, changed or removed: the hash stays
    assert c.digest() != a.digest()
    guess = dict(a.redacted(), mqtt={**a.redacted()["mqtt"], "password": "s3cret"})
    for candidate in (a.plain(), guess):
        blob = json.dumps(candidate, sort_keys=True, separators=(",", ":")).encode()
        assert hashlib.sha256(blob).hexdigest()[:16] != a.digest()


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, cwd=ROOT, input=stdin, timeout=60)


def test_cli_config_check_ok_and_errors(tmp_path):
    ok = run_cli("config", "check", str(EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    assert "KEN-M-07" in ok.stdout
    bad = write(tmp_path, '[unit]\nid = "x"\nkind = "boat"\n[mqtt]\nport = 70000\nhots = "a"\n')
    res = run_cli("config", "check", str(bad))
    assert res.returncode == 2
    assert "unit.kind:" in res.stderr and "mqtt.port:" in res.stderr and "mqtt.hots: unknown key" in res.stderr


def test_every_section_is_in_the_example():
    text = EXAMPLE.read_text()
    for name in (f.name for f in dataclasses.fields(AgentConfig)):
        assert f"[{name}]" in text, f"section [{name}] missing from agent.example.toml"
