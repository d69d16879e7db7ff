"""The documented MQTT contract matches the code.

``docs/mqtt-api.md`` (prose) and ``docs/asyncapi.json`` (AsyncAPI 3.0) describe
every topic under ``<prefix>/<unit>/``. These tests hold them to the code and
to each other:

* the AsyncAPI document parses, every local ``$ref`` resolves, and every
  channel address carries the unit id parameter;
* every topic the unit subscribes to (``SUBSCRIPTIONS``) and every topic the
  code publishes is in both documents, with the same direction, QoS and
  retain flag, and the same outbox lane as the code uses;
* the broker's ACL lets a unit write exactly the topics documented as sent
  and read exactly those documented as received;
* payloads built by the code (``agent.core.unit``, ``agent.core.remote_config``,
  the link's birth message) validate against the AsyncAPI schemas, and the
  inbound examples of the document are accepted by the code's own parsers.

JSON Schema validation uses a small draft-07 subset validator written here
(it refuses any keyword it does not know, so a schema cannot pass by being
misunderstood), and also ``jsonschema`` when that package is installed.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from agent.adapters.alarm_ids import random_alarm_id
from agent.adapters.mqtt import OFFLINE_PAYLOAD, birth_payload, offline_payload
from agent.adapters.uplink import BACKLOG_SUFFIX
from agent.config_validate import parse_config
from agent.core import remote_config as rc
from agent.core.remote_command import parse_command
from agent.core.replay import RecentIds
from agent.core.events import ButtonPressed, Fix, FixReceived, LinkUp, MessageReceived, SirenChanged, Tick
from agent.core.publish import TELEMETRY_LANES, Publish
from agent.core.unit import SUBSCRIPTIONS, Now, Unit

ROOT = Path(__file__).resolve().parents[1]
ASYNCAPI = ROOT / "docs" / "asyncapi.json"
MQTT_API = ROOT / "docs" / "mqtt-api.md"
ACL = ROOT / "firmware-config" / "mosquitto" / "acl"


# ------------------------------------------------------------------ loading


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads(ASYNCAPI.read_text(encoding="utf-8"))


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _relative(address: str) -> str:
    prefix = "{prefix}/{unitId}/"
    assert address.startswith(prefix), address
    return address[len(prefix) :]


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Relative topic -> its operation (one per channel)."""
    out = {}
    for op in doc["operations"].values():
        channel = _resolve(doc, op["channel"]["$ref"])
        topic = _relative(channel["address"])
        assert topic not in out, f"two operations on {topic}"
        out[topic] = op
    return out


def _schema_for(doc: dict[str, Any], topic: str) -> dict[str, Any]:
    op = _operations(doc)[topic]
    message_ref = op["messages"][0]  # the JSON message; the compact CBOR ones follow
    message = _resolve(doc, message_ref["$ref"])
    if "$ref" in message:
        message = _resolve(doc, message["$ref"])
    return message["payload"]


def _md_topics() -> dict[str, dict[str, str]]:
    """The rows of the Topics table in docs/mqtt-api.md: topic -> direction, qos, retained, lane."""
    text = MQTT_API.read_text(encoding="utf-8")
    section = text.split("\n## Topics\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([a-z/]+)`", cells[0]) if len(cells) >= 5 else None
        if match:
            rows[match.group(1)] = {"direction": cells[1], "qos": cells[2], "retained": cells[3], "lane": cells[4]}
    return rows


# ---------------------------------------------------- a small JSON Schema


_KNOWN = {
    "type", "enum", "const", "required", "properties", "additionalProperties", "items", "minimum",
    "maximum", "minLength", "maxLength", "pattern", "oneOf", "anyOf", "allOf", "if", "then", "else",
    "$ref", "format", "description", "title", "examples", "default",
}


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer()
        )
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    raise AssertionError(f"unknown JSON type {name!r}")


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (_is_type(a, "number") and _is_type(b, "number") and a == b)


def schema_errors(schema: Any, value: Any, root: dict[str, Any], path: str = "$") -> list[str]:
    """Draft-07 validation for the keywords in ``_KNOWN``; local ``$ref`` against ``root``."""
    if schema is True:
        return []
    if schema is False:
        return [f"{path}: nothing is allowed here"]
    unknown = set(schema) - _KNOWN
    assert not unknown, f"schema keyword(s) this validator does not know: {sorted(unknown)}"
    if "$ref" in schema:  # draft-07: siblings of $ref are ignored
        return schema_errors(_resolve(root, schema["$ref"]), value, root, path)
    errors: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return [f"{path}: {value!r} is not of type {types}"]
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{path}: {value!r} is not {schema['const']!r}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}: {name!r} is required")
        props = schema.get("properties", {})
        for name, item in value.items():
            if name in props:
                errors += schema_errors(props[name], item, root, f"{path}.{name}")
            elif "additionalProperties" in schema:
                errors += schema_errors(schema["additionalProperties"], item, root, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(schema["items"], item, root, f"{path}[{i}]")
    for sub in schema.get("allOf", []):
        errors += schema_errors(sub, value, root, path)
    if "anyOf" in schema and all(schema_errors(s, value, root, path) for s in schema["anyOf"]):
        errors.append(f"{path}: matches none of anyOf")
    if "oneOf" in schema:
        matching = sum(not schema_errors(s, value, root, path) for s in schema["oneOf"])
        if matching != 1:
            errors.append(f"{path}: matches {matching} of oneOf, not exactly 1")
    if "if" in schema:
        branch = "then" if not schema_errors(schema["if"], value, root, path) else "else"
        if branch in schema:
            errors += schema_errors(schema[branch], value, root, path)
    return errors


def assert_valid(doc: dict[str, Any], topic: str, payload: bytes | dict[str, Any]) -> None:
    value = json.loads(payload) if isinstance(payload, bytes) else payload
    schema = _schema_for(doc, topic)
    errors = schema_errors(schema, value, doc)
    assert not errors, f"{topic}: {value}\n" + "\n".join(errors)
    try:
        import jsonschema
    except ImportError:
        return
    validator = jsonschema.Draft7Validator({**doc, "$ref": _ref_of(doc, schema)})
    problems = [e.message for e in validator.iter_errors(value)]
    assert not problems, f"{topic} (jsonschema): {value}\n" + "\n".join(problems)


def _ref_of(doc: dict[str, Any], schema: dict[str, Any]) -> str:
    return schema["$ref"] if "$ref" in schema else "#/components/schemas/" + next(
        name for name, s in doc["components"]["schemas"].items() if s is schema
    )


# ------------------------------------------------ payloads from the code


T0 = dt.datetime(2024, 3, 1, 10, 20, 30, 500000, tzinfo=dt.timezone.utc)
CALL = {
    "id": "C-2024-0042", "action": "new", "priority": 1, "nature": "حادثة سير", "address": "Avenue Mohammed V, Kénitra",
    "location": {"lat": 34.261, "lon": -6.5802}, "created": "2024-03-01T10:20:00Z",
}


def _now(mono: float, synced: bool = True) -> Now:
    return Now(mono, T0 + dt.timedelta(seconds=mono - 100), synced)


@pytest.fixture(scope="module")
def published() -> list[Publish]:
    """What the core publishes through a patrol: a call worked through, rejections, an alarm."""
    config = parse_config({"unit": {"id": "KEN-M-07", "kind": "car"}})
    unit = Unit(config, next_seq=1, now=_now(100), alarm_ids=random_alarm_id)
    fix = Fix(mode=3, time=dt.time(10, 20, 30, 500000), date=dt.date(2024, 3, 1), lat=34.26101, lon=-6.58021,
              alt=12.5, speed=13.2, track=271.3, hdop=0.9, sats=11)
    out: list[Any] = []
    # Before any fix, on an unsynchronised clock.
    out += unit.handle(Tick(101.3), _now(101.3, synced=False))
    out += unit.handle(LinkUp("broker", 101.4), _now(101.4))
    out += unit.handle(FixReceived(fix, 102.0), _now(102.0))
    out += unit.handle(MessageReceived("call", json.dumps(CALL).encode(), 102.1), _now(102.1))
    # The crew answers once the call has been on the screen for READ_S (1 s).
    for mono, name in ((103.2, "ack"), (103.3, "en_route"), (103.4, "on_scene")):
        out += unit.handle(ButtonPressed(name, mono), _now(mono))
    out += unit.handle(SirenChanged(True, 103.5), _now(103.5))
    second = {**CALL, "id": "C-2024-0043", "priority": 3}
    out += unit.handle(MessageReceived("call", json.dumps(second).encode(), 103.6), _now(103.6))
    out += unit.handle(ButtonPressed("decline", 104.7), _now(104.7))
    for bad in (b"\xff\xfe", b"[1, 2]", b'{"id": "C-9", "action": "new", "priority": 5}', b"x" * 20000):
        out += unit.handle(MessageReceived("call", bad, 104.8), _now(104.8))
    # An alarm: raised, cancelled in its window; raised again, activated, acknowledged, cleared.
    out += unit.handle(ButtonPressed("emergency", 105.0), _now(105.0))
    out += unit.handle(Tick(107.1), _now(107.1))
    out += unit.handle(ButtonPressed("ack", 107.5), _now(107.5))
    out += unit.handle(ButtonPressed("emergency", 108.0), _now(108.0))
    out += unit.handle(Tick(110.1), _now(110.1))
    out += unit.handle(Tick(115.2), _now(115.2))  # fix now stale: mode 1, last position kept
    named = json.dumps({"id": unit.emergency.alarm_id}).encode()  # dispatch names the second alarm
    out += unit.handle(MessageReceived("alarm/ack", named, 115.3), _now(115.3))
    out += unit.handle(MessageReceived("alarm/clear", b"", 115.4), _now(115.4))
    out += unit.handle(ButtonPressed("available", 115.5), _now(115.5))
    return [item for item in out if isinstance(item, Publish)]


def _payloads(published: list[Publish], topic: str) -> list[dict[str, Any]]:
    return [json.loads(p.payload) for p in published if p.topic == topic]


# ------------------------------------------------------------------ tests


def test_asyncapi_document_parses_and_every_reference_resolves(doc):
    assert doc["asyncapi"] == "3.0.0"
    for ref in _refs(doc):
        _resolve(doc, ref)
    for name, channel in doc["channels"].items():
        assert "{unitId}" in channel["address"], name
        assert set(re.findall(r"\{(\w+)\}", channel["address"])) == set(channel["parameters"]), name
    for op in doc["operations"].values():
        assert op["action"] in ("send", "receive")
        for message in op["messages"]:
            assert message["$ref"].startswith(op["channel"]["$ref"] + "/messages/")


def test_the_scenario_exercises_every_message_the_core_builds(published):
    states = {p["state"] for p in _payloads(published, "alarm")}
    assert states == {"pending", "active", "acknowledged", "cancelled", "cleared"}
    responses = {p["response"] for p in _payloads(published, "call/response")}
    assert responses == {"received", "accepted", "en_route", "on_scene", "declined", "cleared"}
    assert len(_payloads(published, "call/rejected")) == 4
    assert {p["time_source"] for p in _payloads(published, "telemetry")} >= {"system", "system_unsynced"}


def _code_topics(published: list[Publish]) -> set[str]:
    """Topics the code publishes: from the core's run, the link's own, and the backlog suffix."""
    topics = {p.topic for p in published}
    topics |= {p.topic + BACKLOG_SUFFIX for p in published if p.lane in TELEMETRY_LANES}
    # Literal topics in the source: Publish("x", ...), self._message("x", ...), base + "x".
    for path in (ROOT / "agent").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                first = node.args[0] if node.args else None
                if name in ("Publish", "_message") and isinstance(first, ast.Constant) and isinstance(first.value, str):
                    topics.add(first.value)
                if (
                    name in ("publish", "will_set")
                    and isinstance(first, ast.BinOp)
                    and isinstance(first.right, ast.Constant)
                    and getattr(first.left, "attr", "") == "_base"
                ):
                    topics.add(first.right.value)
    return topics


def test_every_topic_of_the_code_is_documented(doc, published):
    operations = _operations(doc)
    md = _md_topics()
    subscribed = set(SUBSCRIPTIONS)
    sent = _code_topics(published)
    assert {"telemetry", "telemetry/backlog", "status", "online", "alarm", "call/response", "call/rejected"} <= sent
    for topic in subscribed:
        assert topic in md, f"{topic} missing from docs/mqtt-api.md"
        assert topic in operations and operations[topic]["action"] == "receive", f"{topic}: not a receive operation"
    for topic in sent:
        assert topic in md, f"{topic} missing from docs/mqtt-api.md"
        assert topic in operations and operations[topic]["action"] == "send", f"{topic}: not a send operation"
    # The unit receives exactly what it subscribes to.
    assert {t for t, op in operations.items() if op["action"] == "receive"} == subscribed


def test_markdown_table_and_asyncapi_agree(doc):
    operations = _operations(doc)
    md = _md_topics()
    assert set(md) == set(operations)
    for topic, row in md.items():
        op = operations[topic]
        binding = op["bindings"]["mqtt"]
        assert row["direction"].startswith("unit") == (op["action"] == "send"), topic
        assert row["qos"] == str(binding["qos"]), topic
        assert row["retained"] == ("yes" if binding["retain"] else "no"), topic
        if op["action"] == "send":
            lane = op["x-outbox-lane"]
            assert (row["lane"] == lane) if lane else row["lane"].startswith("(not queued"), topic
        else:
            assert row["lane"] == "", topic
        assert f"`{topic}`" in MQTT_API.read_text(encoding="utf-8")


def test_code_sends_with_the_documented_qos_retain_and_lane(doc, published):
    operations = _operations(doc)
    for p in published:
        binding = operations[p.topic]["bindings"]["mqtt"]
        assert (p.qos, p.retain) == (binding["qos"], binding["retain"]), p.topic
        assert p.lane.name.lower() == operations[p.topic]["x-outbox-lane"], p.topic
    assert operations["online"]["x-outbox-lane"] is None


def test_broker_acl_grants_a_unit_exactly_the_documented_topics(doc):
    writes, reads = set(), set()
    for line in ACL.read_text().splitlines():
        match = re.fullmatch(r"pattern (read|write|readwrite) umps/%u/(\S+)", line.strip())
        if match:
            (writes if match.group(1) == "write" else reads).add(match.group(2))
    operations = _operations(doc)
    assert writes == {t for t, op in operations.items() if op["action"] == "send"}
    assert reads == {t for t, op in operations.items() if op["action"] == "receive"}


@pytest.mark.parametrize(
    "topic", ["telemetry", "status", "alarm", "call/response", "call/rejected"]
)
def test_core_payloads_match_the_schemas(doc, published, topic):
    payloads = _payloads(published, topic)
    assert payloads, f"the scenario published nothing on {topic}"
    for payload in payloads:
        assert_valid(doc, topic, payload)
        if topic == "telemetry":
            assert_valid(doc, "telemetry/backlog", payload)


def test_remote_config_and_link_payloads_match_the_schemas(doc):
    config = parse_config({"unit": {"id": "KEN-M-07", "kind": "motorcycle"}, "mqtt": {"password": "secret"}})
    state = rc.ConfigState.initial(config)
    ok = rc.handle_config_set(b'{"id": "cfg-7", "version": 7, "config": {"telemetry": {"rate_hz": 2}}}', state, T0, validate=parse_config)
    assert ok.accepted
    for payload in (
        b"\xff",
        b'{"id": "cfg-8", "version": 8, "config": {"telemetry": {"rate_hz": 20, "speed": 1}}}',
        b'{"id": "cfg-9", "version": 0, "config": {}}',
    ):
        refused = rc.handle_config_set(payload, state, T0, validate=parse_config)
        assert not refused.result.ok
        assert_valid(doc, "config/result", refused.result.to_json())
    assert_valid(doc, "config/result", ok.result.to_json())
    assert ok.state is not None
    rolled = rc.rolled_back_result("cfg-7", 7, state, 120.0)
    assert_valid(doc, "config/result", rolled.to_json())
    for current in (rc.current_message(state), rc.current_message(ok.state)):
        assert_valid(doc, "config/current", current)
        assert current["config"]["mqtt"]["password"] == "***"

    recent = RecentIds()
    run = parse_command(b'{"id": "cmd-51", "command": "report_position"}', config, T0, recent)
    assert run.command is not None
    assert_valid(doc, "cmd/result", run.command.done().to_json())
    for payload in (b"[]", b'{"id": "cmd-52", "command": "reboot"}', b'{"id": "cmd-51", "command": "report_position"}'):
        refused_cmd = parse_command(payload, config, T0, recent)
        assert refused_cmd.rejected is not None
        assert_valid(doc, "cmd/result", refused_cmd.rejected.to_json())

    for seq_gap in (None, {"from": 21, "to": 3609}):
        birth = birth_payload(agent_version="0.1.0", config_version=0, config_hash=config.digest(),
                              ts="2024-03-01T10:20:29.870Z", seq_start=3610, seq_gap=seq_gap)
        assert_valid(doc, "online", birth)
    assert_valid(doc, "online", OFFLINE_PAYLOAD)
    for reason in ("power", "ignition"):
        assert_valid(doc, "online", offline_payload(reason))


def test_document_examples_match_their_schemas(doc):
    seen = 0
    for name, message in doc["components"]["messages"].items():
        if message["contentType"] != "application/json":
            continue  # compact telemetry: tests/test_telemetry_cbor.py checks its examples
        topic = next(t for t, op in _operations(doc).items() if op["messages"][0]["$ref"].endswith("/" + name))
        for example in message.get("examples", []):
            assert_valid(doc, topic, example["payload"])
            seen += 1
    assert seen >= 15


def test_inbound_examples_are_accepted_by_the_unit(doc):
    config = parse_config({"unit": {"id": "KEN-M-07", "kind": "car"}})
    examples = {
        topic: [e["payload"] for e in _resolve(doc, op["messages"][0]["$ref"]).get("examples", [])]
        for topic, op in _operations(doc).items()
        if op["action"] == "receive"
    }
    for call in examples["call"]:
        _parse_call(call)
    for request in examples["config/set"]:
        outcome = rc.handle_config_set(json.dumps(request).encode(), rc.ConfigState.initial(config), T0, validate=parse_config)
        assert outcome.result.ok, outcome.result
    for request in examples["cmd"]:
        assert parse_command(json.dumps(request).encode(), config, T0, RecentIds()).command is not None
    for ack in examples["alarm/ack"] + examples["alarm/clear"]:
        assert isinstance(ack.get("id"), int)


def _parse_call(call: dict[str, Any]) -> None:
    from agent.core.dispatch import Rejected, parse_call

    parsed = parse_call(json.dumps(call).encode())
    assert not isinstance(parsed, Rejected), parsed


@pytest.mark.parametrize(
    "call",
    [
        {"action": "new"},
        {"id": "C-1", "action": "new", "priority": 1, "nature": "x", "address": "y"},  # no created
        {"id": "C-1", "action": "new", "priority": 4, "nature": "x", "address": "y", "created": "2024-03-01T10:20:00Z"},
        {"id": "C 1", "action": "cancel"},
        {"id": "C-1", "action": "close"},
        {**CALL, "location": {"lat": 91, "lon": 0}},
        {**CALL, "nature": ""},
    ],
)
def test_calls_the_schema_refuses_are_refused_by_the_unit(doc, call):
    from agent.core.dispatch import Rejected, parse_call

    assert schema_errors(_schema_for(doc, "call"), call, doc)
    assert isinstance(parse_call(json.dumps(call).encode()), Rejected)
