"""Expectations judged on hand-made run logs: pure and fast."""

from __future__ import annotations

import datetime as dt
import json

from hil.expect import evaluate, lookup, value_matches
from hil.runlog import ActionRecord, Msg, PinSample, RunLog, TruthSample
from hil.scenario import parse_scenario

HEAD = """
[scenario]
duration_s = 30
[[step]]
at = 5
id = "go"
action = "tap"
button = "en_route"
"""


def msg(t: float, topic: str, body: dict | str) -> Msg:
    payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return Msg(t, topic, payload)


def judge(expect: str, log: RunLog):
    (outcome,) = evaluate(parse_scenario(HEAD + expect), log)
    return outcome


def log_with(*messages: Msg, end_t: float = 30.0, go_at: float = 5.0, **kw) -> RunLog:
    return RunLog(messages=list(messages), actions=[ActionRecord(go_at, "go", "tap", "tap en_route")], end_t=end_t, **kw)


MESSAGE = """
[[expect]]
kind = "message"
after = "go"
topic = "status"
match = { status = "en_route" }
within_ms = 300
"""


def test_message_in_time_passes_with_its_latency():
    o = judge(MESSAGE, log_with(msg(4.0, "status", {"status": "en_route"}), msg(5.12, "status", {"status": "en_route"})))
    assert o.passed
    assert round(o.latency_ms) == 120  # the one before the press does not count
    assert o.at == 5.12


def test_message_too_late_fails_and_says_when_it_came():
    o = judge(MESSAGE, log_with(msg(5.5, "status", {"status": "en_route"})))
    assert not o.passed
    assert round(o.latency_ms) == 500 and "5.500 s" in o.seen


def test_message_never_matching_shows_the_last_one_seen():
    o = judge(MESSAGE, log_with(msg(5.1, "status", {"status": "busy"})))
    assert not o.passed
    assert "none matching" in o.seen and '"busy"' in o.seen


def test_a_step_that_failed_fails_its_expectations():
    log = RunLog(actions=[ActionRecord(5.0, "go", "tap", "RigError: no input", ok=False)], end_t=30)
    o = judge(MESSAGE, log)
    assert not o.passed and "failed at 5.00 s" in o.seen


def test_a_step_that_never_ran():
    o = judge(MESSAGE, RunLog(end_t=3.0))
    assert not o.passed and "never ran" in o.seen


def test_match_operators_and_paths():
    data = {"fix": {"mode": 3, "sats": [1, 2]}, "call": None, "ok": True}
    assert lookup(data, "fix.sats.1") == 2
    assert value_matches(lookup(data, "fix.mode"), {"gte": 2})
    assert not value_matches(lookup(data, "fix.mode"), {"lt": 2})
    assert value_matches(lookup(data, "call"), {"null": True})
    assert not value_matches(lookup(data, "fix"), {"null": True})
    assert value_matches(lookup(data, "nope"), {"exists": False})
    assert not value_matches(lookup(data, "nope"), None)  # missing is not null
    assert not value_matches(lookup(data, "ok"), 1)  # true is not 1
    assert value_matches(lookup(data, "fix.mode"), {"in": [2, 3]})
    assert not value_matches(lookup(data, "fix.mode"), {"contains": 3})  # a type error is a mismatch


def test_no_message_fails_on_the_first_offender():
    exp = """
[[expect]]
kind = "no_message"
after = "go"
topic = "call/response"
match = { id = "BAD" }
for_s = 5
"""
    assert judge(exp, log_with(msg(11.0, "call/response", {"id": "BAD"}))).passed  # after the window
    o = judge(exp, log_with(msg(6.0, "call/response", {"id": "BAD"})))
    assert not o.passed and o.at == 6.0


def test_sequence_must_come_in_order():
    exp = """
[[expect]]
kind = "sequence"
after = "go"
topic = "call/response"
matches = [{ response = "received" }, { response = "accepted" }]
within_ms = 5000
"""
    ordered = log_with(msg(6, "call/response", {"response": "received"}), msg(7, "call/response", {"response": "accepted"}))
    backwards = log_with(msg(6, "call/response", {"response": "accepted"}), msg(7, "call/response", {"response": "received"}))
    assert judge(exp, ordered).passed
    o = judge(exp, backwards)
    assert not o.passed and "matched 1 of 2" in o.seen


def telemetry(t: float, seq: int, topic: str = "telemetry", **fix) -> Msg:
    return msg(t, topic, {"seq": seq, "fix": fix or {"mode": 1}})


COMPLETE = """
[[expect]]
kind = "telemetry_complete"
settle_s = 2
"""


def test_telemetry_complete_counts_backlog_and_finds_gaps():
    live = [telemetry(float(t), t + 100) for t in range(0, 29) if not 10 <= t < 20]
    backlog = [telemetry(21.0, t + 100, "telemetry/backlog") for t in range(10, 20)]
    assert judge(COMPLETE, log_with(*live, *backlog)).passed
    o = judge(COMPLETE, log_with(*live, *backlog[:4], *backlog[6:]))
    assert not o.passed
    assert "missing 2: 114-115" in o.seen


def test_telemetry_complete_fails_a_silent_agent():
    o = judge(COMPLETE, log_with(telemetry(1.0, 1), telemetry(2.0, 2)))
    assert not o.passed and "fewer than" in o.seen


CADENCE = """
[[expect]]
kind = "cadence"
rate_hz = 1.0
tolerance = 0.25
min_share = 0.9
"""


def test_cadence_share_of_intervals_in_tolerance():
    steady = [telemetry(t * 1.0 + 0.01 * (t % 2), t) for t in range(30)]
    assert judge(CADENCE, log_with(*steady)).passed
    stalled = [telemetry(float(t), t) for t in range(10)] + [telemetry(float(t), t) for t in range(20, 30)]
    o = judge(CADENCE, log_with(*stalled))
    assert not o.passed and "max 11.000 s" in o.seen
    assert len(o.data["intervals"]) == 19


def test_position_matches_fixes_to_the_route_by_time():
    t0 = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.timezone.utc)
    truth = [TruthSample(float(i), t0 + dt.timedelta(seconds=i), 34.26 + i * 1e-4, -6.58, True) for i in range(10)]

    def fix_at(i: int, north_m: float) -> Msg:
        when = (t0 + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return telemetry(i + 0.2, i, mode=3, time=when, lat=34.26 + i * 1e-4 + north_m / 111_000, lon=-6.58)

    exp = """
[[expect]]
kind = "position"
max_m = 10
min_points = 5
"""
    assert judge(exp, log_with(*[fix_at(i, 3.0) for i in range(10)], truth=truth)).passed
    o = judge(exp, log_with(*[fix_at(i, 40.0) for i in range(10)], truth=truth))
    assert not o.passed and "p95 40.1 m" in o.seen


def pins(*changes: tuple[float, int]) -> list[PinSample]:
    return [PinSample(t, lv) for t, lv in changes]


def led(spec: str, log: RunLog):
    return judge("[[expect]]\nkind = \"led\"\nafter = \"go\"\n" + spec, log)


def test_led_on_must_hold():
    good = log_with(pins={"call": pins((5.2, 1))})
    flicker = log_with(pins={"call": pins((5.2, 1), (5.3, 0))})
    spec = 'led = "call"\nstate = "on"\nwithin_ms = 500\nhold_ms = 400\n'
    o = led(spec, good)
    assert o.passed and round(o.latency_ms) == 200
    o = led(spec, flicker)
    assert not o.passed and "5.20→1, 5.30→0" in o.seen


def test_led_blinking_needs_changes():
    blinking = log_with(pins={"gnss": pins(*[(5.0 + 0.5 * k, k % 2) for k in range(8)])})
    steady = log_with(pins={"gnss": pins((1.0, 1))})
    spec = 'led = "gnss"\nstate = "blinking"\nwithin_ms = 1000\n'
    assert led(spec, blinking).passed
    assert not led(spec, steady).passed


def test_status_led_colour_from_three_channels():
    channels = {"status_red": pins((5.1, 1)), "status_green": pins((0.1, 1)), "status_blue": pins()}
    o = led('led = "status"\nstate = "yellow"\nwithin_ms = 300\n', log_with(pins=channels))
    assert o.passed and o.at == 5.1
    o = led('led = "status"\nstate = "blue"\nwithin_ms = 300\n', log_with(pins=channels))
    assert not o.passed and "was green" in o.seen


def test_agent_alive_reports_the_exit_and_its_output():
    exp = '[[expect]]\nkind = "agent_alive"\n'
    assert judge(exp, log_with()).passed
    o = judge(exp, log_with(agent_exit=1, agent_output="boot\nTraceback\nValueError: boom\n"))
    assert not o.passed and "exited with 1" in o.seen and "ValueError: boom" in o.seen


def test_run_log_round_trips_through_json():
    log = log_with(msg(1.0, "status", {"status": "busy"}), Msg(2.0, "call", b"\xff\xfe"),
                   pins={"call": pins((1.5, 1))},
                   truth=[TruthSample(1.0, dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc), 34.2, -6.5, True)])
    back = RunLog.from_json(json.loads(json.dumps(log.to_json())))
    assert back.messages == log.messages and back.pins == log.pins and back.truth == log.truth
    assert back.actions == log.actions


SEQ_ACCOUNTED = """
[[expect]]
kind = "seq_accounted"
declared_lost_min = 1
"""


def test_seq_accounted_passes_when_every_missing_seq_was_declared_and_fails_on_an_undeclared_one():
    first = [msg(0.0, "online", {"online": True, "seq_start": 1, "seq_gap": None})]
    first += [msg(float(s), "telemetry", {"seq": s}) for s in range(1, 11)]
    restart = [msg(20.0, "online", {"online": True, "seq_start": 100, "seq_gap": {"from": 9, "to": 99}})]
    restart += [msg(20.0 + s, "telemetry", {"seq": s}) for s in range(100, 105)]
    o = judge(SEQ_ACCOUNTED, log_with(*first, *restart))
    assert o.passed, o.seen
    assert "0 lost in transit" in o.seen and o.data["declared_lost"] == 89
    without_seven = [m for m in first if json.loads(m.payload).get("seq") != 7]
    o = judge(SEQ_ACCOUNTED, log_with(*without_seven, *restart))
    assert not o.passed and "1 lost in transit (7)" in o.seen
