"""Random event sequences through the core unit: it never raises, and its promises hold throughout.

Checked after every event: every effect is a known kind; every payload is a UTF-8 JSON
object; telemetry ``seq`` is contiguous from the first ``next_seq``, across restarts too;
the last status and alarm messages published say what the unit now is (the retained copies
are never stale); ``emergency`` in status and telemetry matches the alarm; the stored state is JSON
and restores.
"""

import json

from hypothesis import HealthCheck, given, settings, strategies as st

from agent.core.effects import Feedback, Speak
from agent.core.events import (
    ButtonPressed, ButtonReleased, FixReceived, GnssLost, GnssRestored, LinkDown, LinkUp, MessageReceived,
    SirenChanged, Tick,
)
from agent.core.publish import Lane, Publish
from agent.config import STATUS_CODES
from agent.core.unit import SUBSCRIPTIONS, Unit
from tests.support.unit_rig import T0, alarm_ids, alarm_uuid, call_payload, config, gnss_fix, now

INPUTS = (*STATUS_CODES, "ack", "decline", "cleared", "emergency", "horn")
CALL_IDS = ("C-1", "C-2", "C-3")

call_messages = st.builds(
    lambda cid, action, priority, nature: call_payload(id=cid, action=action, priority=priority, nature=nature),
    st.sampled_from(CALL_IDS), st.sampled_from(["new", "update", "cancel", "close"]),
    st.sampled_from([1, 2, 3, 4, None]), st.sampled_from(["Vol", "حادثة سير", "", None]),
)
alarm_messages = st.one_of(
    st.just(b""), st.builds(lambda i: json.dumps({"id": alarm_uuid(i)}).encode(), st.integers(0, 3)),
    st.builds(lambda i: json.dumps({"id": i}).encode(), st.integers(0, 3)),  # numbered ids: gone, garbled now
    st.sampled_from([b"[" * 5000, b"\xff", b"{}", b'{"id": "1"}', b"null"]),
)
messages = st.one_of(
    st.tuples(st.just("msg"), st.just("call"), st.one_of(call_messages, st.binary(max_size=40))),
    st.tuples(st.just("msg"), st.sampled_from(["alarm/ack", "alarm/clear"]), alarm_messages),
    st.tuples(st.just("msg"), st.sampled_from([*SUBSCRIPTIONS, "x/y"]), st.binary(max_size=40)),
)

steps = st.sampled_from([0.0, 0.01, 0.09, 0.2, 0.5, 0.99, 1.0, 1.3, 2.1, 4.0, 9.0])
actions = st.one_of(
    st.tuples(st.just("tick")),
    st.tuples(st.just("fix"), st.sampled_from([1, 2, 3]), st.booleans()),
    st.tuples(st.sampled_from(["lost", "restored", "up", "down", "restart", "deadline"])),
    st.tuples(st.just("press"), st.sampled_from(INPUTS), st.sampled_from(["panel", "touch"])),
    st.tuples(st.just("release"), st.sampled_from(INPUTS)),
    st.tuples(st.just("siren"), st.booleans()),
    messages,
    messages,
)


def event_for(action: tuple, t: float):
    match action:
        case ("tick",) | ("deadline",):
            return Tick(t)
        case ("fix", mode, dated):
            return FixReceived(gnss_fix(t, mode=mode, date=dated), t)
        case ("lost",):
            return GnssLost("silent", t)
        case ("restored",):
            return GnssRestored(t)
        case ("up",):
            return LinkUp("b", t)
        case ("down",):
            return LinkDown("gone", t)
        case ("press", name, source):
            return ButtonPressed(name, t, source)
        case ("release", name):
            return ButtonReleased(name, t)
        case ("siren", on):
            return SirenChanged(on, t)
        case ("msg", topic, payload):
            return MessageReceived(topic, payload, t)
    raise AssertionError(action)


def check_effects(unit: Unit, effects: list, seqs: list[int], last_status: list, last_alarm: list) -> None:
    for effect in effects:
        assert isinstance(effect, (Publish, Feedback, Speak)), effect
        if not isinstance(effect, Publish):
            continue
        body = json.loads(effect.payload.decode("utf-8"))
        assert isinstance(body, dict)
        if effect.topic == "telemetry":
            assert effect.seq == body["seq"] and effect.lane is Lane.LIVE
            seqs.append(effect.seq)
        else:
            assert effect.seq is None
        if effect.topic == "status":
            assert effect.retain and effect.lane is Lane.STATUS and body["status"] in STATUS_CODES
            last_status[:] = [body]
        if effect.topic == "alarm":
            assert effect.retain and effect.lane is Lane.EMERGENCY
            last_alarm[:] = [body]
    if last_status:
        status = last_status[0]
        call = unit.calls.shown()
        assert (status["status"], status["siren"], status["emergency"], status["call"]) == (
            unit.status.state, unit.siren, unit.emergency.alarm_out,
            {"id": call.id, "state": call.state} if call else None,
        ), "the retained status is stale"
    if last_alarm:
        # The retained alarm is never stale either, restarts included.
        assert last_alarm[0]["active"] == unit.emergency.alarm_out
        if unit.emergency.alarm_out:
            assert last_alarm[0]["id"] == unit.emergency.alarm_id
    reports = [json.loads(e.payload) for e in effects if isinstance(e, Publish) and e.topic == "telemetry"]
    if reports:
        assert reports[-1]["emergency"] == unit.emergency.alarm_out
        assert reports[-1]["status"] == unit.status.state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(steps, actions), max_size=60), st.integers(0, 10**9), st.sampled_from(["car", "motorcycle"]))
def test_random_events_never_raise_and_keep_the_promises(script, first_seq, kind):
    cfg = config(kind)
    t = T0
    ids = alarm_ids()  # the same source across restarts, as a unit's random ids never repeat
    unit = Unit(cfg, first_seq, now(t), alarm_ids=ids)
    seqs: list[int] = []
    last_status: list = []
    last_alarm: list = []
    for step, action in script:
        t += step
        if action == ("restart",):
            stored = json.loads(json.dumps(unit.persistent_state()))
            unit = Unit(cfg, unit.next_seq, now(t), alarm_ids=ids)  # the runtime persists next_seq with each report
            effects = unit.restore(stored, now(t))
            # The siren is read again from the input after a restart, and the status is republished
            # at connect: the promise about the last status message starts afresh.
            last_status.clear()
        else:
            if action == ("deadline",):
                t = max(t, unit.next_deadline())
            effects = unit.handle(event_for(action, t), now(t))
        check_effects(unit, effects, seqs, last_status, last_alarm)
    assert seqs == list(range(first_seq, first_seq + len(seqs)))
    assert unit.next_seq == first_seq + len(seqs)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.05, 0.3, 0.8, 1.0, 1.7, 3.5]), min_size=1, max_size=80))
def test_waking_at_each_deadline_gives_one_report_per_slot(gaps):
    """However irregular the wake-ups, reports keep to one per slot: never more than elapsed time allows."""
    unit = Unit(config(), 0, now(T0), alarm_ids=alarm_ids())
    t, seqs = T0, []
    for gap in gaps:
        t += gap
        effects = unit.handle(Tick(t), now(t))
        seqs += [e.seq for e in effects if isinstance(e, Publish) and e.topic == "telemetry"]
    assert seqs == list(range(len(seqs)))
    assert len(seqs) <= int(t - T0)  # one slot per second, the first due at T0 + 1
