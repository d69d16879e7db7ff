"""Report cadence on the monotonic clock (agent.core.telemetry.ReportSchedule)."""

import datetime as dt

from agent.core.events import Fix
from agent.core.telemetry import TIMEBASE_SAMPLES, ReportSchedule, TimeBase, fix_json


def run(schedule: ReportSchedule, until: float, fixes: list[float], step: float = 0.01):
    """Drive the schedule like the runtime does; return (time, by_fix) for each report."""
    reports, t, pending = [], 0.0, sorted(fixes)
    while t < until:
        while pending and pending[0] <= t:
            f = pending.pop(0)
            if schedule.on_fix(f):
                reports.append((f, True))
        if schedule.on_time(t):
            reports.append((t, False))
        t = round(t + step, 6)
    return reports


def test_timer_only_has_no_drift():
    reports = run(ReportSchedule.start(1.0, 0.0), 120.0, [])
    assert len(reports) == 119  # one per slot: slots at 1..119 s (+grace)
    intervals = [b[0] - a[0] for a, b in zip(reports, reports[1:])]
    assert max(abs(i - 1.0) for i in intervals) < 0.02


def test_reports_ride_on_fixes_at_any_phase():
    for phase in (0.05, 0.3, 0.55, 0.8, 0.97):
        fixes = [k + phase for k in range(130)]
        reports = run(ReportSchedule.start(1.0, 0.0), 120.0, fixes)
        late = reports[10:]
        assert all(by_fix for _, by_fix in late), f"phase {phase}: timer still serving"
        assert 118 <= len(reports) <= 121, f"phase {phase}: {len(reports)} reports in 120 s"


def test_ten_hz_receiver_one_hz_reports():
    fixes = [k / 10 + 0.03 for k in range(1300)]
    reports = run(ReportSchedule.start(1.0, 0.0), 120.0, fixes)
    assert 119 <= len(reports) <= 120
    assert sum(by_fix for _, by_fix in reports) >= len(reports) - 2


def test_reports_faster_than_the_receiver_stay_evenly_spaced():
    # 2 Hz reports from a 1 Hz receiver: every other slot has no fix coming, so it is served
    # when due rather than after a grace spent waiting for one.
    fixes = [k + 0.3 for k in range(130)]
    reports = run(ReportSchedule.start(2.0, 0.0), 60.0, fixes)
    settled = reports[10:]
    intervals = [b[0] - a[0] for a, b in zip(settled, settled[1:])]
    assert max(abs(i - 0.5) for i in intervals) < 0.03, sorted(intervals)[::20]
    assert [by_fix for _, by_fix in settled[:6]] in ([True, False] * 3, [False, True] * 3)
    assert 118 <= len(reports) <= 121


def test_a_fix_due_within_the_grace_is_still_waited_for():
    # A 1 Hz receiver whose fix comes just after the slot: the slot waits for it.
    s = ReportSchedule.start(1.0, 0.0)
    for k in range(5):
        s.on_fix(k + 0.03)
    s.next_due = 5.0  # the next fix is expected at 5.03
    assert s.deadline() == 5.0 + s.grace
    assert not s.on_time(5.01)
    assert s.on_fix(5.03)


def test_stall_skips_missed_slots_instead_of_bursting():
    s = ReportSchedule.start(1.0, 0.0)
    assert s.on_time(1.3)
    assert s.on_time(50.0)  # the process was frozen for ~49 s
    assert not s.on_time(50.1)
    assert s.deadline() > 50.0


def test_timebase_prefers_synced_system_then_gnss():
    tb = TimeBase()
    system = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert tb.now(10.0, system, False) == (system, "system_unsynced")
    fix = Fix(mode=3, time=dt.time(12, 0, 0), date=dt.date(2026, 11, 25), lat=34.0, lon=-6.5)
    tb.on_fix(fix, 100.0)
    stamp, source = tb.now(101.5, system, False)
    assert source == "gnss" and stamp == dt.datetime(2026, 11, 25, 12, 0, 1, 500000, tzinfo=dt.timezone.utc)
    assert tb.now(101.5, system, True) == (system, "system")


def test_a_fix_read_late_does_not_pull_gnss_time_back():
    tb = TimeBase()
    system = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def fix_at(second: int) -> Fix:
        return Fix(mode=3, time=dt.time(12, 0, second), date=dt.date(2026, 11, 25), lat=34.0, lon=-6.5)

    def ts(mono: float) -> dt.datetime:
        return tb.now(mono, system, False)[0]

    for k in range(5):  # read 20 ms after each epoch
        tb.on_fix(fix_at(k), 100.02 + k)
    before = ts(104.5)
    tb.on_fix(fix_at(5), 106.2)  # the agent stalled: epoch 5 read 1.2 s late
    assert ts(106.3) > before
    assert ts(106.3) == dt.datetime(2026, 11, 25, 12, 0, 6, 280000, tzinfo=dt.timezone.utc)
    # A real step back of the receiver's UTC (here 3 s: a receiver correcting its
    # time after a cold start) takes over once the earlier samples have left.
    tb.on_fix(fix_at(3), 106.02)
    assert ts(106.5) == dt.datetime(2026, 11, 25, 12, 0, 6, 480000, tzinfo=dt.timezone.utc)  # not yet
    for k in range(7, 6 + TIMEBASE_SAMPLES):
        tb.on_fix(fix_at(k - 3), 100.02 + k)
    assert ts(100.02 + 6 + TIMEBASE_SAMPLES) == dt.datetime(
        2026, 11, 25, 12, 0, 3 + TIMEBASE_SAMPLES, tzinfo=dt.timezone.utc)


def test_fix_json_gives_last_position_with_age_when_no_fix():
    fix = Fix(mode=3, time=dt.time(12, 0, 0), lat=34.0, lon=-6.5, sats=9)
    data = fix_json(fix, 10.0, current_mode=1, now_mono=14.25)
    assert data["mode"] == 1 and data["lat"] == 34.0 and data["age"] == 4.25
    assert fix_json(None, None, current_mode=3, now_mono=1.0)["mode"] == 1
