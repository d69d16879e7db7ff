"""What an installer with a laptop reads from `umps-agent`: clear words, strict checks.

Each command runs as a separate process (``python -m agent``), as at the vehicle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.config import STANDARD_BAUD_RATES, ConfigError, ConfigFileError
from agent.config import load_config as _load_config
from agent.config_validate import parse_config

ROOT = Path(__file__).resolve().parents[1]
GOOD = '[unit]\nid = "KEN-C-01"\nkind = "car"\n'


# An installer runs the tool from wherever the laptop's shell is, never from the repository.
ELSEWHERE = Path(tempfile.gettempdir())


def umps(*args: str, env: dict | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if env is None or "RUNTIME_DIRECTORY" not in env:
        full.pop("RUNTIME_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=ELSEWHERE, env=full, input=stdin,
                          capture_output=True, timeout=60)


def load_config(path: Path):
    """The file, validated in this process as `config check` does."""
    return _load_config(path, parse_config)


def problems(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return dict(info.value.problems)


def test_a_quoted_number_is_a_type_error_not_a_port(tmp_path):
    found = problems(tmp_path, GOOD + '[mqtt]\nport = "8883"\n')
    assert "without quotes" in found["mqtt.port"] and '"8883"' in found["mqtt.port"]
    found = problems(tmp_path, GOOD + '[ui]\nsound = "yes"\n')
    assert "ui.sound" in found


@pytest.mark.parametrize("rate", [9601, 10000, 1])
def test_only_standard_baud_rates(tmp_path, rate):
    found = problems(tmp_path, GOOD + f"[gnss]\nbaudrate = {rate}\n")
    assert "standard baud rate" in found["gnss.baudrate"] and "38400" in found["gnss.baudrate"]


def test_every_standard_baud_rate_is_accepted(tmp_path):
    path = tmp_path / "agent.toml"
    for rate in STANDARD_BAUD_RATES:
        path.write_text(GOOD + f"[gnss]\nbaudrate = {rate}\n")
        assert load_config(path).gnss.baudrate == rate


def test_an_unknown_key_gets_the_nearest_known_one(tmp_path):
    found = problems(tmp_path, GOOD + '[gnss]\nbaudrte = 9600\n[mqtt]\nhots = "broker"\nzzz = 1\n')
    assert found["gnss.baudrte"] == "unknown key (did you mean `baudrate`?)"
    assert found["mqtt.hots"] == "unknown key (did you mean `host`?)"
    assert found["mqtt.zzz"] == "unknown key"  # nothing near: no guess


def test_config_check_says_in_words_what_a_pattern_wants(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[unit]\nid = "KEN C 01"\nkind = "car"\n[mqtt]\nprefix = "umps/"\n')
    done = umps("config", "check", str(path))
    err = done.stderr.decode()
    assert done.returncode == 2
    assert 'unit.id: "KEN C 01" is not allowed here' in err and "no spaces" in err, err
    assert 'mqtt.prefix: "umps/" is not allowed here' in err and "no '/' at the start or the end" in err, err
    assert "pattern" not in err and "^[" not in err, err  # no regular expression for a person to decode


def test_every_pattern_of_the_schema_has_its_words():
    import dataclasses
    import typing

    from agent.config import PATTERN_WORDS, AgentConfig, Pattern

    found = set()

    def walk(cls: type) -> None:
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls, include_extras=True)[f.name]
            for meta in getattr(hint, "__metadata__", ()):
                if isinstance(meta, Pattern):
                    found.add(meta.regex)
            inner = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
            if dataclasses.is_dataclass(inner):
                walk(inner)

    walk(AgentConfig)
    assert found and found <= set(PATTERN_WORDS), found - set(PATTERN_WORDS)


def test_an_unterminated_string_is_called_that(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[unit]\nid = "KEN-C-01"\nkind = "car"\nname = "Voiture 01 – Kénitra\n[gnss]\nbaudrate = 9600\n')
    done = umps("config", "check", str(path))
    err = done.stderr.decode()
    assert done.returncode == 2
    assert "line 4: unterminated string" in err and 'name = "Voiture 01' in err, err
    assert "Illegal character" not in err, err
    path.write_text('[unit]\nid = "KEN-C-01"\nkind = "car"\nname = """Voiture\n01\n')
    err = umps("config", "check", str(path)).stderr.decode()
    assert "line 4: unterminated string" in err and "never closed before the end of the file" in err, err


def test_a_missing_file_says_no_such_file(tmp_path):
    with pytest.raises(ConfigFileError) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.reason == "no such file"
    done = umps("config", "check", str(tmp_path / "absent.toml"))
    err = done.stderr.decode()
    assert done.returncode == 2 and "no such file" in err and "invalid configuration" not in err


def test_the_example_lists_every_display_kind():
    from typing import get_args, get_type_hints

    from agent.config import DisplayConfig

    kinds = get_args(get_type_hints(DisplayConfig)["kind"])
    text = (ROOT / "agent.example.toml").read_text()
    section = text[text.index("[display]"):text.index("[security]")]
    for kind in kinds:
        assert f'"{kind}"' in section, f"display kind {kind!r} not in agent.example.toml"


def test_status_and_config_show_find_the_running_agent_without_config(tmp_path):
    config = tmp_path / "unit.toml"
    config.write_text(GOOD + f'[storage]\nstate_dir = "{tmp_path / "state"}"\nruntime_dir = "{tmp_path / "run"}"\n')
    run = tmp_path / "run"
    run.mkdir()
    # What a running agent leaves in its runtime directory (systemd's RUNTIME_DIRECTORY).
    (run / "status.json").write_text(json.dumps({
        "unit": "KEN-C-01", "version": "test", "pid": os.getpid(), "config": str(config), "uptime_s": 12.0,
        "written": time.time(), "link": {"online": True, "broker": "broker:8883"}, "outbox": {}, "gnss": {},
        "status": "available", "seq": 7, "config_version": 0,
    }))
    env = {"RUNTIME_DIRECTORY": str(run)}
    done = umps("status", env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert "KEN-C-01" in done.stdout.decode() and "online to broker:8883" in done.stdout.decode()
    done = umps("config", "show", env=env)
    assert done.returncode == 0, done.stderr.decode()
    shown = json.loads(done.stdout)
    assert shown["config"]["storage"]["runtime_dir"] == str(run)  # the running agent's own file


def test_without_a_running_agent_or_a_config_the_words_say_so(tmp_path):
    env = {"RUNTIME_DIRECTORY": str(tmp_path / "nothing")}
    done = umps("config", "show", env=env)
    err = done.stderr.decode()
    assert done.returncode == 2 and "no running agent found" in err and "--config" in err
    done = umps("status", env=env)
    assert done.returncode == 1 and "not running" in done.stderr.decode()


def test_gnss_decode_warns_when_a_file_holds_no_nmea(tmp_path):
    noise = tmp_path / "capture.bin"
    noise.write_bytes(bytes(range(256)) * 8)
    done = umps("gnss", "decode", str(noise))
    assert done.returncode == 0 and "no NMEA sentence at all" in done.stderr.decode()
    done = umps("gnss", "decode", "-", stdin=b"$GPGGA,,,,,,0,00,,,M,,M,,*66\r\n")
    assert "no NMEA sentence" not in done.stderr.decode()
