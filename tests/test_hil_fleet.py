"""Fleet mode against a real Mosquitto: every report arrives, at the units' cadence."""

from __future__ import annotations

from hil.fleet import run_fleet
from tests.support.broker import Broker

import pytest


def test_fifty_units_at_two_hertz(broker: Broker):
    report = run_fleet(broker.host, broker.port, units=50, duration_s=3.0, rate_hz=2.0)
    assert report.connected == 50
    assert report.reports >= 50 * 2 * 3 * 0.9
    assert report.delivered == report.reports  # the subscriber saw every report made
    assert report.missing == 0 and report.declared_lost == 0  # none lost in transit, none declared
    assert "0 lost in transit, 0 declared lost" in report.text()
    assert report.interval_mean == pytest.approx(0.5, abs=0.05)
    assert report.units_late == 0
    assert "sustained delivery" in report.text()


@pytest.mark.slow
def test_a_thousand_units_at_one_hertz(broker_factory):
    broker = broker_factory(extra_config="sys_interval 1")
    report = run_fleet(broker.host, broker.port, units=1000, duration_s=20.0, rate_hz=1.0, sys_topics=True)
    assert report.connected == 1000
    assert report.sustained_rate >= 950
    assert report.missing == 0
    assert report.broker_received_rate is not None and report.broker_received_rate >= 950
