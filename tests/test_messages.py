"""The message models are the contract: docs/asyncapi.json is generated from them.

* the schemas in the document are exactly those the models generate (edit the
  model, then ``python -m agent.contract_tools --write docs/asyncapi.json``);
* the tool finds a stale document and rewrites it;
* what the model accepts, the generated schema accepts, and the other way round.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest

from agent.core import messages

ROOT = Path(__file__).resolve().parents[1]
ASYNCAPI = ROOT / "docs" / "asyncapi.json"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads(ASYNCAPI.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(messages.SCHEMAS))
def test_the_document_holds_the_schema_its_model_generates(doc, name):
    assert doc["components"]["schemas"].get(name) == messages.schemas()[name], (
        f"docs/asyncapi.json's {name} differs from its model: run python -m agent.contract_tools --write docs/asyncapi.json"
    )


def test_the_document_is_written_as_the_tool_writes_it():
    text = ASYNCAPI.read_text(encoding="utf-8")
    assert messages.dumps_document(messages.document_with_schemas(json.loads(text))) == text


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.contract_tools", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_the_tool_finds_a_stale_document_and_rewrites_it(tmp_path, doc):
    stale = json.loads(json.dumps(doc))
    stale["components"]["schemas"]["Call"]["properties"]["code"]["maxLength"] = 99
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(stale, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    checked = _tool("--check", str(path))
    assert checked.returncode == 1 and "--write" in checked.stderr
    assert _tool("--write", str(path)).returncode == 0
    assert path.read_text(encoding="utf-8") == ASYNCAPI.read_text(encoding="utf-8")
    assert _tool("--check", str(path)).returncode == 0


GOOD = {"id": "C-7", "action": "new", "priority": 2, "nature": "rixe", "address": "Rue 5", "created": "2024-03-01T10:20:00Z"}


@pytest.mark.parametrize(
    "call, accepted",
    [
        (GOOD, True),
        ({"id": "C-7", "action": "update", "priority": None, "code": None}, True),  # null is the same as absent
        ({**GOOD, "priority": None}, False),  # ... so a new call without it is not a full call
        ({"id": "C-7", "action": "cancel"}, True),
        ({"id": "C-7", "action": "update", "details": "x" * 4000}, True),
        ({**GOOD, "location": {"lat": -90, "lon": 180}, "unknown": [1]}, True),
        ({**GOOD, "sig": "AAAA", "expires": "2024-03-01T10:25:00Z"}, True),
        ({**GOOD, "priority": 0}, False),
        ({**GOOD, "priority": "1"}, False),
        ({**GOOD, "nature": ""}, False),
        ({**GOOD, "nature": 3}, False),
        ({**GOOD, "code": "c" * 25}, False),
        ({**GOOD, "address_short": "a" * 61}, False),
        ({**GOOD, "details": "d" * 4001}, False),
        ({**GOOD, "location": {"lat": 0}}, False),
        ({**GOOD, "location": {"lat": 0, "lon": 180.5}}, False),
        ({**GOOD, "location": "34,-6"}, False),
        ({**GOOD, "id": "-C"}, False),
        ({**GOOD, "id": "C" * 65}, False),
        ({**GOOD, "action": "close"}, False),
        ({key: value for key, value in GOOD.items() if key != "address"}, False),
        ({"action": "cancel"}, False),
    ],
)
def test_the_call_model_and_its_generated_schema_agree(doc, call, accepted):
    model = messages.validate_call(call)
    if isinstance(model, messages.CallMessage) and call["action"] == "new":
        model = model.missing_for_new() or model  # the if/then of the schema
    validator = jsonschema.Draft7Validator({**doc, "$ref": "#/components/schemas/Call"})
    schema_problems = [e.message for e in validator.iter_errors(call)]
    assert isinstance(model, messages.CallMessage) == accepted, model
    assert (not schema_problems) == accepted, schema_problems


def test_every_problem_is_named_by_its_field_in_model_order():
    assert messages.validate_call({"action": "x", "priority": 7, "location": {"lon": 0}, "created": 5}) == [
        "id: is required",
        'action: must be "new", "update" or "cancel"',
        "priority: must be 1, 2 or 3 (1 = most urgent)",
        "location.lat: is required",
        "created: must be an ISO 8601 date and time with a time zone (e.g. 2024-03-01T10:20:30Z)",
    ]


def test_signature_members_are_documented_but_left_to_the_signed_dispatch_checks():
    model = messages.validate_call({**GOOD, "sig": 5, "expires": []})
    assert isinstance(model, messages.CallMessage)
    assert "sig" not in model.model_dump() and "expires" not in model.model_dump()


ALARM = "8f14e45f-ceea-4e7a-9b3c-1d2e3f405a6b"


@pytest.mark.parametrize(
    "ref, accepted",
    # An alarm id is a UUID, read in either case (the unit writes it in lower case); numbered ids are gone.
    [({}, True), ({"id": None}, True), ({"id": ALARM, "other": "x"}, True), ({"id": ALARM.upper()}, True),
     ({"id": 3}, False), ({"id": 0}, False), ({"id": True}, False), ({"id": "2"}, False),
     ({"id": ALARM[:-1]}, False), ({"id": ALARM + "0"}, False), ([], False), ("2", False)],
)
def test_the_alarm_ref_model_and_its_generated_schema_agree(doc, ref, accepted):
    validator = jsonschema.Draft7Validator({**doc, "$ref": "#/components/schemas/AlarmRef"})
    assert isinstance(messages.validate_alarm_ref(ref), messages.AlarmRef) == accepted
    assert validator.is_valid(ref) == accepted


def test_an_outbound_model_refuses_what_its_schema_refuses(doc):
    sent = messages.CallRejected(id=None, error="not JSON", ts="2024-03-01T10:20:31.900Z", time_source="gnss").to_json()
    assert sent == {"id": None, "error": "not JSON", "ts": "2024-03-01T10:20:31.900Z", "time_source": "gnss"}
    assert jsonschema.Draft7Validator({**doc, "$ref": "#/components/schemas/CallRejected"}).is_valid(sent)
    for wrong in ({"error": ""}, {"ts": "2024-03-01 10:20:31"}, {"time_source": "ntp"}, {"id": "C" * 65}):
        with pytest.raises(ValueError):
            messages.CallRejected(**{**sent, **wrong})


@pytest.mark.parametrize(
    "name, model, body, accepted",
    [
        ("ConfigSet", messages.ConfigSet, {"id": "r1", "version": 1, "config": {}}, True),
        ("ConfigSet", messages.ConfigSet, {"id": "r1", "version": 1, "config": {}, "expires": "2025-03-01T12:00:00Z", "sig": "AA"}, True),
        ("ConfigSet", messages.ConfigSet, {"id": "r1", "version": 0, "config": {}}, False),
        ("ConfigSet", messages.ConfigSet, {"id": "r1", "version": 2**53, "config": {}}, False),
        ("ConfigSet", messages.ConfigSet, {"id": "", "version": 1, "config": {}}, False),
        ("ConfigSet", messages.ConfigSet, {"id": "r" * 129, "version": 1, "config": {}}, False),
        ("ConfigSet", messages.ConfigSet, {"id": "r1", "version": "1", "config": {}}, False),
        ("ConfigSet", messages.ConfigSet, {"id": "r1", "version": 1, "config": []}, False),
        ("ConfigSet", messages.ConfigSet, {"id": "r1", "version": 1}, False),
        ("ConfigSet", messages.ConfigSet, {"id": "r1", "version": 1, "config": {}, "unit": "KEN-M-07"}, False),
        ("Command", messages.CommandRequest, {"id": "c1", "command": "flush_backlog"}, True),
        ("Command", messages.CommandRequest, {"id": "c1", "command": "reboot"}, False),
        ("Command", messages.CommandRequest, {"command": "report_position"}, False),
        ("Command", messages.CommandRequest, {"id": "c1", "command": "report_position", "at": 1}, False),
    ],
)
def test_request_models_and_their_generated_schemas_agree(doc, name, model, body, accepted):
    # expires and sig are read by the signed-request checks (agent.core.requests), not by the model.
    validator = jsonschema.Draft7Validator({**doc, "$ref": f"#/components/schemas/{name}"})
    assert (messages.request_problems(model, body) == []) == accepted
    assert validator.is_valid(body) == accepted


def test_a_request_names_unknown_members_first_then_every_wrong_one():
    assert messages.request_problems(messages.ConfigSet, {"id": 7, "config": [1], "unit": 1}) == [
        ("unit", "unknown key; known: id, version, config, expires, issued, sig"),
        ("id", "must be a string, not a number"),
        ("version", "required"),
        ("config", "must be an object, not an array"),
    ]


def test_every_payload_schema_of_the_document_is_generated(doc):
    # JSON payloads from their models; the compact CBOR telemetry from the codec's tables.
    hand_written = set(doc["components"]["schemas"]) - set(messages.schemas())
    assert hand_written == set(), (
        "write a model in agent/core/messages.py (SCHEMAS) instead of a schema by hand: " + ", ".join(sorted(hand_written))
    )


def _values(alias: Any) -> tuple[Any, ...]:
    return get_args(get_args(alias.__value__)[0])


def test_the_compact_encodings_tables_hold_the_models_values_in_their_order():
    # The CBOR tables' indices are on the wire: they must never be reordered, and must cover
    # every value a JSON report may carry.
    from agent.core import telemetry_cbor

    assert telemetry_cbor.TIME_SOURCE_TABLE == _values(messages.TimeSource)
    assert telemetry_cbor.RECEIVER_TABLE == _values(messages.Receiver)
    call_states = get_args(messages.CallRef.model_fields["state"].annotation)
    assert telemetry_cbor.CALL_STATE_TABLE[: len(call_states)] == call_states
