"""The vehicle's power against the real agent process and a real Mosquitto.

The agent runs unmodified (``python -m agent run``); the hold-up supply's
warning line and the ignition are pins of the rig's emulated board. A power
cut is a kill -9. The reports are counted by the consumer's algorithm
(hil/seq_ledger.py), as a track server would: every seq received, or inside
a gap the agent declared in its birth.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from hil.seq_ledger import SeqLedger
from tests.support.broker import Broker, Recorder, wait_until
from tests.test_agent_e2e import UNIT, Rig

IGNITION_PIN = 4
POWER_FAIL_PIN = 7
# What a unit installs with: 10 s batches online, 30 s offline (SD card wear), so a plain cut
# loses the tail.
POWER = f"""
[power]
ignition_pin = {IGNITION_PIN}
ignition_debounce_s = 0.05
power_fail_pin = {POWER_FAIL_PIN}
"""


def power_rig(tmp_path: Path, request, *, poweroff: str = "") -> Rig:
    rig = Rig(tmp_path, extra=POWER + f'poweroff_command = "{poweroff}"\n')
    request.addfinalizer(rig.close)
    # The unit's own batch interval, not the quick one the other end-to-end tests use.
    rig.config.write_text(rig.config.read_text().replace("commit_interval_s = 1.0", "commit_interval_s = 10.0"))
    # A track server that keeps its session: it gets what the broker took while it was away.
    rig.broker.stop()
    rig.broker = Broker(tmp_path / "broker", port=rig.broker.port, persistence=True).start()
    rig.recorder.stop()
    rig.recorder = Recorder(rig.broker, topics=(f"umps/{UNIT}/#",), client_id="track-server",
                            persistent=True).start()
    rig.gpio.set_input(IGNITION_PIN, 0)  # ignition on (opto-isolator pulls low)
    rig.gpio.set_input(POWER_FAIL_PIN, 1)  # the supply is fine
    return rig


def ledger(rig: Rig) -> SeqLedger:
    led = SeqLedger()
    for m in rig.recorder.on(f"umps/{UNIT}/online"):
        led.on_message(m.topic, m.payload)
    for topic in ("telemetry", "telemetry/backlog"):
        for m in rig.recorder.on(f"umps/{UNIT}/{topic}"):
            led.on_message(m.topic, m.payload)
    return led


def births(rig: Rig) -> list[dict]:
    return [b for b in rig.messages("online") if b.get("online") is True]


def wait_log(rig: Rig, text: str, timeout: float = 15.0) -> None:
    wait_until(lambda: text in (rig.tmp / "agent.log").read_text(errors="replace"), timeout, repr(text))


def made_offline(rig: Rig, seconds: float) -> None:
    """Coverage goes (the broker is gone) for ``seconds`` while the unit keeps reporting."""
    rig.broker.stop()
    since = time.monotonic()
    wait_until(lambda: time.monotonic() - since >= seconds, seconds + 5, "time offline")


def restart_in_coverage_and_drain(rig: Rig) -> dict:
    """The broker and the agent come back on the same state; wait until the backlog has drained."""
    rig.gpio.set_input(POWER_FAIL_PIN, 1)
    rig.broker.start()
    before = len(births(rig))
    rig.start_agent()
    wait_until(lambda: len(births(rig)) > before, 20, "the new run's birth")
    birth = births(rig)[-1]
    start = birth["seq_start"]
    # Drained: live reports of the new run flow and the status file shows no backlog.
    rig.wait("telemetry", lambda b: b["seq"] >= start + 3, timeout=30)
    status = rig.tmp / "run" / "status.json"
    wait_until(lambda: status.exists() and json.loads(status.read_text())["outbox"].get("backlog", 1) == 0,
               30, "backlog drained")
    return birth


@pytest.mark.timeout(180)
def test_a_cut_after_the_power_fail_warning_with_the_link_down_loses_nothing(tmp_path, request):
    rig = power_rig(tmp_path, request)
    rig.start_agent()
    first = rig.wait("online", lambda b: b.get("online") is True, timeout=20)
    assert first["seq_start"] == 1 and first["seq_gap"] is None
    rig.wait("telemetry", lambda b: b["seq"] >= 3, timeout=20)
    made_offline(rig, 6.0)  # some reports made offline wait in memory for the next batch
    rig.gpio.set_input(POWER_FAIL_PIN, 0)  # the hold-up supply warns...
    wait_log(rig, "power failing: every unacknowledged record")
    rig.proc.send_signal(signal.SIGKILL)  # ...and its hold-up time ends
    rig.proc.wait(10)
    rig.log.close()

    birth = restart_in_coverage_and_drain(rig)
    assert birth["seq_gap"] is None  # nothing to declare: everything was committed
    summary = ledger(rig).summary()
    assert summary.lost_in_transit == [], summary.text()
    assert summary.declared_lost == [], summary.text()
    assert summary.lo == 1 and summary.hi >= birth["seq_start"]
    # The exact next seq was stored: the new run starts right after the last report made.
    assert max(s for s in ledger(rig).received if s < birth["seq_start"]) == birth["seq_start"] - 1
    assert rig.stop_agent() == 0


@pytest.mark.timeout(180)
def test_a_cut_without_warning_loses_only_what_the_next_birth_declares(tmp_path, request):
    rig = power_rig(tmp_path, request)
    rig.start_agent()
    rig.wait("telemetry", lambda b: b["seq"] >= 3, timeout=20)
    made_offline(rig, 6.0)
    rig.proc.send_signal(signal.SIGKILL)  # the fuse is pulled: no warning
    rig.proc.wait(10)
    rig.log.close()

    birth = restart_in_coverage_and_drain(rig)
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
    assert rig.proc.wait(15) == 0
    rig.log.close()
    assert marker.exists(), rig.agent_log()
