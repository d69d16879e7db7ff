"""The watchdog's rules (agent/watchdog_rules.py) on their own: a clock given, no thread."""

from __future__ import annotations

from agent.adapters import sdnotify
from agent.watchdog_rules import REPORT_MAX_GAP_S, CoreProgress, Watched, checks


def progress(at: float) -> CoreProgress:
    core = CoreProgress()
    core.report_made(at, 1.0)
    return core


def test_telemetry_is_on_schedule_within_the_gap_or_five_periods():
    core = progress(100.0)
    assert core.reports_on_schedule(1.0, 100.0 + REPORT_MAX_GAP_S)[0]
    ok, detail = core.reports_on_schedule(1.0, 100.0 + REPORT_MAX_GAP_S + 0.5)
    assert not ok and detail == f"no telemetry report for {REPORT_MAX_GAP_S + 0.5:.1f} s (limit {REPORT_MAX_GAP_S:g} s)"
    # Parked at 1 report a minute: five periods.
    assert core.reports_on_schedule(60.0, 100.0 + 299.0)[0]
    assert not core.reports_on_schedule(60.0, 100.0 + 301.0)[0]


def test_a_rate_change_is_judged_by_the_longer_period():
    # The last report was made parked (60 s); driving again (1 s) before the next slot came.
    core = CoreProgress()
    core.report_made(100.0, 60.0)
    assert core.reports_on_schedule(1.0, 100.0 + 200.0)[0]
    assert core.reports_made == 1


def test_the_checks_read_the_agent_when_they_run():
    alive = {"reader": True}
    watched = Watched(reader_alive=lambda: alive["reader"], uplink_alive=lambda: True, worker_alive=lambda: True,
                      publish_pending=lambda: 0, publish_done=lambda: 0, report_period=lambda: 1.0,
                      inbox_pending=lambda: 0)
    found = {check.name: check for check in checks(CoreProgress(), watched)}
    assert list(found) == ["core loop", "gnss reader", "uplink", "remote requests", "publish path", "telemetry", "inbox"]
    assert found["gnss reader"].run() == (True, "reader thread")
    alive["reader"] = False  # a rebuilt reader is the one read: nothing is captured at build time
    assert found["gnss reader"].run() == (False, "reader thread")
    assert found["telemetry"].restart_now and found["inbox"].restart_now
    assert isinstance(found["core loop"], sdnotify.HealthCheck)
