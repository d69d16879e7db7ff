"""Telemetry from the core unit: cadence, seq, the fix in each report, where the time came from."""

import datetime as dt

import pytest

from agent.core.publish import Lane
from agent.core.telemetry import FIX_STALE_S
from tests.support.unit_rig import T0, Rig, body, config, iso, pubs, wall


def test_n_reports_in_n_seconds_with_contiguous_seq_from_next_seq():
    rig = Rig(next_seq=42)
    out = rig.run_until(T0 + 60.5)
    reports = pubs(out, "telemetry")
    assert len(reports) == 60
    assert [p.seq for p in reports] == list(range(42, 102))
    assert all(p.lane is Lane.LIVE and p.qos == 1 and not p.retain for p in reports)
    assert [body(p)["seq"] for p in reports] == [p.seq for p in reports]
    assert rig.unit.next_seq == 102 and rig.unit.counters.reports == 60
    assert pubs(out) == reports  # nothing else is published on a quiet unit


def test_no_drift_and_no_double_report_with_frequent_ticks():
    rig = Rig()
    times = []
    for k in range(1, 30 * 20 + 1):  # a tick every 50 ms for 30.0 s
        out = rig.at(T0 + k * 0.05).tick()
        times += [rig.t] * len(pubs(out, "telemetry"))
    assert len(times) == 29  # slots at +1 .. +29 s (+ 0.2 s grace); the one at +30 is not due yet
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(abs(g - 1.0) for g in gaps) < 0.06
    assert [r["seq"] for r in rig.reports()] == list(range(1, 30))


def test_late_tick_gives_one_report_not_a_burst():
    rig = Rig(next_seq=1)
    rig.run_until(T0 + 3.5)
    assert len(rig.reports()) == 3
    out = rig.at(T0 + 13.3).tick()  # the machine was suspended for 10 s
    assert [p.seq for p in pubs(out, "telemetry")] == [4]
    rig.run_until(T0 + 16.5)
    assert [r["seq"] for r in rig.reports()] == [1, 2, 3, 4, 5, 6, 7]


def test_report_rides_on_the_gnss_epoch_with_a_fresh_fix():
    rig = Rig()
    fixes = [T0 + k + 0.37 for k in range(40)]
    out = rig.run_until(T0 + 40.5, fixes=fixes)
    reports = [body(p) for p in pubs(out, "telemetry")]
    assert 38 <= len(reports) <= 41
    assert [r["seq"] for r in reports] == list(range(1, len(reports) + 1))
    late = reports[8:]  # after the grid moved onto the epochs
    assert all(r["fix"]["mode"] == 3 for r in late)
    assert all(r["fix"]["age"] < 0.1 for r in late), [r["fix"]["age"] for r in late]
    # Built on the epoch itself: the report time equals the epoch's time.
    assert all(r["ts"] == r["fix"]["time"] for r in late[:-1]), late[:3]


def test_fix_arriving_just_before_the_slot_is_reported_at_once():
    rig = Rig()
    rig.at(T0 + 0.95)
    out = rig.fix(lat=34.5, lon=-6.5)
    report = body(pubs(out, "telemetry")[0])
    assert report["fix"]["lat"] == 34.5 and report["fix"]["lon"] == -6.5
    assert report["fix"]["age"] == 0.0 and report["fix"]["mode"] == 3
    assert report["fix"]["time"] == iso(T0 + 0.95)
    assert set(report["fix"]) >= {"mode", "time", "lat", "lon", "alt", "speed", "track", "hdop", "sats", "age"}
    assert rig.at(T0 + 1.25).tick() == []  # that slot is served: no second report


def test_no_fix_ever_is_mode_1_without_position():
    rig = Rig()
    report = rig.reports(rig.run_until(T0 + 1.5))[0]
    assert report["fix"] == {"mode": 1, "time": None, "lat": None, "lon": None, "alt": None, "speed": None,
                             "track": None, "hdop": None, "sats": None, "age": None, "receiver": "no_fix"}


def test_stale_fix_is_mode_1_with_last_position_and_its_age():
    rig = Rig()
    rig.at(T0 + 0.5).fix(lat=34.3, lon=-6.6)
    out = rig.run_until(T0 + 10.5)
    reports = rig.reports(out)
    last = reports[-1]
    assert last["fix"]["mode"] == 1
    assert last["fix"]["lat"] == 34.3 and last["fix"]["lon"] == -6.6
    assert last["fix"]["age"] == pytest.approx(10.2 - 0.5, abs=0.05)  # slot at +10, served after the grace
    fresh = [r for r in reports if r["fix"]["age"] <= FIX_STALE_S]
    assert fresh and all(r["fix"]["mode"] == 3 for r in fresh)


def test_gnss_lost_makes_mode_1_at_once_and_a_fix_brings_it_back():
    rig = Rig()
    rig.at(T0 + 0.9).fix()
    rig.at(T0 + 1.1).gnss_lost()
    report = rig.reports(rig.run_until(T0 + 2.5))[-1]
    assert report["fix"]["mode"] == 1 and report["fix"]["lat"] is not None
    assert report["fix"]["age"] == pytest.approx(2.2 - 0.9, abs=0.05)
    rig.run_until(T0 + 4.5)
    rig.gnss_restored()
    assert rig.unit.current_mode(rig.t) == 1  # the last epoch is older than FIX_STALE_S: still no fix
    out = rig.at(T0 + 4.95).fix()
    assert rig.reports(out)[-1]["fix"]["mode"] == 3


def test_receiver_saying_no_fix_keeps_the_last_position_with_its_age():
    rig = Rig()
    rig.at(T0 + 0.95).fix(lat=34.0, lon=-6.0)
    out = rig.at(T0 + 1.95).fix(mode=1)
    report = rig.reports(out)[-1]
    assert report["fix"]["mode"] == 1
    assert report["fix"]["lat"] == 34.0 and report["fix"]["age"] == pytest.approx(1.0)


def test_two_dimensional_fix_is_mode_2():
    rig = Rig()
    out = rig.at(T0 + 0.95).fix(mode=2)
    assert rig.reports(out)[0]["fix"]["mode"] == 2


def test_time_source_synced_system_clock():
    rig = Rig(synced=True)
    report = rig.reports(rig.run_until(T0 + 1.5))[0]
    assert report["time_source"] == "system"
    assert report["ts"] == iso(T0 + 1.2)


def test_time_source_unsynced_without_gnss():
    rig = Rig(synced=False)
    report = rig.reports(rig.run_until(T0 + 1.5))[0]
    assert report["time_source"] == "system_unsynced"
    assert report["ts"] == iso(T0 + 1.2)


def test_time_source_gnss_carried_forward_when_the_system_clock_is_not_synced():
    rig = Rig(synced=False)
    # The receiver is 30 s ahead of the (unsynchronised) system clock.
    from agent.core.events import Fix, FixReceived
    gnss_time = wall(T0 + 0.5) + dt.timedelta(seconds=30)
    fix = Fix(mode=3, time=gnss_time.time(), date=gnss_time.date(), lat=34.0, lon=-6.0)
    rig.send(FixReceived(fix, T0 + 0.5), at=T0 + 0.5)
    report = rig.reports(rig.run_until(T0 + 5.5))[-1]
    assert report["time_source"] == "gnss"
    expected = wall(T0 + 5.2) + dt.timedelta(seconds=30)
    assert report["ts"] == expected.strftime("%Y-%m-%dT%H:%M:%S.") + f"{expected.microsecond // 1000:03d}Z"


def test_fix_without_date_does_not_give_a_gnss_time():
    rig = Rig(synced=False)
    rig.at(T0 + 0.5).fix(date=False)
    report = rig.reports(rig.run_until(T0 + 1.5))[-1]
    assert report["time_source"] == "system_unsynced"
    assert report["fix"]["time"] == iso(T0 + 0.5)[11:-1]  # time of day only


def test_report_carries_unit_status_siren_emergency_and_call():
    rig = Rig()
    rig.at(T0 + 0.1).press("en_route")
    rig.siren(True)
    report = rig.reports(rig.run_until(T0 + 1.5))[-1]
    assert report["unit"] == "KEN-C-01"
    assert report["status"] == "en_route" and report["siren"] is True
    assert report["emergency"] is False and report["call"] is None


def test_rate_2_hz_gives_two_reports_a_second():
    rig = Rig(config(telemetry={"rate_hz": 2.0}), next_seq=7)
    reports = rig.reports(rig.run_until(T0 + 10.2))
    assert len(reports) == 20
    assert [r["seq"] for r in reports] == list(range(7, 27))


def test_next_deadline_is_the_next_slot_plus_grace():
    rig = Rig()
    assert rig.unit.next_deadline() == pytest.approx(T0 + 1.2)
    rig.run_until(T0 + 1.3)
    assert rig.unit.next_deadline() == pytest.approx(T0 + 2.2)


def test_fix_going_stale_bumps_the_revision_for_the_gnss_led():
    """No event says the receiver fell silent before GnssLost; the LED must still go to 'no fix'."""
    rig = Rig()
    rig.at(T0 + 0.5).fix()
    rig.run_until(T0 + 3.4)
    assert rig.unit.has_fix(rig.t)
    before = rig.unit.revision
    rig.run_until(T0 + 4.5)  # ticks only: the last epoch is now older than FIX_STALE_S
    assert not rig.unit.has_fix(rig.t)
    assert rig.unit.revision > before
    settled = rig.unit.revision
    rig.run_until(T0 + 8.5)
    assert rig.unit.revision == settled  # quiet ticks change nothing a screen shows


def test_ten_hz_receiver_still_gives_one_report_a_second_with_fresh_fixes():
    rig = Rig(next_seq=1000)
    fixes = [T0 + k / 10 + 0.03 for k in range(1, 400)]
    reports = rig.reports(rig.run_until(T0 + 30.5, fixes=fixes))
    assert 29 <= len(reports) <= 31
    assert [r["seq"] for r in reports] == list(range(1000, 1000 + len(reports)))
    assert all(r["fix"]["mode"] == 3 and r["fix"]["age"] < 0.1 for r in reports)


def test_next_deadline_is_the_earliest_of_the_report_slot_and_the_alarm():
    rig = Rig()
    rig.at(T0 + 0.9).press("emergency")
    assert rig.unit.next_deadline() == pytest.approx(T0 + 1.2)  # report slot
    rig.at(T0 + 1.2).tick()
    assert rig.unit.next_deadline() == pytest.approx(T0 + 2.2)
    rig.at(T0 + 2.2).tick()
    assert rig.unit.next_deadline() == pytest.approx(T0 + 2.9)  # end of the hold
    assert pubs(rig.at(T0 + 2.9).tick(), "alarm")


def test_the_fix_the_unit_reports_is_readable_between_reports():
    # What `umps-agent status` shows of the fix, without reaching into the unit.
    rig = Rig()
    out = rig.run_until(T0 + 3.5, fixes=[T0 + k + 0.37 for k in range(3)])
    last = rig.reports(out)[-1]["fix"]
    assert rig.unit.fix(rig.now()) == {**last, "age": rig.unit.fix(rig.now())["age"]}
    assert rig.unit.fix(rig.now())["age"] >= last["age"]
