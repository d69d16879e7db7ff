"""Safety end to end: the real agent process after a cold boot in a garage, and situations combined.

The agent runs unmodified against a private Mosquitto, its receiver on a pty that never gives a
fix (the GNSS emulator's ``fix_lost`` from before the agent's first read: a garage, a tunnel)
and its clock taken as never synchronised (``UMPS_AGENT_CLOCK=unsynchronised``, as on a unit
with no NTP, whatever the test machine's clock is). Dispatch signs with a key the unit lists
in ``[security] dispatch_keys``. What docs/safety.md promises is checked from outside, on MQTT:
nothing in the alarm's path or a call's waits for a clock, a fix or a memory of past messages,
and nothing a replay or a forgery sends ever acknowledges, clears or raises anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import admin_tools
from hil.agent_proc import deep_merge
from hil.engine import Rig as HilRig
from hil.engine import RigOptions
from tests.support.broker import mosquitto_path
from tests.test_agent_e2e import PINS, UNIT, Rig

DISPATCH_KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()  # a key the unit does not list
CALL = {"id": "C-COLD-1", "action": "new", "priority": 1, "nature": "Agression dans le parking",
        "address": "Parking du marché central, niveau -2, Kénitra", "location": {"lat": 34.2595, "lon": -6.5830},
        "created": "2026-11-25T19:58:00Z"}


class ColdRig(Rig):
    """The end-to-end rig as a unit booted in a garage: no fix, no synchronised clock, signed dispatch."""

    def __init__(self, tmp: Path) -> None:
        mosquitto_path()  # skip, not fail, without Mosquitto
        agent = deep_merge({
            "gpio": {"inputs": {name: {"pin": pin, "bounce_s": 0.01} for name, pin in PINS.items()}},
            "mqtt": {"reconnect_max_s": 1.0},
            "storage": {"commit_interval_s": 1.0},
            "ui": {"enabled": False},
            "security": {"dispatch_keys": [admin_tools.public_text(DISPATCH_KEY)]},
            "panel": {"emergency_hold_s": 1.0, "emergency_cancel_s": 1.0},
        }, {})
        HilRig.__init__(self, RigOptions(workdir=tmp, unit_id=UNIT, start_agent=False, agent_overrides=agent,
                                         clock_unsynchronised=True, gnss_at_start="fix_lost"))
        self.up()

    def dispatch(self, topic: str, message: dict, *, key=DISPATCH_KEY, retain: bool = False) -> bytes:
        """Sign as dispatch software does and publish; the payload, to replay later."""
        payload = json.dumps(admin_tools.dispatch_request(key, UNIT, topic, message), ensure_ascii=False).encode()
        assert self.tap is not None and self.tap.publish(topic, payload, retain=retain)
        return payload

    def raise_alarm(self) -> dict:
        before = len(self.messages("alarm"))
        self.gpio.hold(PINS["emergency"], 1.3)
        pending = self.wait("alarm", lambda b: b["state"] == "pending" and len(self.messages("alarm")) > before)
        self.wait("alarm", lambda b: b["state"] == "active" and b["id"] == pending["id"])
        return pending

    def states(self, alarm_id: str) -> list[str]:
        return [b["state"] for b in self.messages("alarm") if b["id"] == alarm_id]


@pytest.fixture
def cold(tmp_path, request) -> ColdRig:
    rig = ColdRig(tmp_path)
    request.addfinalizer(rig.down)
    return rig


def test_after_a_cold_restart_the_alarm_is_answered_and_a_signed_call_shown_and_replays_touch_nothing(cold):
    cold.start_agent()
    report = cold.wait("telemetry", timeout=15)
    assert report["time_source"] == "system_unsynced" and report["fix"]["mode"] == 1 and report["fix"]["lat"] is None

    # A first alarm, answered by dispatch; the answers are captured (by anyone on the broker).
    first = cold.raise_alarm()
    assert first["time_source"] == "system_unsynced" and first["fix"]["mode"] == 1
    ack_first = cold.dispatch("alarm/ack", {"id": first["id"]})
    cold.wait("alarm", lambda b: b["id"] == first["id"] and b["state"] == "acknowledged")
    clear_first = cold.dispatch("alarm/clear", {"id": first["id"]})
    cold.wait("alarm", lambda b: b["id"] == first["id"] and b["state"] == "cleared")

    # The unit restarts, still in the garage: no fix, no clock. Its state comes from the card.
    assert cold.stop_agent() == 0
    cold.start_agent()
    assert cold.wait("telemetry", lambda b: b["time_source"] == "system_unsynced", timeout=15)["fix"]["mode"] == 1

    second = cold.raise_alarm()
    assert second["id"] != first["id"]  # a random id: nothing of the first alarm can name it
    # Replays of the first alarm's answers, a forged clear and an unsigned one: none touches it.
    for copy in (ack_first, clear_first):
        assert cold.tap.publish("alarm/ack" if copy is ack_first else "alarm/clear", copy)
    cold.dispatch("alarm/clear", {"id": second["id"]}, key=OTHER_KEY)
    forged = cold.wait("alarm/rejected", lambda b: b["id"] == second["id"])
    assert "not signed by any dispatch key" in forged["error"]
    cold.publish("alarm/clear", b"")
    assert cold.wait("alarm/rejected", lambda b: b["id"] is None)["error"].startswith("sig: required")
    # The replays are refused too, with the reason: they name an alarm that is not out.
    cold.tap.wait_for(lambda ms: len([m for m in ms if m.topic == "alarm/rejected"
                                      and json.loads(m.payload)["id"] == first["id"]]) == 2, 10)
    replayed = [b for b in cold.messages("alarm/rejected") if b["id"] == first["id"]]
    assert len(replayed) == 2 and all(f"the alarm out is {second['id']}" in b["error"] for b in replayed)

    # A signed call, with no trusted time: shown and answered, never refused for want of a clock.
    cold.dispatch("call", CALL)
    received = cold.wait("call/response", lambda b: b["id"] == CALL["id"])
    assert received["response"] == "received" and received["time_source"] == "system_unsynced"
    cold.wait("status", lambda b: (b.get("call") or {}).get("id") == CALL["id"] and b["emergency"] is True)

    # Dispatch answers the second alarm: applied at once, with no clock.
    cold.dispatch("alarm/ack", {"id": second["id"]})
    cold.wait("alarm", lambda b: b["id"] == second["id"] and b["state"] == "acknowledged")
    # The unit answers in order: by now every replay and forgery was handled, and none acted.
    assert cold.states(second["id"]) == ["pending", "active", "acknowledged"]
    # A copy of the same alarm's ack changes nothing; the clear ends it.
    ack_second = cold.dispatch("alarm/ack", {"id": second["id"]})
    assert cold.tap.publish("alarm/ack", ack_second)
    cold.dispatch("alarm/clear", {"id": second["id"]})
    cold.wait("alarm", lambda b: b["id"] == second["id"] and b["state"] == "cleared")
    assert cold.states(second["id"]) == ["pending", "active", "acknowledged", "cleared"]
    cold.wait("status", lambda b: b["emergency"] is False)
    assert not cold.messages("call/rejected")
    assert cold.stop_agent() == 0


def test_a_retained_answer_is_dropped_unread(cold):
    cold.start_agent()
    first = cold.raise_alarm()
    # Dispatch software that wrongly retains its clear: the live copy is dispatch's clear and ends
    # the alarm; the retained copy the broker hands over at every later connect is dropped unread.
    cold.dispatch("alarm/clear", {"id": first["id"]}, retain=True)
    cold.wait("alarm", lambda b: b["id"] == first["id"] and b["state"] == "cleared")
    assert cold.stop_agent() == 0
    cold.start_agent()  # subscribing again: the broker hands the retained clear over, flagged retained
    second = cold.raise_alarm()
    cold.dispatch("alarm/ack", {"id": second["id"]})
    cold.wait("alarm", lambda b: b["id"] == second["id"] and b["state"] == "acknowledged")
    assert cold.states(second["id"]) == ["pending", "active", "acknowledged"]
    assert "ignoring a retained alarm/clear" in cold.agent_log()
    assert cold.tap.publish("alarm/clear", b"", retain=True)  # dispatch removes its retained message
    assert cold.stop_agent() == 0


def test_an_alarm_during_a_call_leaves_the_call_and_the_call_leaves_the_alarm(cold):
    cold.start_agent()
    cold.dispatch("call", CALL)
    cold.wait("call/response", lambda b: b["id"] == CALL["id"] and b["response"] == "received")
    cold.gpio.hold(PINS["ack"], 0.1)  # accepted
    cold.wait("call/response", lambda b: b["id"] == CALL["id"] and b["response"] == "accepted")
    cold.gpio.hold(PINS["en_route"], 0.1)
    cold.wait("status", lambda b: b["status"] == "en_route")

    # On the way, the officer is attacked: the alarm goes out; the call stays the crew's.
    alarm = cold.raise_alarm()
    assert alarm["status"] == "en_route"
    cold.wait("status", lambda b: b["emergency"] is True and (b.get("call") or {}).get("state") == "en_route")
    # Dispatch updates the call meanwhile: taken (no second alert, nothing refused); the alarm stays.
    cold.dispatch("call", {"id": CALL["id"], "action": "update", "details": "Deux suspects, un armé"})
    cold.dispatch("alarm/ack", {"id": alarm["id"]})
    cold.wait("alarm", lambda b: b["id"] == alarm["id"] and b["state"] == "acknowledged")
    assert [b["response"] for b in cold.messages("call/response")] == ["received", "accepted", "en_route"]
    # The ack button, with an alarm acknowledged and a call accepted, withdraws nothing.
    cold.gpio.hold(PINS["on_scene"], 0.1)
    cold.wait("call/response", lambda b: b["id"] == CALL["id"] and b["response"] == "on_scene")
    cold.dispatch("alarm/clear", {"id": alarm["id"]})
    cold.wait("alarm", lambda b: b["id"] == alarm["id"] and b["state"] == "cleared")
    cold.wait("status", lambda b: b["emergency"] is False and (b.get("call") or {}).get("state") == "on_scene")
    assert not cold.messages("call/rejected") and not cold.messages("alarm/rejected")
    assert cold.stop_agent() == 0
