"""Parked mode and the receiver's health, in the pure core (agent/core/power.py, agent/core/unit.py)."""

from agent.core.effects import Shutdown
from agent.core.events import Tick
from tests.support.unit_rig import T0, Rig, body, call_payload, config, pubs


def power(**kw):
    return config(power={"ignition_pin": 4, **kw})


def stamped(rig, start, end):
    """(time, body) of each report from ``start`` to ``end``, waking at the unit's deadlines."""
    out = []
    rig.at(start)
    for _ in range(100_000):
        deadline = rig.unit.next_deadline()
        if deadline > end:
            break
        for p in pubs(rig.send(Tick(deadline), at=max(deadline, rig.t)), "telemetry"):
            out.append((rig.t, body(p)))
    rig.at(end)
    return out


def test_ignition_off_and_available_reports_at_the_parked_rate_and_says_so():
    rig = Rig(power(parked_rate_hz=1 / 60))
    out = rig.at(T0 + 0.5).ignition(False)
    [status] = pubs(out, "status")
    assert body(status)["ignition"] == "off"
    assert rig.unit.parked
    reports = stamped(rig, T0 + 0.5, T0 + 600)
    gaps = [b[0] - a[0] for a, b in zip(reports, reports[1:])]
    assert len(reports) == 10 and all(abs(g - 60) < 0.5 for g in gaps), gaps
    assert all(r["ignition"] == "off" for _, r in reports)


def test_ignition_on_after_parking_restores_1_hz_within_one_report():
    rig = Rig(power())
    rig.at(T0 + 0.5).ignition(False)
    stamped(rig, T0 + 0.5, T0 + 200)
    rig.at(T0 + 200.0).ignition(True)
    assert not rig.unit.parked
    reports = stamped(rig, T0 + 200.0, T0 + 205.0)
    assert reports[0][0] - (T0 + 200.0) <= 1.0 + 0.25
    assert len(reports) >= 4 and reports[-1][1]["ignition"] == "on"


def test_a_call_or_the_emergency_button_restores_the_normal_rate_at_once_while_the_ignition_stays_off():
    rig = Rig(power())
    rig.at(T0 + 0.5).ignition(False)
    stamped(rig, T0 + 0.5, T0 + 100)
    rig.at(T0 + 100.0).message("call", call_payload())
    assert not rig.unit.parked
    reports = stamped(rig, T0 + 100.0, T0 + 103.0)
    assert len(reports) >= 2 and reports[0][0] - (T0 + 100.0) <= 1.25

    rig = Rig(power())
    rig.at(T0 + 0.5).ignition(False)
    rig.at(T0 + 30.0).press("emergency")
    assert not rig.unit.parked


def test_a_status_other_than_available_or_out_of_service_is_not_parked():
    rig = Rig(power())
    rig.at(T0 + 0.5).ignition(False)
    assert rig.unit.parked
    rig.at(T0 + 1.0).press("on_scene")
    assert not rig.unit.parked
    rig.at(T0 + 2.0).press("available")
    assert rig.unit.parked


def test_parked_for_shutdown_after_s_asks_for_a_clean_shutdown_once():
    rig = Rig(power(shutdown_after_s=900))
    rig.at(T0 + 0.5).ignition(False)
    out = rig.run_until(T0 + 0.5 + 899)
    assert not [e for e in out if isinstance(e, Shutdown)]
    out = rig.run_until(T0 + 0.5 + 960)
    assert [e for e in out if isinstance(e, Shutdown)] == [Shutdown("ignition")]


def test_a_unit_on_a_call_with_the_engine_off_never_shuts_down():
    rig = Rig(power(shutdown_after_s=60))
    rig.at(T0 + 0.5).message("call", call_payload())
    rig.at(T0 + 1.0).ignition(False)
    out = rig.run_until(T0 + 600)
    assert not [e for e in out if isinstance(e, Shutdown)]


def test_without_an_ignition_line_the_unit_is_never_parked_and_says_null():
    rig = Rig()
    reports = stamped(rig, T0, T0 + 5.5)
    assert len(reports) == 5 and reports[0][1]["ignition"] is None
    assert not rig.unit.parked


def test_the_receiver_state_tells_unplugged_from_no_position():
    rig = Rig()
    out = rig.at(T0 + 0.3).fix()
    assert rig.unit.receiver == "ok"
    [status] = pubs(rig.at(T0 + 0.5).gnss_lost(), "status")
    assert body(status)["fix"] == {"receiver": "lost"}
    rig.at(T0 + 0.9).gnss_restored()
    rig.at(T0 + 1.0).fix(mode=1)
    report = rig.reports(rig.run_until(T0 + 2.5))[-1]
    assert report["fix"]["receiver"] == "no_fix" and report["fix"]["mode"] == 1
    assert body(pubs(rig.log, "status")[-1])["fix"] == {"receiver": "no_fix"}


def test_a_remote_change_of_the_parked_rate_applies_while_parked():
    rig = Rig(power(parked_rate_hz=1 / 60))
    rig.at(T0 + 0.5).ignition(False)
    stamped(rig, T0 + 0.5, T0 + 100)
    rig.unit.reconfigure(power(parked_rate_hz=0.5), rig.at(T0 + 100).now())
    reports = stamped(rig, T0 + 100, T0 + 110)
    assert 4 <= len(reports) <= 6
