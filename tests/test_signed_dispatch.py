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
from tests.support.unit_rig import T0, Rig, alarm_uuid, call_payload, config, one, pubs, wall

DISPATCH_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))
ADMIN_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NOW = wall(T0)
ALARM = alarm_uuid(1)  # the rig's first alarm


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
    message = a_call() if topic == "call" else {"id": ALARM}
    verdict = judge(topic, signed(topic, message))
    assert verdict.accepted and verdict.error is None
    assert verdict.id == ("C-1001" if topic == "call" else ALARM)


def test_without_dispatch_keys_nothing_is_required() -> None:
    assert judge("call", call_payload(), cfg=config("car")).accepted
    assert judge("alarm/clear", b"", cfg=config("car")).accepted


def _with(payload: bytes, **members: Any) -> bytes:
    return json.dumps({**json.loads(payload), **members}).encode()


def _tampered_call() -> bytes:
    body = json.loads(signed("call", a_call()))
    body["address"] = "Somewhere else"
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("topic", "payload", "fragment"),
    [
        ("call", call_payload(), "expires: required on signed dispatch messages"),
        ("alarm/clear", b"", "sig: required"),
        ("alarm/clear", json.dumps({"id": ALARM}).encode(), "expires: required"),
        ("call", signed("call", a_call(), key=ADMIN_KEY), "sig: not signed by any dispatch key"),
        ("call", signed("call", a_call(), unit="KEN-C-99"), "sig: not signed by any dispatch key"),
        ("alarm/clear", signed("alarm/ack", {"id": ALARM}), "sig: not signed by any dispatch key"),
        ("call", _tampered_call(), "sig: not signed by any dispatch key"),
        ("call", signed("call", a_call(), now=NOW - dt.timedelta(hours=1)), "expires: expired at"),
        ("call", signed("call", a_call(), now=NOW + dt.timedelta(hours=1)), "at most 1 h"),
        ("call", b"\xff", "not UTF-8"),
        # An answer to an alarm names it: "the current alarm" could be replayed against a later one.
        ("alarm/clear", signed("alarm/clear", {}), "id: required on a signed alarm/clear"),
        ("alarm/ack", signed("alarm/ack", {"id": None}), "id: required on a signed alarm/ack"),
        ("alarm/ack", signed("alarm/ack", {"id": 1}), "id: must be the id of the unit's alarm message"),
        ("alarm/ack", _with(signed("alarm/ack", {"id": ALARM}), expires="tomorrow"), "expires: must be an ISO 8601"),
    ],
    ids=["unsigned-call", "empty-clear", "unsigned-clear", "other-key", "other-unit", "other-topic",
         "tampered", "expired", "too-long", "garbage", "no-alarm-id", "null-alarm-id", "numbered-alarm-id",
         "bad-expiry"],
)
def test_bad_dispatch_messages_are_refused_with_the_reason(topic: str, payload: bytes, fragment: str) -> None:
    verdict = judge(topic, payload)
    assert not verdict.accepted and not verdict.replay
    assert fragment in (verdict.error or ""), verdict.error


def test_a_copy_of_an_accepted_message_is_a_replay_and_a_new_one_is_not() -> None:
    recent = RecentIds()
    call = signed("call", a_call())
    assert judge("call", call, recent).accepted
    again = judge("call", call, recent)
    assert not again.accepted and again.replay
    # The same call signed again (a new expiry) is a new message from dispatch.
    assert judge("call", signed("call", a_call(), lifetime_s=900), recent).accepted
    # A refused message is not remembered: it may come again, correctly signed.
    assert not judge("call", call_payload(), recent).accepted


def test_an_answer_to_an_alarm_needs_no_clock_and_no_replay_memory() -> None:
    # Its alarm id makes it fresh: judged by the core against the alarm it names, so its expiry is not
    # judged (a dead zone may hold it past it, the unit's clock may be years off) and the replay memory
    # is neither read nor written (it may be on a full card).
    class Unwritable(RecentIds):
        def seen(self, key: str) -> bool:
            raise AssertionError("an answer to an alarm must not need the replay memory")

        remember = seen  # type: ignore[assignment]

    clear = signed("alarm/clear", {"id": ALARM}, now=NOW - dt.timedelta(days=2))  # expired two days ago
    for now in (NOW, NOW - dt.timedelta(days=3000), NOW + dt.timedelta(days=400)):
        assert judge("alarm/clear", clear, Unwritable(), now=now).accepted
        assert judge("alarm/ack", signed("alarm/ack", {"id": ALARM.upper()}), Unwritable(), now=now).id == ALARM


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
    for event in (DispatchRefused("alarm/clear", ALARM, "sig: not signed by any dispatch key", rig.t),
                  MessageReceived("alarm/clear", b"", rig.t)):
        out = rig.send(event)
        assert pubs(out, "alarm") == []
        assert "error" in one(out, "alarm/rejected")
    assert rig.unit.emergency.state == "active"
    # Verified but naming no alarm: never applied to "the current one" (the worker refuses it first).
    assert pubs(rig.send(MessageReceived("alarm/clear", b"{}", rig.t, verified=True)), "alarm") == []
    named = json.dumps({"id": ALARM}).encode()
    out = rig.send(MessageReceived("alarm/clear", named, rig.t, verified=True))
    assert one(out, "alarm")["state"] == "cleared"



def test_a_signed_answer_naming_an_alarm_that_is_not_out_touches_nothing_and_says_why() -> None:
    rig = Rig(keyed(panel={"emergency_hold_s": 2.0, "emergency_cancel_s": 5.0}))

    def answer(topic: str, alarm_id: str) -> list:
        return rig.send(MessageReceived(topic, json.dumps({"id": alarm_id}).encode(), rig.t, verified=True))

    rig.at(T0 + 0.1).press("emergency")
    rig.run_until(T0 + 8)
    assert rig.unit.emergency.alarm_id == ALARM
    out = answer("alarm/clear", alarm_uuid(9))
    assert pubs(out, "alarm") == [] and rig.unit.emergency.state == "active"
    refused = one(out, "alarm/rejected")
    assert refused["id"] == alarm_uuid(9) and f"the alarm out is {ALARM}" in refused["error"]
    assert one(answer("alarm/clear", ALARM), "alarm")["state"] == "cleared"
    # A copy of the clear that just ended it (a QoS 1 re-delivery): it took effect, nothing to say.
    assert pubs(answer("alarm/clear", ALARM)) == []
    # A later alarm: the first one's answers are strangers to it.
    rig.after(1).press("emergency")
    rig.run_until(rig.t + 3)
    second = rig.unit.emergency.alarm_id
    assert second != ALARM
    rig.unit.ended_alarms.clear()  # as after a restart: the unit no longer remembers the first alarm
    for topic in ("alarm/ack", "alarm/clear"):
        out = answer(topic, ALARM)
        assert pubs(out, "alarm") == [] and f"the alarm out is {second}" in one(out, "alarm/rejected")["error"]
    assert rig.unit.emergency.state == "pending" and rig.unit.emergency.alarm_id == second
