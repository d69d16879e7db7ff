"""Crash and fall detection (agent/core/crash_detect.py) on the rig's physical profiles.

The profiles (hil/imu_profiles.py) are what the emulated sensor plays in the scenarios and what
bench/bench_imu.py counts over ten hours; here every one is judged, and hypothesis draws the
road's shocks, bends, stops and parked drops at random sizes and speeds: none may fire.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agent.config import ImuConfig
from agent.core.crash_detect import CrashDetector, Finding
from agent.core.imu_frames import CalibrationError, Mounting, calibrate, lean_deg, pitch_deg, tilt_deg
from hil.imu_profiles import PROFILES, Motion, Profile, build, sensor_view

CFG = ImuConfig()


def run(motion: Motion, config: ImuConfig = CFG, mounting: Mounting | None = None,
        samples: list | None = None) -> list[Finding]:
    """Feed a motion to a detector as the unit does: fixes and ignition interleaved by time."""
    detector = CrashDetector(config)
    fixes, ignition = list(motion.fixes), list(motion.ignition)
    found: list[Finding] = []
    for t, a, w in samples if samples is not None else sensor_view(Profile("x", "", "none", motion)):
        while fixes and fixes[0][0] <= t:
            detector.on_fix(*fixes.pop(0))
        while ignition and ignition[0][0] <= t:
            detector.on_ignition(ignition.pop(0)[1])
        if mounting is not None:
            a, w = mounting.to_vehicle(a), mounting.to_vehicle(w)
        found += detector.feed(t, a, w)
    return found


@pytest.mark.parametrize("name", sorted(PROFILES))
@pytest.mark.parametrize("seed", [1, 2])
def test_each_profile_gives_what_it_should(name, seed):
    profile = build(name, seed=seed)
    found = run(profile.motion)
    if profile.expect == "none":
        assert found == []
    elif profile.expect == "man_down":
        assert [(f.cause, f.severity) for f in found] == [("fall", "minor"), ("man_down", "severe")]
    else:
        assert len(found) == 1 and found[0].severity == profile.expect
        first = found[0]
        # Detected within the hold time (and a sample) of the first ground contact.
        assert 0 <= first.t - profile.impact_at <= CFG.impact_hold_ms / 1000 + 0.015
        assert first.peak_g >= CFG.impact_g and first.speed_before is not None


def test_the_crash_summary_says_what_happened():
    found = run(build("low-side-50").motion)
    (f,) = found
    assert f.cause == "impact" and abs(f.speed_before * 3.6 - 50) < 3
    assert 4.0 < f.peak_g < 7.0 and f.roll_deg > 45


# ----------------------------------------------------- never fires


SHOCKS = st.sampled_from(["pothole", "kerb", "speed_bump", "hard_stop", "bend", "brake", "accelerate"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["motorcycle", "car"]),
       events=st.lists(st.tuples(SHOCKS, st.floats(10, 120), st.floats(0.6, 1.4)), min_size=3, max_size=10))
def test_road_shocks_bends_and_stops_never_fire(seed, kind, events):
    m = Motion(seed=seed, kind=kind).cruise(2.0, 40.0)
    for shock, kmh, size in events:
        if shock == "pothole":
            m.cruise(1.0, kmh).pothole(size)
        elif shock == "kerb":
            m.cruise(1.0, min(kmh, 35.0)).kerb(size)
        elif shock == "speed_bump":
            m.cruise(1.0, min(kmh, 45.0)).speed_bump(size)
        elif shock == "hard_stop":
            m.cruise(1.0, kmh).brake(0.0, 0.8 + 0.15 * (size - 0.6) / 0.8, abs_ripple=True).still(2.0)
        elif shock == "bend":
            m.cruise(0.5, kmh).bend(3.0, 5.0 + 40.0 * (size - 0.6) / 0.8, right=seed % 2 == 0)
        elif shock == "brake":
            m.cruise(1.0, kmh).brake(kmh / 3, 0.6 * size)
        else:
            m.accelerate(min(kmh + 20, 130.0), 0.3 * size)
        m.cruise(1.0)
    assert run(m) == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), ignition_line=st.booleans(), parked_s=st.floats(0.5, 60.0),
       knocks=st.integers(0, 3))
def test_a_parked_motorcycle_that_falls_raises_nothing(seed, ignition_line, parked_s, knocks):
    m = Motion(seed=seed).cruise(3.0, 30.0).brake(0.0, 0.4).still(2.0)
    if ignition_line:
        m.set_ignition(False)
    else:
        parked_s += CFG.parked_after_s  # no ignition line: stopped and upright that long makes it parked
    m.kick_stand_out().still(parked_s)
    for _ in range(knocks):  # someone brushes past it
        m.kerb(0.3).still(3.0)
    m.tip_over().still(CFG.man_down_s + 10.0)
    assert run(m) == []


def test_stopped_for_a_moment_is_not_parked():
    # At a red light for 10 s, ignition on, a car shunts the motorcycle from behind: it counts.
    m = Motion(seed=4).cruise(3.0, 40.0).brake(0.0, 0.5).still(10.0)
    m.impacts.append(m.t)
    for i in range(10):  # 10 g forward for 100 ms
        m.emit((10.0 * math.sin(math.pi * (i + 0.5) / 10), 0.0, 1.0))
    assert [(f.cause, f.severity) for f in run(m.still(5.0))] == [("hard_impact", "severe")]


# ------------------------------------------------------ each rule


def test_an_impact_without_a_fix_counts_as_fast_and_a_fall_without_one_as_slow():
    m = build("low-side-50").motion
    m.fixes.clear()
    (f,) = run(m)
    assert f.severity == "severe" and f.speed_before is None
    down = build("rider-down").motion
    down.fixes.clear()
    assert [(f.cause, f.severity) for f in run(down)][:1] == [("fall", "minor")]


def test_a_slow_impact_is_minor():
    m = Motion(seed=3).cruise(5.0, 15.0)
    m.impacts.append(m.t)
    for i in range(6):  # 3 g along x for 60 ms: a bump into a car at walking pace
        m.emit((-3.0 * math.sin(math.pi * (i + 0.5) / 6), 0.0, 1.0))
    (f,) = run(m.cruise(3.0, 5.0))
    assert (f.cause, f.severity) == ("impact", "minor")


def test_the_thresholds_are_the_configured_ones():
    low = build("low-side-30").motion
    # Impacts set out of reach: the fall rule still finds it, once the motorcycle lies still.
    (fall,) = run(low, replace(CFG, impact_g=6.0, hard_impact_g=8.0))
    assert (fall.cause, fall.severity) == ("fall", "severe") and fall.t - low.impacts[0] > CFG.still_s
    assert [f.severity for f in run(low, replace(CFG, impact_min_speed_kmh=40.0))] == ["minor"]
    assert run(build("rider-down").motion, replace(CFG, man_down_s=0.0))[-1].cause == "fall"


def test_the_crew_answering_ends_the_man_down_watch():
    profile = build("rider-down")
    detector = CrashDetector(CFG)
    fixes = list(profile.motion.fixes)
    causes = []
    for t, a, w in sensor_view(profile):
        while fixes and fixes[0][0] <= t:
            detector.on_fix(*fixes.pop(0))
        for f in detector.feed(t, a, w):
            causes.append(f.cause)
            detector.crew_answered()  # the rider pressed ack at the prompt
    assert causes == ["fall"]


def test_a_vehicle_left_lying_raises_once_and_rearms_once_upright():
    m = build("low-side-50").motion.still(120.0)
    assert len(run(m)) == 1
    # Picked up, ridden again, and a second crash: a second finding.
    m.lean = 0.0
    m.cruise(5.0, 40.0)
    m.low_side(50.0)
    m.still(5.0)
    assert [f.cause for f in run(m)] == ["impact", "impact"]


# ---------------------------------------------------------- mounting


def _rotation(yaw: float, pitch: float, roll: float) -> Mounting:
    """A board turned by these angles (degrees) from flat, x forward."""
    cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    # Rows: the vehicle's axes in board coordinates (an orthonormal, right-handed matrix).
    r = [[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
         [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
         [-sp, cp * sr, cp * cr]]
    return Mounting(tuple(r[0]), tuple(r[1]), tuple(r[2]))  # type: ignore[arg-type]


@pytest.mark.parametrize("angles", [(0, 0, 0), (90, 0, 0), (30, 40, -20), (170, -60, 75), (-45, 10, 180)])
def test_a_board_at_any_angle_reads_true_lean_and_pitch_once_calibrated(angles):
    board = _rotation(*angles)
    stand = Motion(seed=1)
    stand.lean = -12.0
    level = board.to_board(stand.up())
    upright = board.to_board((0.0, 0.0, 1.0))
    mounting = calibrate(level, upright, kind="motorcycle", forward_axis="+x")
    for got, want in ((mounting.x, board.x), (mounting.y, board.y), (mounting.z, board.z)):
        assert all(abs(g - w) < 1e-6 for g, w in zip(got, want))
    leaning = Motion(seed=1)
    leaning.lean, leaning.pitch = 25.0, -7.0
    reading = mounting.to_vehicle(board.to_board(leaning.up()))
    assert abs(lean_deg(reading) - 25.0) < 1e-6 and abs(pitch_deg(reading) + 7.0) < 1e-6
    # And the detector reads the crash through the mounting as it would flat.
    profile = build("high-side-50")
    samples = [(t, board.to_board(a), board.to_board(w)) for t, a, w in sensor_view(profile)]
    assert [f.cause for f in run(profile.motion, mounting=mounting, samples=samples)] == ["hard_impact"]


def test_a_car_keeps_its_configured_forward_axis():
    board = _rotation(0, 20, 0)  # tilted 20 degrees nose up on its bracket
    up = board.to_board((0.0, 0.0, 1.0))
    mounting = calibrate(up, up, kind="car", forward_axis="+x")
    assert abs(tilt_deg(mounting.to_vehicle(up))) < 1e-6
    assert abs(mounting.x[0] - math.cos(math.radians(20))) < 1e-6


def test_calibration_refuses_what_cannot_define_a_mounting():
    with pytest.raises(CalibrationError, match="side stand"):
        calibrate((0, 0, 1.0), (0, 0.01, 1.0), kind="motorcycle", forward_axis="+x")
    with pytest.raises(CalibrationError, match="not 1 g"):
        calibrate((0, 0, 1.6), (0, 0, 1.0), kind="motorcycle", forward_axis="+x")
    with pytest.raises(CalibrationError, match="forward"):
        calibrate((0, 0, 1.0), (0, 0, 1.0), kind="car", forward_axis="+z")


def test_a_mounting_survives_its_file_and_a_bad_one_is_refused():
    m = _rotation(30, 40, -20)
    assert Mounting.restore(m.snapshot()).z == m.z
    for bad in ({}, {"version": 1, "x": [1, 0, 0], "y": [1, 0, 0], "z": [0, 0, 1]}, {"version": 2}, "x"):
        with pytest.raises(ValueError):
            Mounting.restore(bad)
    assert Mounting.from_axes("-y", "+z").to_vehicle((0.0, -1.0, 0.0)) == (1.0, 0.0, 0.0)
