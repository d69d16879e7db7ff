"""The unit with its crash sensor: pre-alarm, prompt, man-down, crash trace, silent emergency.

The pure unit is fed the rig's physical profiles (hil/imu_profiles.py) in 0.1 s batches, as the
reader posts them, with the profile's GNSS speed; every effect is read as the runtime would.
"""

from __future__ import annotations

import json

import pytest

from agent.config import ConfigError
from agent.core.effects import Announce, Feedback, StoreCrashTrace
from agent.core.emergency import EmergencyState
from agent.core.events import Fix, FixReceived, IgnitionChanged, ImuSamples, ImuState
from agent.core.indicators import indicator_plan
from agent.core.publish import Lane, Publish
from agent.core.views import indicator_view, rider_view, screen_snapshot, spoken_prompt
from hil.imu_profiles import build, sensor_view

from tests.support.unit_rig import Rig, body, config, gnss_fix, pubs, wall

IMU = {"enabled": True}


def rig(kind: str = "motorcycle", **sections) -> Rig:
    return Rig(config(kind, imu={**IMU, **sections.pop("imu", {})}, **sections))


def play(r: Rig, name: str, *, until: float | None = None, seed: int = 1) -> float:
    """Play a profile from the rig's time on; returns the monotonic time its first impact began."""
    profile = build(name, seed=seed)
    base = r.t + 0.01
    fixes, ignition = list(profile.motion.fixes), list(profile.motion.ignition)
    samples = sensor_view(profile)
    for i in range(0, len(samples), 10):
        batch = samples[i:i + 10]
        t_end = base + batch[-1][0]
        if until is not None and t_end > until:
            break
        while fixes and base + fixes[0][0] <= t_end:
            ft, speed = fixes.pop(0)
            fix = gnss_fix(base + ft)
            r.send(FixReceived(Fix(**{**{s: getattr(fix, s) for s in fix.__slots__}, "speed": speed}), base + ft),
                   at=max(r.t, base + ft))
        while ignition and base + ignition[0][0] <= t_end:
            r.send(IgnitionChanged(ignition.pop(0)[1], r.t))
        r.send(ImuSamples(tuple((base + t, *a, *w) for t, a, w in batch), t_end), at=max(r.t, t_end))
    return base + profile.impact_at if profile.impact_at is not None else base


def ride(r: Rig, seconds: float, kmh: float = 50.0) -> None:
    """Riding straight at ``kmh``: a fix a second, samples of 1 g up in 0.1 s batches."""
    for k in range(round(seconds * 10)):
        t = r.t + 0.1
        if k % 10 == 0:
            fix = gnss_fix(t)
            r.send(FixReceived(Fix(**{**{s: getattr(fix, s) for s in fix.__slots__}, "speed": kmh / 3.6}), t), at=t)
        r.send(ImuSamples(tuple((t - 0.1 + (i + 1) / 100, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0) for i in range(10)), t), at=t)


def lie(r: Rig, seconds: float) -> None:
    """Lying still on the right side: samples in 0.1 s batches."""
    for _ in range(round(seconds * 10)):
        t = r.t + 0.1
        r.send(ImuSamples(tuple((t - 0.1 + (i + 1) / 100, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0) for i in range(10)), t), at=t)


def alarms(r: Rig) -> list[dict]:
    return [body(p) for p in pubs(r.log, "alarm")]


def test_a_severe_crash_raises_the_pre_alarm_with_its_summary_and_its_own_window():
    r = rig()
    impact = play(r, "low-side-50", until=r.t + 8.0)
    (pending,) = alarms(r)
    assert pending["state"] == "pending" and pending["reason"] == "crash" and pending["silent"] is False
    crash = pending["crash"]
    assert (crash["cause"], crash["severity"]) == ("impact", "severe")
    assert abs(crash["speed_before"] * 3.6 - 50) < 3 and crash["peak_g"] > 2 and crash["roll_deg"] > 45
    assert abs(json_time(crash["impact_ts"]) - wall(impact).timestamp()) < 0.02
    assert 0 <= json_time(pending["ts"]) - json_time(crash["impact_ts"]) < 0.2  # out within the batch
    # The crash's own cancel window (25 s), not the button's (5 s).
    assert abs(json_time(pending["cancel_until"]) - json_time(crash["impact_ts"]) - 25.0) < 0.5
    assert body(pubs(r.log, "status")[-1])["emergency"] is True
    # The rider sees and hears it: "Chute détectée – appuyez ACK pour annuler (N s)".
    view = rider_view(r.unit, r.now())
    assert view.crash_prompt_s is not None and 15 <= view.crash_prompt_s <= 25
    assert indicator_plan(indicator_view(r.unit, r.now()))["buzzer"].name == "emergency_pending"
    snap = screen_snapshot(r.unit, r.now())
    assert snap["crash"]["text"].startswith("Chute détectée – appuyez ACK pour annuler (") and snap["crash"]["alarm"]
    # Then active, as any alarm whose window passed.
    r.run_until(r.t + 30)
    assert alarms(r)[-1]["state"] == "active" and alarms(r)[-1]["reason"] == "crash"


def json_time(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_the_rider_cancels_the_pre_alarm_with_ack():
    r = rig()
    play(r, "high-side-50", until=r.t + 5.0)
    assert alarms(r)[-1]["state"] == "pending"
    r.after(3.0)
    r.tap("ack")
    assert alarms(r)[-1]["state"] == "cancelled" and alarms(r)[-1]["reason"] == "crash"
    assert rider_view(r.unit, r.now()).crash_prompt_s is None


def test_the_crash_trace_is_stored_at_once_then_complete_and_sent_on_the_backlog_lane():
    r = rig()
    ride(r, 16.0, 30.0)
    play(r, "low-side-30", until=r.t + 7.0)
    first = [e for e in r.log if isinstance(e, StoreCrashTrace)]
    assert len(first) == 1 and not first[0].complete
    pending = alarms(r)[0]
    trace_id = pending["crash"]["trace"]
    assert first[0].trace_id == trace_id
    part = json.loads(first[0].parts[0])
    assert part["alarm"] == pending["id"] and part["complete"] is False
    assert part["imu"]["samples"][0][0] <= -14_900  # the 15 s before the impact are in it already
    assert not pubs(r.log, "crash/trace")  # sent once complete
    lie(r, 12.0)  # lying still, for the rest of the 15 s after
    stores = [e for e in r.log if isinstance(e, StoreCrashTrace)]
    assert stores[-1].complete and stores[-1].trace_id == trace_id
    sent = pubs(r.log, "crash/trace")
    assert sent and all(p.lane is Lane.BACKLOG and p.qos == 1 and not p.retain for p in sent)
    assert [p.payload for p in sent] == list(stores[-1].parts)
    parts = [json.loads(p.payload) for p in sent]
    assert [p["part"] for p in parts] == list(range(1, len(parts) + 1)) and {p["parts"] for p in parts} == {len(parts)}
    assert all(len(p.payload) < 60_000 for p in sent)  # the fleet broker's 64 KiB packets
    samples = [s for p in parts for s in p["imu"]["samples"]]
    assert samples[0][0] <= -14_000 and samples[-1][0] >= 14_000
    assert parts[0]["gnss"]["samples"] and parts[0]["speed_before"] > 7


def test_a_minor_fall_prompts_then_a_rider_down_raises_the_man_down_alarm():
    r = rig(display={"speech": True})
    play(r, "rider-down", until=r.t + 8.0)
    assert not alarms(r)
    assert r.unit.officer.prompt is not None
    assert any(isinstance(e, Announce) for e in r.log)
    assert "Chute détectée – appuyez ACK pour annuler" in spoken_prompt(r.unit, 10)
    assert indicator_plan(indicator_view(r.unit, r.now()))["buzzer"].name == "emergency_pending"
    assert 0 < rider_view(r.unit, r.now()).crash_prompt_s <= 10
    play(r, "rider-down", seed=3)  # lying still all along: the prompt ends, man-down follows
    (pending, *_rest) = alarms(r)
    assert pending["state"] == "pending" and pending["reason"] == "man_down"
    assert pending["crash"]["cause"] == "man_down" and pending["crash"]["severity"] == "severe"


def test_answering_the_prompt_ends_it_and_no_alarm_follows():
    r = rig()
    play(r, "rider-down", until=r.t + 6.0)
    assert r.unit.officer.prompt is not None
    out = r.tap("ack")
    assert Feedback("accepted") in out and r.unit.officer.prompt is None
    lie(r, 60.0)
    assert not alarms(r)


@pytest.mark.parametrize("name", ["parked-drop", "potholes", "hard-stop", "stand-out", "kerbs"])
def test_what_is_no_crash_raises_nothing(name):
    r = rig()
    play(r, name)
    r.run_until(r.t + 30)
    assert not alarms(r) and r.unit.officer.prompt is None
    assert not [e for e in r.log if isinstance(e, StoreCrashTrace)]


def test_a_car_collision_is_a_crash_alarm():
    r = rig("car")
    play(r, "car-collision", until=r.t + 7.0)
    assert alarms(r)[0]["reason"] == "crash" and alarms(r)[0]["crash"]["cause"] == "hard_impact"


def test_the_sensor_state_and_a_unit_without_it():
    r = rig()
    r.send(ImuState("lost", "no IIO device 'auto'", r.t))
    assert r.unit.officer.watch.sensor == "lost"
    plain = Rig(config("motorcycle"))
    plain.send(ImuSamples(((plain.t, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0),), plain.t))
    assert plain.unit.officer.watch is None and not plain.log


# ---------------------------------------------------------- silent emergency


def silent_rig() -> Rig:
    return Rig(config("motorcycle", panel={"silent_gesture": "emergency+ack", "emergency_hold_s": 1.0}))


def test_the_silent_gesture_raises_an_alarm_nothing_on_the_unit_shows():
    r = silent_rig()
    r.press("emergency")
    out = r.after(0.2).press("ack")
    assert not [e for e in out if isinstance(e, Feedback)]  # no chirp, no beep
    r.after(1.0).tick()
    (pending,) = alarms(r)
    assert pending["state"] == "pending" and pending["silent"] is True and pending["reason"] == "button"
    assert body(pubs(r.log, "status")[-1])["emergency"] is True  # dispatch knows
    now = r.now()
    plan = indicator_plan(indicator_view(r.unit, now))
    assert plan["alarm"].level is False and plan["buzzer"].level is False  # no LED, no buzzer
    assert rider_view(r.unit, now).emergency == "none" and rider_view(r.unit, now).cancel_left_s is None
    snap = screen_snapshot(r.unit, now)
    assert snap["emergency"]["state"] == "none" and "emergency_cancel" not in snap["inputs"]
    r.release("ack")
    r.release("emergency")
    # Once the window is over, an ack is refused without a sound.
    r.run_until(r.t + 10)
    assert alarms(r)[-1]["state"] == "active" and alarms(r)[-1]["silent"] is True
    assert not [e for e in r.tap("ack") if isinstance(e, Feedback)]


def test_the_silent_alarm_is_cancelled_and_cleared_like_any_and_stays_silent_after_a_restart():
    r = silent_rig()
    r.press("emergency")
    r.after(0.1).press("ack")
    r.release("ack")
    r.after(1.0).tick()
    r.after(0.5).tap("ack")  # in the window: cancelled, silently
    assert alarms(r)[-1]["state"] == "cancelled" and alarms(r)[-1]["silent"] is True
    r.release("emergency")
    r.after(1.0).press("emergency")
    r.after(0.1).press("ack")
    r.release("ack")
    r.after(1.0).tick()
    second = alarms(r)[-1]
    assert second["state"] == "pending" and second["silent"] is True
    state = json.loads(json.dumps(r.unit.persistent_state()))
    back = Rig(r.unit.config, t0=r.t + 5)
    out = back.unit.restore(state, back.now())
    restored = [body(p) for p in out if isinstance(p, Publish) and p.topic == "alarm"]
    assert restored[0]["silent"] is True and restored[0]["state"] == "active"
    assert indicator_plan(indicator_view(back.unit, back.now()))["alarm"].level is False
    clear = back.message("alarm/clear", json.dumps({"id": second["id"]}).encode())
    assert [body(p)["state"] for p in pubs(clear, "alarm")] == ["cleared"]


def test_emergency_alone_stays_a_loud_alarm_and_a_crash_alarm_is_never_silent():
    r = silent_rig()
    r.press("emergency")
    r.after(1.1).tick()
    assert alarms(r)[-1]["silent"] is False
    assert indicator_plan(indicator_view(r.unit, r.now()))["buzzer"].name == "emergency_pending"


def test_the_hidden_input_gesture_needs_its_pin():
    with pytest.raises(ConfigError, match="silent_emergency"):
        config("motorcycle", panel={"silent_gesture": "input"})
    cfg = config("motorcycle", panel={"silent_gesture": "input", "emergency_hold_s": 1.0},
                 gpio={"inputs": {"silent_emergency": {"pin": 9}}})
    r = Rig(cfg)
    r.press("silent_emergency")
    assert r.unit.emergency.state is EmergencyState.HOLDING and r.unit.officer.hidden
    r.after(1.1).tick()
    assert alarms(r)[-1]["silent"] is True
