"""Config validation in a child process (agent.adapters.config_child): same answers as in process."""

import sys

import pytest

from agent.adapters.config_child import validate_in_child
from agent.config import ConfigError
from agent.config_validate import parse_config

GOOD = {"unit": {"id": "KEN-M-07", "kind": "motorcycle"}, "mqtt": {"password": "s3cret", "tls": {"enabled": True}},
        "storage": {"state_dir": "/tmp/umps-state"}, "gpio": {"inputs": {"ack": {"pin": 4, "pull_up": False}}}}
BAD = {"unit": {"id": "a b", "kind": "van"}, "gnss": {"speed": 3}, "telemetry": {"rate_hz": 50}}


def test_a_good_config_comes_back_equal_to_the_in_process_one():
    config = validate_in_child(GOOD, "agent.toml")
    assert config == parse_config(GOOD)
    assert config.mqtt.password.get_secret_value() == "s3cret"
    assert config.digest() == parse_config(GOOD).digest()


def test_problems_come_back_as_in_process():
    with pytest.raises(ConfigError) as here:
        parse_config(BAD, "agent.toml")
    with pytest.raises(ConfigError) as child:
        validate_in_child(BAD, "agent.toml")
    assert child.value.source == "agent.toml"
    assert child.value.problems == here.value.problems
    assert ("gnss.speed", "unknown key") in child.value.problems


def test_strict_mode_reaches_the_child():
    pushed = {"unit": {"id": "U1", "kind": "car"}, "mqtt": {"port": "1883"}}
    assert validate_in_child(pushed).mqtt.port == 1883
    with pytest.raises(ConfigError) as err:
        validate_in_child(pushed, "remote", strict=True)
    assert [loc for loc, _ in err.value.problems] == ["mqtt.port"]


def test_a_child_that_cannot_run_is_a_config_error(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    with pytest.raises(ConfigError) as err:
        validate_in_child(GOOD, "remote")
    assert err.value.problems[0][0] == "" and "could not run" in err.value.problems[0][1]


@pytest.mark.parametrize("program", ["/bin/false", "/bin/true"])  # exits 1; exits 0 saying nothing
def test_a_child_that_fails_or_answers_nothing_is_a_config_error(monkeypatch, program):
    monkeypatch.setattr(sys, "executable", program)
    with pytest.raises(ConfigError) as err:
        validate_in_child(GOOD, "remote")
    assert err.value.problems[0][0] == "" and "validator failed" in err.value.problems[0][1]
