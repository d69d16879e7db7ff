"""The vehicle's power against the real agent process and a real Mosquitto.

The agent runs unmodified (``python -m agent run``) on the rig (``hil.engine``);
the hold-up supply's warning line and the ignition are pins of the rig's
emulated board. A power cut is a kill -9. The reports are counted by the
consumer's algorithm (hil/seq_ledger.py, through the rig's recorder), as a
track server would: every seq received, or inside a gap the agent declared
in its birth.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hil.agent_proc import POWER_FAIL_PIN
from hil.scenario import Step
from hil.seq_ledger import SeqLedger
from tests.support.broker import wait_until
from tests.test_agent_e2e import Rig


def power_rig(tmp_path: Path, request, *, poweroff: str = "") -> Rig:
    # The unit's own batch interval (10 s online, 30 s offline: SD card wear), so a plain cut
    # loses the tail; the rig's broker keeps sessions and its recorder's session is persistent.
    rig = Rig(tmp_path, overrides={"storage": {"commit_interval_s": 10.0},
                                   "power": {"poweroff_command": poweroff}})
    request.addfinalizer(rig.down)
    return rig


def ledger(rig: Rig) -> SeqLedger:
    """The track server's account of the unit: the rig's recorder counts as docs/mqtt-api.md says."""
    return rig.tap.seq_ledger()


def births(rig: Rig) -> list[dict]:
    return [b for b in rig.messages("online") if b.get("online") is True]


def agent_log_has(rig: Rig, text: str) -> bool:
    return text in (rig.workdir / "agent.log").read_text(errors="replace")


def offline_for(rig: Rig, seconds: float) -> None:
    """Coverage goes (the broker is gone) for ``seconds`` while the unit keeps reporting."""
    before = max(b["seq"] for b in rig.messages("telemetry"))
    rig.broker.stop()
    # Wait on the unit's own record of reports made offline (its status file), not on a sleep.
    status = rig.workdir / "run" / "status.json"
    wait_until(lambda: status.exists() and json.loads(status.read_text())["seq"] >= before + seconds,
               seconds + 10, "reports made offline")


def cut_now(rig: Rig) -> None:
    rig.perform(Step(0, "cut", 0.0, "power_cut", {"off_s": None}))


def power_back_in_coverage_and_drain(rig: Rig) -> dict:
    """The broker and the power come back on the same state; wait until the backlog has drained."""
    rig.broker.wait_port_free()
    rig.broker.start()
    before = len(births(rig))
    rig.perform(Step(0, "on", 0.0, "power_on", {}))
    wait_until(lambda: len(births(rig)) > before, 30, "the new run's birth")
    birth = births(rig)[-1]
    rig.wait("telemetry", lambda b: b["seq"] >= birth["seq_start"] + 3, timeout=30)
    status = rig.workdir / "run" / "status.json"
    wait_until(lambda: status.exists() and json.loads(status.read_text())["outbox"].get("backlog", 1) == 0,
               30, "backlog drained")
    return birth


@pytest.mark.timeout(180)
def test_a_cut_after_the_power_fail_warning_with_the_link_down_loses_nothing(tmp_path, request):
    rig = power_rig(tmp_path, request)
    rig.start_agent()
    first = births(rig)[-1]
    assert first["seq_start"] == 1 and first["seq_gap"] is None
    rig.wait("telemetry", lambda b: b["seq"] >= 3, timeout=20)
    offline_for(rig, 6)  # reports made offline wait in memory for the next batch
    rig.gpio.set_input(POWER_FAIL_PIN, 0)  # the hold-up supply warns...
    wait_until(lambda: agent_log_has(rig, "power failing: every unacknowledged record"), 15, "the commit")
    cut_now(rig)  # ...and its hold-up time ends

    birth = power_back_in_coverage_and_drain(rig)
    assert birth["seq_gap"] is None  # nothing to declare: everything was committed
    led = ledger(rig)
    summary = led.summary()
    assert summary.lost_in_transit == [], summary.text()
    assert summary.declared_lost == [], summary.text()
    assert summary.lo == 1 and summary.hi >= birth["seq_start"]
    # The exact next seq was stored: the new run starts right after the last report made.
    assert max(s for s in led.received if s < birth["seq_start"]) == birth["seq_start"] - 1
    assert rig.stop_agent() == 0


@pytest.mark.timeout(180)
def test_a_cut_without_warning_loses_only_what_the_next_birth_declares(tmp_path, request):
    rig = power_rig(tmp_path, request)
    rig.start_agent()
    rig.wait("telemetry", lambda b: b["seq"] >= 3, timeout=20)
    offline_for(rig, 6)
    cut_now(rig)  # the fuse is pulled: no warning

    birth = power_back_in_coverage_and_drain(rig)
    gap = birth["seq_gap"]
    assert gap is not None and gap["to"] == birth["seq_start"] - 1
    summary = ledger(rig).summary()
    # The consumer never sees an undeclared gap; the lost tail is declared.
    assert summary.lost_in_transit == [], summary.text()
    assert summary.declared_lost, summary.text()
    assert all(gap["from"] <= s <= gap["to"] for s in summary.declared_lost)
    assert rig.stop_agent() == 0


@pytest.mark.timeout(120)
def test_the_warning_with_the_link_up_says_why_stops_cleanly_and_powers_off(tmp_path, request):
    marker = tmp_path / "powered-off"
    rig = power_rig(tmp_path, request, poweroff=f"touch {marker}")
    rig.start_agent()
    rig.wait("telemetry", lambda b: b["seq"] >= 2, timeout=20)
    rig.gpio.set_input(POWER_FAIL_PIN, 0)
    rig.wait("online", lambda b: b == {"online": False, "reason": "power"}, timeout=15)
    assert rig.agent.proc.wait(15) == 0
    assert marker.exists(), rig.agent_log()
