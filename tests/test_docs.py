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

JSON Schema validation is the ``jsonschema`` package's (draft-07); every
keyword the document uses must be one draft-07 knows, since a validator
ignores the others and a misspelt keyword would let anything through.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
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


# ------------------------------------------- JSON Schema (the jsonschema package)


# Validators ignore a keyword their draft does not know, so a misspelt one ("maxLenght") would let
# anything through: every keyword the document's schemas use is one draft-07's meta-schema names,
# or an AsyncAPI specification extension (``x-...``: annotations, such as the CBOR field numbers).
DRAFT7_KEYWORDS = frozenset(jsonschema.Draft7Validator.META_SCHEMA["properties"])
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SUBSCHEMAS = ("additionalProperties", "items", "not", "if", "then", "else", "contains", "propertyNames")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "items")


def unknown_keywords(schema: Any, path: str = "$") -> list[str]:
    """``path: keyword`` for every keyword of ``schema`` and its subschemas that draft-07 does not know."""
    if not isinstance(schema, dict):
        return []
    found = [f"{path}: {key}" for key in schema if key not in DRAFT7_KEYWORDS and not key.startswith("x-")]
    for key in _SUBSCHEMA_MAPS:
        for name, sub in (schema.get(key) or {}).items():
            found += unknown_keywords(sub, f"{path}.{key}.{name}")
    for key in _SUBSCHEMAS:
        found += unknown_keywords(schema.get(key), f"{path}.{key}")
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            for i, sub in enumerate(schema[key]):
                found += unknown_keywords(sub, f"{path}.{key}[{i}]")
    return found


def schema_errors(schema: dict[str, Any], value: Any, doc: dict[str, Any]) -> list[str]:
    """Draft-07 validation of ``value`` against ``schema`` (a schema of ``doc``, or a ``$ref`` into it)."""
    validator = jsonschema.Draft7Validator({**doc, "$ref": _ref_of(doc, schema)})
    return [f"{'.'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in validator.iter_errors(value)]


def assert_valid(doc: dict[str, Any], topic: str, payload: bytes | dict[str, Any]) -> None:
    value = json.loads(payload) if isinstance(payload, bytes) else payload
    errors = schema_errors(_schema_for(doc, topic), value, doc)
    assert not errors, f"{topic}: {value}\n" + "\n".join(errors)


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


def test_every_schema_keyword_is_one_draft_07_knows(doc):
    # The schemas the JSON payloads are validated against, through every $ref (the compact
    # CBOR messages are checked by tests/test_telemetry_cbor.py, not by a JSON validator).
    pending = [f"#/components/messages/{name}/payload" for name, message in doc["components"]["messages"].items()
               if message["contentType"] == "application/json"]
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        schema = _resolve(doc, ref)
        jsonschema.Draft7Validator.check_schema(schema)
        assert unknown_keywords(schema, ref) == []
        pending += _refs(schema)
    assert len(seen) >= 15
    # The check itself sees a misspelt keyword, however deep.
    typo = {"type": "object", "properties": {"id": {"anyOf": [{"type": "string", "maxLenght": 3}]}}}
    assert unknown_keywords(typo) == ["$.properties.id.anyOf[0]: maxLenght"]


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
