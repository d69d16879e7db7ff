"""Property-based fuzzing at every inbound boundary, through the real decoders and the core with outputs attached.

Boundaries: ``call``, ``alarm/ack``, ``alarm/clear``, ``config/set``, ``cmd``, the
touchscreen's HTTP API and the receiver's serial byte stream. Hostile text is the
point: lone surrogate escapes (valid JSON, no UTF-8 form), control characters, bidi
overrides, odd types and sizes. After every message the outputs the runtime refreshes
are built and encoded as the adapters do: the touchscreen snapshot through the real
``WebUi.update``, the rider panel rendered by the real ``PanelDisplay`` (luma's dummy
device), the spoken text, and the state file (JSON, UTF-8, restored into a new unit).
Checked: nothing raises; each message gets its documented answer; telemetry keeps its
1 Hz schedule whatever arrives.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.adapters.panel_display import open_display
from agent.adapters.web_ui import WebUi
from agent.config_validate import parse_config
from agent.core import inbound_text, views
from agent.core.events import FixReceived, MessageReceived, Tick
from agent.core.gnss import GnssDecoder
from agent.core.publish import Publish
from agent.core.remote_command import parse_command
from agent.core.remote_config import ConfigState, handle_config_set
from agent.core.replay import RecentIds
from agent.core.unit import Unit
from tests.support.unit_rig import T0, alarm_ids, config, gnss_fix, now

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CORPUS = Path(__file__).parent / "data" / "gnss-corpus"
UTC = dt.timezone.utc

# Text as hostile senders write it: any character, with the troublemakers made likely.
NASTY = ["\ud800", "\udfff", "\ud83d", "\u202e", "\u202d", "\u2066", "\u2069", "\x00", "\x07", "\x1b[2J", "\x9b",
         "\r\n", "\t", "\u200f", "\ufeff", "\U0001f691", "حادث", "é", " "]
hostile_text = st.lists(st.one_of(st.characters(), st.sampled_from(NASTY)), max_size=40).map("".join)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False), hostile_text)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)), max_leaves=12)

def with_unknown(known: dict) -> st.SearchStrategy[dict]:
    """``known`` plus members the contract does not name, with hostile names and values."""
    return st.dictionaries(hostile_text, json_values, max_size=2).map(lambda extra: {**extra, **known})


call_bodies = st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from(["C-1", "C-2", "C-3"]), hostile_text),
     "action": st.sampled_from(["new", "update", "cancel", "close", None])},
    optional={"priority": st.one_of(st.sampled_from([1, 2, 3]), scalars), "nature": hostile_text,
              "address": hostile_text, "code": hostile_text, "details": hostile_text, "caller": hostile_text,
              "reason": hostile_text, "created": st.one_of(st.just("2026-11-25T19:58:00Z"), hostile_text),
              "location": st.one_of(st.fixed_dictionaries({"lat": st.floats(-90, 90), "lon": st.floats(-180, 180)}),
                                    json_values),
              }).flatmap(with_unknown)


def encode(body, ascii_only: bool) -> bytes:
    """JSON as senders produce it: escaped (``\\ud800``, the failure seen in the field) or raw
    (where a lone surrogate cannot be UTF-8: those bytes are what a broken encoder sends)."""
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def payloads(bodies) -> st.SearchStrategy[bytes]:
    return st.one_of(st.builds(encode, bodies, st.booleans()), st.binary(max_size=64),
                     st.sampled_from([b"", b"null", b"[]", b"{", b"[" * 5000, b'{"id": "\\ud800"}']))


def has_lone_surrogate(payload: bytes) -> bool:
    try:
        return inbound_text.lone_surrogate_at(json.loads(payload.decode("utf-8"))) is not None
    except (ValueError, RecursionError):
        return False


# ---------------------------------------------------------------- the outputs


class Outputs:
    """What the runtime refreshes after each event, built and encoded as the adapters do."""

    def __init__(self) -> None:
        self.web = WebUi("127.0.0.1", 0, post=lambda event: None)  # never started: update() only encodes
        self.panel = open_display("dummy")

    def refresh(self, unit: Unit, at) -> None:
        snapshot = views.screen_snapshot(unit, at, backlog=0)
        assert self.web.update(snapshot) is True, snapshot
        assert self.web.rejected_snapshots == 0
        self.panel.render(views.rider_view(unit, at, views.clock_text(at.wall)))
        shown = unit.calls.shown()
        if shown is not None:
            text = views.spoken_text(unit, shown.id, at)
            if text:
                text.encode("utf-8")
        state = json.dumps(unit.persistent_state(), ensure_ascii=False, sort_keys=True).encode("utf-8")
        restored = Unit(unit.config, unit.next_seq, at, alarm_ids=unit.alarm_ids)
        restored.restore(json.loads(state), at)


def check_effects(effects: list) -> list[tuple[str, dict]]:
    out = []
    for effect in effects:
        if isinstance(effect, Publish):
            body = json.loads(effect.payload.decode("utf-8"))
            assert isinstance(body, dict)
            if "ts" in body:
                assert body["time_source"] in ("system", "gnss", "system_unsynced")
            out.append((effect.topic, body))
    return out


@pytest.fixture(scope="module")
def outputs() -> Outputs:
    return Outputs()


# ------------------------------------------------- MQTT: call, alarm/ack, alarm/clear


inbound = st.one_of(
    st.tuples(st.just("call"), payloads(call_bodies)),
    st.tuples(st.sampled_from(["alarm/ack", "alarm/clear"]),
              payloads(st.one_of(st.fixed_dictionaries({"id": json_values}), json_values))),
)


@SETTINGS
@given(script=st.lists(st.tuples(inbound, st.sampled_from([0.05, 0.2, 0.5, 1.0])), min_size=1, max_size=12),
       kind=st.sampled_from(["car", "motorcycle"]))
def test_any_dispatch_message_costs_at_most_itself(outputs, script, kind):
    unit = Unit(config(kind), 1, now(T0), alarm_ids=alarm_ids())
    t = T0
    unit.handle(FixReceived(gnss_fix(t), t), now(t))
    reports = 0

    def run_until(end: float) -> None:
        nonlocal reports
        while unit.next_deadline() <= end:
            due = unit.next_deadline()
            for topic, _ in check_effects(unit.handle(Tick(due), now(due))):
                reports += topic == "telemetry"
            outputs.refresh(unit, now(due))

    for (topic, payload), step in script:
        run_until(t + step)
        t += step
        answers = check_effects(unit.handle(MessageReceived(topic, payload, t), now(t)))
        outputs.refresh(unit, now(t))
        if topic == "call":
            rejected = [body for name, body in answers if name == "call/rejected"]
            if has_lone_surrogate(payload):
                assert rejected and "not valid Unicode" in rejected[0]["error"], answers
            # At most one answer per call message: refused, or received (or nothing: a duplicate...).
            assert len([a for a in answers if a[0] in ("call/rejected", "call/response")]) <= 1, answers
        elif has_lone_surrogate(payload):
            assert not [a for a in answers if a[0] == "alarm"], answers  # a garbled ack or clear touches nothing
    run_until(t + 3.0)
    t += 3.0
    # The schedule held: one report per second of the script, whatever arrived.
    assert abs(reports - (t - T0)) <= 1.5, (reports, t - T0)


# --------------------------------------------------------- config/set and cmd

STATE = ConfigState.initial(config("car"))

config_bodies = st.fixed_dictionaries(
    {"id": st.one_of(st.just("cfg-1"), hostile_text), "version": st.one_of(st.integers(0, 10), scalars),
     "config": st.one_of(st.just({"telemetry": {"rate_hz": 2.0}}), st.fixed_dictionaries(
         {"ui": st.fixed_dictionaries({"language": hostile_text})}), json_values)},
    optional={"expires": st.one_of(st.just("2099-01-01T00:00:00Z"), hostile_text), "sig": hostile_text,
              }).flatmap(with_unknown)
command_bodies = st.fixed_dictionaries(
    {"id": st.one_of(st.just("cmd-1"), hostile_text),
     "command": st.one_of(st.sampled_from(["report_position", "flush_backlog"]), hostile_text)},
    optional={"expires": st.one_of(st.just("2099-01-01T00:00:00Z"), hostile_text), "sig": hostile_text,
              }).flatmap(with_unknown)


@SETTINGS
@given(payload=payloads(config_bodies))
def test_any_config_push_gets_a_result_that_can_be_sent(payload):
    outcome = handle_config_set(payload, STATE, dt.datetime(2026, 11, 25, 20, tzinfo=UTC), parse_config)
    answer = json.loads(outcome.result.to_json().decode("utf-8"))
    assert answer["ok"] is outcome.accepted
    if has_lone_surrogate(payload):
        # Refused as a whole: for its text, or for another fault of the whole payload found first (Infinity...).
        assert not outcome.accepted and ("not valid Unicode" in json.dumps(answer) or answer["errors"][0]["loc"] == ""), answer
    if outcome.accepted:
        assert outcome.state is not None and outcome.state.config.unit.id == STATE.config.unit.id
        json.dumps(outcome.state.config.plain(), ensure_ascii=False).encode("utf-8")


@SETTINGS
@given(payload=payloads(command_bodies))
def test_any_command_gets_a_result_that_can_be_sent(payload):
    outcome = parse_command(payload, STATE.config, dt.datetime(2026, 11, 25, 20, tzinfo=UTC), RecentIds())
    if outcome.rejected is not None:
        answer = json.loads(outcome.rejected.to_json().decode("utf-8"))
        assert answer["ok"] is False and answer["errors"]
    else:
        assert outcome.command is not None and not has_lone_surrogate(payload)
        json.loads(outcome.command.done().to_json().decode("utf-8"))
    if has_lone_surrogate(payload):
        assert outcome.rejected is not None
        answer = json.loads(outcome.rejected.to_json().decode())
        assert "not valid Unicode" in json.dumps(answer) or answer["errors"][0]["loc"] == "", answer


# ------------------------------------------------------ the touchscreen's HTTP API


@pytest.fixture(scope="module")
def touchscreen():
    posted: list = []
    server = WebUi("127.0.0.1", 0, post=posted.append)
    server.start()
    server.update({"inputs": ["en_route", "ack"]})
    yield server, posted
    server.stop()


input_bodies = st.one_of(
    st.builds(lambda n, a, ascii_only: encode({"name": n, "action": a}, ascii_only),
              st.one_of(st.sampled_from(["en_route", "ack", "emergency"]), hostile_text),
              st.one_of(st.sampled_from(["press", "release"]), json_values), st.booleans()),
    payloads(json_values))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=input_bodies, ctype=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"]))
def test_any_touch_input_gets_a_json_answer_and_only_accepted_inputs_become_events(touchscreen, body, ctype):
    server, posted = touchscreen
    before = len(posted)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/api/input", body=body, headers={"Content-Type": ctype})
        reply = conn.getresponse()
        answer = json.loads(reply.read().decode("utf-8"))
    finally:
        conn.close()
    assert reply.status in (200, 400, 413, 415)
    assert answer["ok"] is (reply.status == 200)
    if reply.status == 200:
        event = posted[-1]
        assert len(posted) == before + 1 and event.name in ("en_route", "ack")
    else:
        assert len(posted) == before


# ----------------------------------------------------------- the serial byte stream


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), noise=st.binary(max_size=300),
       cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_any_receiver_bytes_reach_the_outputs_and_keep_the_schedule(outputs, seed, noise, cuts):
    rnd = random.Random(seed)
    data = bytearray((CORPUS / "ublox-8.log").read_bytes()[:4000])
    for _ in range(rnd.randint(0, 40)):  # flip, drop and duplicate bytes
        i = rnd.randrange(len(data))
        match rnd.randrange(3):
            case 0:
                data[i] = rnd.randrange(256)
            case 1:
                del data[i]
            case _:
                data.insert(i, data[i])
    data[rnd.randrange(len(data)):0] = noise
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [bytes(data[a:b]) for a, b in zip([0, *points], [*points, len(data)])]
    decoder = GnssDecoder()
    unit = Unit(config("motorcycle"), 1, now(T0), alarm_ids=alarm_ids())
    t, reports = T0, 0
    for chunk in chunks:
        t += 0.3
        while unit.next_deadline() <= t:
            due = unit.next_deadline()
            reports += sum(topic == "telemetry" for topic, _ in check_effects(unit.handle(Tick(due), now(due))))
        for fix in decoder.feed(chunk):
            reports += sum(topic == "telemetry" for topic, _ in
                           check_effects(unit.handle(FixReceived(fix, t), now(t))))
        outputs.refresh(unit, now(t))
    assert abs(reports - (t - T0)) <= 1.5, (reports, t - T0)
