"""Signed config pushes and commands; the canonical form; the admin tools."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import stat
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import admin_tools
from agent.config import AgentConfig, ConfigError
from agent.config_validate import parse_config
from agent.core import signing
from agent.core.remote_command import parse_command
from agent.core.remote_config import ConfigState, handle_config_set
from agent.core.replay import RecentIds

UTC = dt.timezone.utc
NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
UNIT, OTHER_UNIT = "KEN-M-07", "KEN-M-08"

ADMIN_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SECOND_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
STRANGER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))


def config_with_keys(*keys: Ed25519PrivateKey | str, unit: str = UNIT) -> AgentConfig:
    texts = [k if isinstance(k, str) else admin_tools.public_text(k) for k in keys]
    return parse_config({"unit": {"id": unit, "kind": "car"}, "security": {"admin_keys": texts}})


@pytest.fixture
def signed_state() -> ConfigState:
    return ConfigState.initial(config_with_keys(ADMIN_KEY))


def request(version: int = 1, config: Any = None, request_id: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {
        "id": request_id or f"r{version}",
        "version": version,
        "config": {"telemetry": {"rate_hz": 2}} if config is None else config,
        "expires": "2025-03-02T12:00:00Z",
    }
    body.update(extra)
    return body


def send(state: ConfigState, body: dict[str, Any], now: dt.datetime = NOW):
    return handle_config_set(json.dumps(body, ensure_ascii=False).encode(), state, now, validate=parse_config)


def sig_error(outcome) -> str:
    assert outcome.state is None and not outcome.result.ok
    [problem] = outcome.result.errors
    assert problem.loc == "sig"
    return problem.msg


# ----------------------------------------------------------- canonical form


def test_rfc8785_example() -> None:
    # RFC 8785 section 3.2.2, input and expected output.
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert signing.canonical_json(json.loads(text)).decode("utf-8") == expected


@pytest.mark.parametrize(
    ("ieee_hex", "text"),
    [  # RFC 8785 appendix B
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"),
        ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"),
        ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ],
)
def test_numbers_as_ecmascript_writes_them(ieee_hex: str, text: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(ieee_hex))[0]
    assert signing.canonical_json(value).decode("ascii") == text


def test_canonical_form_is_stable_and_order_free() -> None:
    a = {"version": 3, "id": "r3", "config": {"telemetry": {"rate_hz": 2.0}, "panel": {"labels": {"ar": {"busy": "مشغول"}}}}}
    b = json.loads(json.dumps(dict(reversed(list(a.items())))))
    expected = (
        '{"config":{"panel":{"labels":{"ar":{"busy":"مشغول"}}},"telemetry":{"rate_hz":2}},'
        '"id":"r3","purpose":"config/set","unit":"KEN-M-07","version":3}'
    )
    assert signing.signed_bytes(UNIT, "config/set", a) == expected.encode("utf-8")
    assert signing.signed_bytes(UNIT, "config/set", b) == expected.encode("utf-8")
    # "sig" is never part of what is signed.
    assert signing.signed_bytes(UNIT, "config/set", {**a, "sig": "x"}) == expected.encode("utf-8")


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), 2**53 + 1, "\ud800", {1: "a"}, {"a": {1, 2}}],
    ids=["nan", "inf", "big-int", "lone-surrogate", "int-key", "set"],
)
def test_values_without_a_canonical_form(value: Any) -> None:
    with pytest.raises(signing.CanonicalError):
        signing.canonical_json(value)


def test_keys_sort_by_utf16_code_units() -> None:
    # U+FF61 sorts after U+1F600 in code points but before it in UTF-16.
    assert signing.canonical_json({"\U0001f600": 1, "\uff61": 2}) == '{"😀":1,"｡":2}'.encode()


def test_a_request_may_not_carry_the_added_members() -> None:
    with pytest.raises(signing.CanonicalError):
        signing.signed_bytes(UNIT, "config/set", {"id": "r", "unit": UNIT})


# ----------------------------------------------------------- keys


def test_public_key_text_round_trip() -> None:
    text = admin_tools.public_text(ADMIN_KEY)
    assert len(base64.b64decode(text)) == 32
    assert signing.public_key_text(signing.parse_public_key(text)) == text


def test_the_unit_verifies_rfc_8032_test_vectors_and_signatures_made_with_cryptography() -> None:
    # The unit verifies with libsodium (PyNaCl); admins and dispatch sign with cryptography
    # (OpenSSL) or anything else that implements RFC 8032. TEST 1 and TEST 2 of RFC 8032 7.1:
    vectors = [
        ("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", b"",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
        ("PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=", b"\x72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ]
    for key_text, message, signature in vectors:
        key = signing.parse_public_key(key_text)
        assert key.verify(message, bytes.fromhex(signature)) == message
        with pytest.raises(Exception, match="Signature was forged or corrupt"):
            key.verify(message + b"!", bytes.fromhex(signature))
    body = signing.sign_request(ADMIN_KEY, UNIT, {"id": "v", "command": "flush_backlog"}, "cmd")
    signing.verify_request([signing.parse_public_key(admin_tools.public_text(ADMIN_KEY))], UNIT, body, "cmd")


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"short").decode(), ""])
def test_bad_public_keys(text: str) -> None:
    with pytest.raises(ValueError):
        signing.parse_public_key(text)
    with pytest.raises(ValueError, match=r"admin_keys\[1\]"):
        signing.parse_public_keys([admin_tools.public_text(ADMIN_KEY), text])


# ----------------------------------------------------------- config/set, signing on


def test_a_validly_signed_push_is_accepted(signed_state: ConfigState) -> None:
    outcome = send(signed_state, signing.sign_request(ADMIN_KEY, UNIT, request()))
    assert outcome.accepted, outcome.result
    assert outcome.state is not None and outcome.state.config.telemetry.rate_hz == 2


def test_any_listed_key_may_sign() -> None:
    state = ConfigState.initial(config_with_keys(ADMIN_KEY, SECOND_KEY))
    assert send(state, signing.sign_request(SECOND_KEY, UNIT, request())).accepted


def test_an_unsigned_push_is_rejected(signed_state: ConfigState) -> None:
    assert "required" in sig_error(send(signed_state, request()))


def test_a_push_signed_by_an_unknown_key_is_rejected(signed_state: ConfigState) -> None:
    assert "not signed by any admin key" in sig_error(send(signed_state, signing.sign_request(STRANGER_KEY, UNIT, request())))


def test_a_push_signed_for_another_unit_is_rejected(signed_state: ConfigState) -> None:
    body = signing.sign_request(ADMIN_KEY, OTHER_UNIT, request())
    assert "not signed by any admin key" in sig_error(send(signed_state, body))
    # ...while the unit it was made for accepts it.
    other = ConfigState.initial(config_with_keys(ADMIN_KEY, unit=OTHER_UNIT))
    assert send(other, body).accepted


def test_a_replayed_old_version_is_rejected(signed_state: ConfigState) -> None:
    v1 = signing.sign_request(ADMIN_KEY, UNIT, request(1, {"mqtt": {"host": "old-broker"}}))
    v2 = signing.sign_request(ADMIN_KEY, UNIT, request(2, {"mqtt": {"host": "new-broker"}}))
    s1 = send(signed_state, v1).state
    assert s1 is not None
    s2 = send(s1, v2).state
    assert s2 is not None
    replay = send(s2, v1)
    assert replay.state is None and not replay.result.ok
    assert [(p.loc, "greater than 2" in p.msg) for p in replay.result.errors] == [("version", True)]


def test_an_expired_signed_push_is_rejected(signed_state: ConfigState) -> None:
    body = signing.sign_request(ADMIN_KEY, UNIT, request(expires="2025-03-01T11:00:00Z"))
    outcome = send(signed_state, body)
    assert [p.loc for p in outcome.result.errors] == ["expires"]
    # Moving the expiry invalidates the signature: it is covered.
    body["expires"] = "2025-03-09T11:00:00Z"
    assert "not signed by any admin key" in sig_error(send(signed_state, body))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b["config"]["telemetry"].update(rate_hz=3),
        lambda b: b.update(version=9),
        lambda b: b.update(id="other"),
        lambda b: b["config"].update(mqtt={"host": "evil"}),
    ],
    ids=["value", "version", "id", "key-added"],
)
def test_any_tampering_breaks_the_signature(signed_state: ConfigState, tamper) -> None:
    body = signing.sign_request(ADMIN_KEY, UNIT, request())
    tamper(body)
    assert "not signed by any admin key" in sig_error(send(signed_state, body))


def test_a_signed_push_must_carry_expires(signed_state: ConfigState) -> None:
    body = signing.sign_request(ADMIN_KEY, UNIT, {k: v for k, v in request().items() if k != "expires"})
    outcome = send(signed_state, body)
    assert outcome.state is None
    assert [(p.loc, p.msg) for p in outcome.result.errors] == [("expires", "required for signed requests")]
    # ...and may not run for longer than 8 days.
    late = signing.sign_request(ADMIN_KEY, UNIT, request(expires="2025-03-10T12:00:00Z"))
    assert "at most 192 h" in send(signed_state, late).result.errors[0].msg


def test_a_signed_push_id_is_used_once_even_with_a_new_version(signed_state: ConfigState) -> None:
    recent = RecentIds()
    first = signing.sign_request(ADMIN_KEY, UNIT, request(1, request_id="same"))
    again = signing.sign_request(ADMIN_KEY, UNIT, request(2, request_id="same"))
    s1 = handle_config_set(json.dumps(first).encode(), signed_state, NOW, parse_config, recent=recent).state
    assert s1 is not None
    outcome = handle_config_set(json.dumps(again).encode(), s1, NOW, parse_config, recent=recent)
    assert [(p.loc, p.msg) for p in outcome.result.errors] == [("id", "this request was already handled")]


@pytest.mark.parametrize(
    ("sig", "fragment"),
    [(5, "base64 string"), ("@@@", "not valid base64"), (base64.b64encode(b"x" * 63).decode(), "64 bytes")],
)
def test_malformed_signatures(signed_state: ConfigState, sig: Any, fragment: str) -> None:
    assert fragment in sig_error(send(signed_state, {**request(), "sig": sig}))


def test_a_signed_push_may_rotate_the_admin_keys(signed_state: ConfigState) -> None:
    rotate = request(1, {"security": {"admin_keys": [admin_tools.public_text(SECOND_KEY)]}})
    s1 = send(signed_state, signing.sign_request(ADMIN_KEY, UNIT, rotate)).state
    assert s1 is not None
    assert s1.config.security.admin_keys == [admin_tools.public_text(SECOND_KEY)]
    assert "not signed by any admin key" in sig_error(send(s1, signing.sign_request(ADMIN_KEY, UNIT, request(2))))
    assert send(s1, signing.sign_request(SECOND_KEY, UNIT, request(2))).accepted


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [([], "may not be emptied"), (["not-a-key"], "not base64"), (None, "Input should be a valid array")],
)
def test_a_signed_push_cannot_break_the_trust_keys(signed_state: ConfigState, keys: Any, fragment: str) -> None:
    body = signing.sign_request(ADMIN_KEY, UNIT, request(1, {"security": {"admin_keys": keys if keys is not None else "x"}}))
    outcome = send(signed_state, body)
    assert outcome.state is None
    assert [p.loc for p in outcome.result.errors] == ["config.security.admin_keys"]
    assert fragment in outcome.result.errors[0].msg


def test_an_unusable_key_is_a_config_error_not_a_unit_that_trusts_nothing() -> None:
    # Checked when the config is loaded (file or push), so signing can never be half on.
    with pytest.raises(ConfigError, match=r"security.admin_keys.*admin_keys\[0\]: not base64"):
        config_with_keys("garbage")


def test_a_config_signature_is_not_a_command_signature() -> None:
    body = signing.sign_request(ADMIN_KEY, UNIT, {"id": "x", "command": "flush_backlog", "expires": "2025-03-01T12:05:00Z"})
    keys = [signing.parse_public_key(admin_tools.public_text(ADMIN_KEY))]
    signing.verify_request(keys, UNIT, body, "config/set")
    with pytest.raises(signing.SignatureError):
        signing.verify_request(keys, UNIT, body, "cmd")


# ----------------------------------------------------------- commands, signing on


def cmd(body: dict[str, Any], config: AgentConfig | None = None, recent: RecentIds | None = None):
    return parse_command(json.dumps(body).encode(), config or config_with_keys(ADMIN_KEY), NOW, RecentIds() if recent is None else recent)


def cmd_body(**extra: Any) -> dict[str, Any]:
    return {"id": "c1", "command": "report_position", "expires": "2025-03-01T12:05:00Z", **extra}


def test_a_signed_command_is_accepted() -> None:
    outcome = cmd(signing.sign_request(ADMIN_KEY, UNIT, cmd_body(), "cmd"))
    assert outcome.command is not None and outcome.command.command == "report_position"


@pytest.mark.parametrize(
    ("body", "loc", "fragment"),
    [
        (cmd_body(), "sig", "required"),
        (signing.sign_request(STRANGER_KEY, UNIT, cmd_body(), "cmd"), "sig", "not signed"),
        (signing.sign_request(ADMIN_KEY, OTHER_UNIT, cmd_body(), "cmd"), "sig", "not signed"),
        (signing.sign_request(ADMIN_KEY, UNIT, cmd_body(), "config/set"), "sig", "not signed"),
        (signing.sign_request(ADMIN_KEY, UNIT, {"id": "c1", "command": "report_position"}, "cmd"), "expires", "required"),
        (signing.sign_request(ADMIN_KEY, UNIT, cmd_body(expires="2025-03-01T11:05:00Z"), "cmd"), "expires", "expired"),
    ],
    ids=["unsigned", "unknown-key", "other-unit", "wrong-purpose", "no-expiry", "expired"],
)
def test_bad_signed_commands(body: dict[str, Any], loc: str, fragment: str) -> None:
    outcome = cmd(body)
    assert outcome.command is None and outcome.rejected is not None
    assert [(p.loc, fragment in p.msg) for p in outcome.rejected.errors] == [(loc, True)]


def test_a_replayed_signed_command_is_rejected() -> None:
    recent = RecentIds()
    body = signing.sign_request(ADMIN_KEY, UNIT, cmd_body(), "cmd")
    assert cmd(body, recent=recent).command is not None
    replay = cmd(body, recent=recent)
    assert replay.rejected is not None and replay.rejected.errors[0].loc == "id"


# ----------------------------------------------------------- admin tools


def test_keygen_writes_a_private_key_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_path = tmp_path / "admin.key"
    assert admin_tools.main(["keygen", str(key_path)]) == 0
    public = capsys.readouterr().out.strip()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert admin_tools.public_text(admin_tools.load_private_key(key_path)) == public
    assert admin_tools.main(["pubkey", str(key_path)]) == 0
    assert capsys.readouterr().out.strip() == public
    before = key_path.read_bytes()
    assert admin_tools.main(["keygen", str(key_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert key_path.read_bytes() == before


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_sign_produces_a_request_the_unit_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str) -> None:
    key_path = tmp_path / "admin.key"
    public = admin_tools.generate_key(key_path)
    partial = tmp_path / f"change{suffix}"
    if suffix == ".toml":
        partial.write_text('[telemetry]\nrate_hz = 2.0\n[panel.labels.ar]\nbusy = "مشغول"\n', encoding="utf-8")
    else:
        partial.write_text(json.dumps({"telemetry": {"rate_hz": 2.0}, "panel": {"labels": {"ar": {"busy": "مشغول"}}}}))
    code = admin_tools.main(["sign", "--key", str(key_path), "--unit", UNIT, "--version", "4", "--id", "req-4", str(partial)])
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert body["id"] == "req-4" and body["version"] == 4 and "sig" in body
    state = ConfigState.initial(config_with_keys(public))
    outcome = handle_config_set(json.dumps(body).encode(), state, dt.datetime.now(UTC), validate=parse_config)
    assert outcome.accepted, outcome.result
    assert outcome.state is not None and outcome.state.config.panel.labels["ar"]["busy"] == "مشغول"
    # The same request is worthless to another unit.
    other = ConfigState.initial(config_with_keys(public, unit=OTHER_UNIT))
    assert not handle_config_set(json.dumps(body).encode(), other, dt.datetime.now(UTC), validate=parse_config).result.ok


def test_sign_cmd_produces_a_command_the_unit_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_path = tmp_path / "admin.key"
    public = admin_tools.generate_key(key_path)
    assert admin_tools.main(["sign-cmd", "--key", str(key_path), "--unit", UNIT, "flush_backlog"]) == 0
    body = json.loads(capsys.readouterr().out)
    outcome = parse_command(json.dumps(body).encode(), config_with_keys(public), dt.datetime.now(UTC), RecentIds())
    assert outcome.command is not None and outcome.command.command == "flush_backlog"


def test_sign_cmd_signs_a_crash_trace_request_with_its_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_path = tmp_path / "admin.key"
    public = admin_tools.generate_key(key_path)
    trace = "3b8e2c1d-5f4a-4c6b-9e7d-2a1b0c9d8e7f"
    assert admin_tools.main(["sign-cmd", "--key", str(key_path), "--unit", UNIT, "--trace", trace, "crash_trace"]) == 0
    body = json.loads(capsys.readouterr().out)
    outcome = parse_command(json.dumps(body).encode(), config_with_keys(public), dt.datetime.now(UTC), RecentIds())
    assert outcome.command is not None and (outcome.command.command, outcome.command.trace) == ("crash_trace", trace)
    # The trace is signed with the rest: another trace under the same signature is refused.
    forged = {**body, "trace": "t-other"}
    assert parse_command(json.dumps(forged).encode(), config_with_keys(public), dt.datetime.now(UTC),
                         RecentIds()).rejected is not None
    # crash_trace without --trace, or --trace on another command, is refused before signing.
    assert admin_tools.main(["sign-cmd", "--key", str(key_path), "--unit", UNIT, "crash_trace"]) == 2
    assert admin_tools.main(["sign-cmd", "--key", str(key_path), "--unit", UNIT, "--trace", trace, "flush_backlog"]) == 2


def test_sign_refuses_bad_input_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_path = tmp_path / "admin.key"
    admin_tools.generate_key(key_path)
    for name, text in (("a.yaml", "x: 1"), ("b.json", "[1]"), ("c.toml", "x = 1979-05-27"), ("d.json", "{")):
        path = tmp_path / name
        path.write_text(text)
        assert admin_tools.main(["sign", "--key", str(key_path), "--unit", UNIT, "--version", "1", str(path)]) == 2
        assert capsys.readouterr().err.startswith("error: ")
    assert admin_tools.main(["sign", "--key", str(tmp_path / "none.key"), "--unit", UNIT, "--version", "1", str(path)]) == 2


# ----------------------------------------------------------- another language

JS_VERIFIER = r"""
// A JCS canonicalizer in a few lines of JavaScript, as an admin tool would write it.
const crypto = require("crypto");
function canon(v) {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(canon).join(",") + "]";
  return "{" + Object.keys(v).sort().map(k => JSON.stringify(k) + ":" + canon(v[k])).join(",") + "}";
}
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const { unit, purpose, publicKey, request } = input;
const signed = Object.assign({}, request, { unit, purpose });
delete signed.sig;
const bytes = Buffer.from(canon(signed), "utf8");
const spki = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(publicKey, "base64")]);
const key = crypto.createPublicKey({ key: spki, format: "der", type: "spki" });
const ok = crypto.verify(null, bytes, key, Buffer.from(request.sig, "base64"));
process.stdout.write(JSON.stringify({ ok, canonical: bytes.toString("utf8") }));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_a_javascript_jcs_reproduces_the_signed_bytes(tmp_path: Path) -> None:
    config = {
        "telemetry": {"rate_hz": 2.0, "backlog_max_rate": 1e21},
        "panel": {"labels": {"ar": {"busy": "مشغول"}, "fr": {"busy": "Occupé \"A\"\n\t\u0001"}}},
        "gnss": {"silence_timeout_s": 0.000001, "baudrate": 115200, "reopen_max_wait_s": 1e-7},
        "mqtt": {"failover": [{"host": "b1", "port": 8883}], "client_id": None, "tls": {"insecure": False}},
    }
    body = signing.sign_request(ADMIN_KEY, UNIT, request(3, config))
    script = tmp_path / "verify.js"
    script.write_text(JS_VERIFIER)
    stdin = json.dumps({"unit": UNIT, "purpose": "config/set",
                        "publicKey": admin_tools.public_text(ADMIN_KEY), "request": body})
    out = subprocess.run(["node", str(script)], input=stdin.encode(), capture_output=True, timeout=30, check=True)
    answer = json.loads(out.stdout)
    assert answer["canonical"].encode("utf-8") == signing.signed_bytes(UNIT, "config/set", body)
    assert answer["ok"] is True


@pytest.mark.parametrize(
    "raw_config",
    ['{"unit": {"name": "\\ud800"}}', '{"telemetry": {"rate_hz": 1e400}}', '{"storage": {"max_backlog_reports": 90071992547409930}}'],
    ids=["lone-surrogate", "overflowing-float", "huge-int"],
)
def test_a_signed_state_refuses_values_without_a_canonical_form(signed_state: ConfigState, raw_config: str) -> None:
    sig = base64.b64encode(b"\x00" * 64).decode()
    payload = (f'{{"id": "r1", "version": 1, "config": {raw_config}, "expires": "2025-03-02T12:00:00Z", '
               f'"sig": "{sig}"}}').encode()
    outcome = handle_config_set(payload, signed_state, NOW, validate=parse_config)
    assert outcome.state is None and not outcome.result.ok
    assert outcome.result.errors[0].loc in ("sig", "")  # "" for 1e400: refused while parsing
