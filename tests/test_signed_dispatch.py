"""Signed dispatch: the checks (agent.core.signed_dispatch) and what the core unit answers.

Pure: fixed keys, a fixed clock, an in-memory replay memory. The same path through a
running agent, the shipped broker ACLs and a restart is in tests/test_security_e2e.py.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import admin_tools
from agent.config_validate import parse_config
from agent.core import signing
from agent.core.events import DispatchRefused, MessageReceived
from agent.core.replay import RecentIds
from agent.core.signed_dispatch import check_dispatch
from tests.support.unit_rig import T0, Rig, call_payload, config, one, pubs, wall

DISPATCH_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))
ADMIN_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NOW = wall(T0)


def keyed(**sections: Any):
    return config("car", security={"dispatch_keys": [admin_tools.public_text(DISPATCH_KEY)]}, **sections)


CFG = keyed()
UNIT = CFG.unit.id


def signed(topic: str, message: dict[str, Any] | None = None, *, key=DISPATCH_KEY, unit: str = UNIT,
           lifetime_s: float = 600, now: dt.datetime = NOW) -> bytes:
    body = admin_tools.dispatch_request(key, unit, topic, message, lifetime_s=lifetime_s, now=now)
    return json.dumps(body, ensure_ascii=False).encode()


def a_call(**overrides: Any) -> dict[str, Any]:
    return json.loads(call_payload(**overrides))


def judge(topic: str, payload: bytes, recent: RecentIds | None = None, cfg=CFG, now: dt.datetime = NOW):
    return check_dispatch(topic, payload, cfg, now, RecentIds() if recent is None else recent)


# ------------------------------------------------------------------ checks


@pytest.mark.parametrize("topic", ["call", "alarm/ack", "alarm/clear"])
def test_a_validly_signed_message_passes(topic: str) -> None:
    message = a_call() if topic == "call" else {"id": 1}
    verdict = judge(topic, signed(topic, message))
    assert verdict.accepted and verdict.error is None
    assert verdict.id == ("C-1001" if topic == "call" else 1)


def test_without_dispatch_keys_nothing_is_required() -> None:
    assert judge("call", call_payload(), cfg=config("car")).accepted
    assert judge("alarm/clear", b"", cfg=config("car")).accepted


def _tampered_call() -> bytes:
    body = json.loads(signed("call", a_call()))
    body["address"] = "Somewhere else"
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("topic", "payload", "fragment"),
    [
        ("call", call_payload(), "expires: required on signed dispatch messages"),
        ("alarm/clear", b"", "sig: required"),
        ("alarm/clear", b'{"id": 1}', "expires: required"),
        ("call", signed("call", a_call(), key=ADMIN_KEY), "sig: not signed by any dispatch key"),
        ("call", signed("call", a_call(), unit="KEN-C-99"), "sig: not signed by any dispatch key"),
        ("alarm/clear", signed("alarm/ack", {"id": 1}), "sig: not signed by any dispatch key"),
        ("call", _tampered_call(), "sig: not signed by any dispatch key"),
        ("call", signed("call", a_call(), now=NOW - dt.timedelta(hours=1)), "expires: expired at"),
        ("alarm/ack", signed("alarm/ack", {}, now=NOW + dt.timedelta(hours=1)), "at most 1 h"),
        ("call", b"\xff", "not UTF-8"),
    ],
    ids=["unsigned-call", "empty-clear", "unsigned-clear", "other-key", "other-unit", "other-topic",
         "tampered", "expired", "too-long", "garbage"],
)
def test_bad_dispatch_messages_are_refused_with_the_reason(topic: str, payload: bytes, fragment: str) -> None:
    verdict = judge(topic, payload)
    assert not verdict.accepted and not verdict.replay
    assert fragment in (verdict.error or ""), verdict.error


def test_a_copy_of_an_accepted_message_is_a_replay_and_a_new_one_is_not() -> None:
    recent = RecentIds()
    clear = signed("alarm/clear", {})
    assert judge("alarm/clear", clear, recent).accepted
    again = judge("alarm/clear", clear, recent)
    assert not again.accepted and again.replay
    # The same clear signed again (a new expiry) is a new message from dispatch.
    assert judge("alarm/clear", signed("alarm/clear", {}, lifetime_s=900), recent).accepted
    # A refused message is not remembered: it may come again, correctly signed.
    assert not judge("call", call_payload(), recent).accepted


def test_dispatch_keys_rotate_like_admin_keys() -> None:
    from agent.core.remote_config import ConfigState, handle_config_set

    new_key = Ed25519PrivateKey.from_private_bytes(bytes(range(140, 172)))
    cfg = config("car", security={"admin_keys": [admin_tools.public_text(ADMIN_KEY)],
                                  "dispatch_keys": [admin_tools.public_text(DISPATCH_KEY)]})
    state = ConfigState.initial(cfg)

    def push(version: int, keys: Any, key=ADMIN_KEY):
        body = signing.sign_request(key, UNIT, {"id": f"r{version}", "version": version,
                                                "config": {"security": {"dispatch_keys": keys}},
                                                "expires": "2026-11-26T20:00:00Z"})
        return handle_config_set(json.dumps(body).encode(), state, NOW, parse_config)

    rotated = push(1, [admin_tools.public_text(new_key)])
    assert rotated.accepted, rotated.result
    assert judge("call", signed("call", a_call(), key=new_key), cfg=rotated.state.config).accepted
    assert not judge("call", signed("call", a_call()), cfg=rotated.state.config).accepted
    # Never emptied remotely, and never by a push not signed by an admin.
    emptied = push(1, [])
    assert [(p.loc, "may not be emptied" in p.msg) for p in emptied.result.errors] == [
        ("config.security.dispatch_keys", True)]
    assert "not signed by any admin key" in push(1, [admin_tools.public_text(new_key)], key=DISPATCH_KEY
                                                 ).result.errors[0].msg


# ---------------------------------------------------------------- the core


def test_a_refused_call_is_answered_on_call_rejected_and_never_shown() -> None:
    rig = Rig(keyed())
    out = rig.send(DispatchRefused("call", "C-1001", "sig: required", rig.t))
    rejected = one(out, "call/rejected")
    assert rejected["id"] == "C-1001" and rejected["error"] == "sig: required"
    assert rig.unit.calls.shown() is None and rig.unit.counters.dispatch_refused == 1


def test_an_unverified_dispatch_message_never_acts_when_dispatch_is_signed() -> None:
    # Only the remote-request worker marks messages verified; anything else is refused.
    rig = Rig(keyed())
    out = rig.message("call", call_payload())
    assert one(out, "call/rejected")["error"].startswith("sig:")
    assert rig.unit.calls.shown() is None
    out = rig.send(MessageReceived("call", call_payload(), rig.t, verified=True))
    assert one(out, "call/response")["response"] == "received"


def test_a_refused_clear_leaves_the_alarm_active_and_answers_on_alarm_rejected() -> None:
    rig = Rig(keyed(panel={"emergency_hold_s": 2.0, "emergency_cancel_s": 5.0}))
    rig.at(T0 + 0.1).press("emergency")
    rig.run_until(T0 + 8)
    assert rig.unit.emergency.state == "active"
    for event in (DispatchRefused("alarm/clear", 1, "expires: expired", rig.t),
                  MessageReceived("alarm/clear", b"", rig.t)):
        out = rig.send(event)
        assert pubs(out, "alarm") == []
        assert "error" in one(out, "alarm/rejected")
    assert rig.unit.emergency.state == "active"
    out = rig.send(MessageReceived("alarm/clear", b"", rig.t, verified=True))
    assert one(out, "alarm")["state"] == "cleared"

