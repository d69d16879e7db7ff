"""The unit starts and reports whatever its card does: black-box, against the real agent process.

The state directory is a small tmpfs of its own (tests/support/disk.py: root
only), filled to the last byte to play a full SD card; the rest is the rig of
tests/test_agent_e2e.py (a private Mosquitto, NMEA on a pty, emulated pins).
What is checked is what dispatch sees on MQTT (telemetry, birth, status, the
seq account) and what ``umps-agent status`` says.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.broker import wait_until
from tests.support.disk import fill, small_tmpfs
from tests.test_agent_e2e import PINS, Rig
from tests.test_fault_isolation import _status

# The agent reports within this long of being started, whatever its card does (issue 26).
REPORT_WITHIN_S = 5.0


@pytest.fixture
def full_card_rig(tmp_path, request):
    with small_tmpfs(tmp_path / "state", "2m") as card:
        rig = Rig(tmp_path, overrides={"panel": {"emergency_hold_s": 1.0, "emergency_cancel_s": 1.0}})
        request.addfinalizer(rig.down)
        yield rig, card


def _restart_and_time_first_report(rig: Rig, after_seq: int) -> tuple[dict, float]:
    started = time.monotonic()
    rig.start_agent()  # returns at the birth
    report = rig.wait("telemetry", lambda b: b["seq"] > after_seq, timeout=20)
    first = next(m for m in rig.tap.on("telemetry") if m.mono >= started and json.loads(m.payload)["seq"] > after_seq)
    return report, first.mono - started


def test_a_restart_on_a_full_card_reports_within_5_s_and_is_durable_again_losing_no_seq(full_card_rig):
    rig, card = full_card_rig
    rig.start_agent()
    rig.wait("status", lambda b: b["durable"] is True)
    rig.wait("telemetry", lambda b: b["fix"]["mode"] >= 2, timeout=20)
    filler = fill(card)
    rig.gpio.hold(PINS["en_route"], 0.1)  # a change the card cannot take
    rig.wait("status", lambda b: b["status"] == "en_route" and b["durable"] is False)
    before = rig.wait("telemetry")["seq"]

    assert rig.stop_agent() == 0  # a restart (an update, the watchdog) on the full card
    last = max(json.loads(m.payload)["seq"] for m in rig.tap.on("telemetry"))
    _, took = _restart_and_time_first_report(rig, last)
    assert took < REPORT_WITHIN_S, f"first report {took:.1f} s after the start"
    birth = rig.wait("online", lambda b: b.get("online") is True and b["seq_start"] > before)
    assert birth["durable"] is False and "full" in birth["durable_reason"]
    assert birth["seq_start"] == last + 1 and birth["seq_gap"] is None  # neither skipped nor reused
    status = rig.wait("status", lambda b: b["durable"] is False)
    assert status["status"] == "en_route" and "full" in status["durable_reason"]
    report = _status(rig)
    assert report["storage"]["durable"] is False and "full" in report["storage"]["reason"]
    rig.wait("telemetry", lambda b: b["seq"] >= last + 5, timeout=15)  # and it keeps running

    filler.unlink()  # room again: durable by itself, within a few seconds
    rig.wait("status", lambda b: b["durable"] is True and b["durable_reason"] is None, timeout=10)
    wait_until(lambda: _status(rig)["storage"]["durable"] is True, 10, "status: durable")
    end = rig.wait("telemetry", lambda b: b["seq"] >= last + 8, timeout=15)["seq"]
    assert rig.stop_agent() == 0
    assert '"en_route"' in (card / "unit-state.json").read_text()

    account = rig.tap.seq_ledger().summary()
    assert account.lost_in_transit == [] and account.declared_lost == [], account.text()
    assert account.hi >= end


def test_an_alarm_raised_on_a_full_card_survives_a_power_cut_and_no_seq_is_reused(full_card_rig):
    rig, card = full_card_rig
    rig.start_agent()
    rig.wait("telemetry", timeout=20)
    fill(card)
    rig.gpio.hold(PINS["emergency"], 1.5)
    alarm = rig.wait("alarm", lambda b: b["state"] == "active", timeout=10)
    rig.wait("status", lambda b: b["emergency"] is True and b["durable"] is False)
    made = rig.wait("telemetry", lambda b: b["emergency"] is True)["seq"]

    rig.agent.proc.kill()  # a power cut, the card still full
    rig.agent.proc.wait(10)
    last = max(json.loads(m.payload)["seq"] for m in rig.tap.on("telemetry"))
    _, took = _restart_and_time_first_report(rig, last)
    assert took < REPORT_WITHIN_S, f"first report {took:.1f} s after the start"
    again = rig.wait("alarm", lambda b: b["state"] == "active" and b["id"] == alarm["id"] and b["active"])
    assert again["unit"] == alarm["unit"]
    birth = rig.wait("online", lambda b: b.get("online") is True and b["seq_start"] > made)
    assert birth["seq_start"] > last  # nothing reused after the cut
    account = rig.tap.seq_ledger().summary()
    assert account.lost_in_transit == [], account.text()
