"""End to end: shipped scenarios against the real agent process, on the rig's own broker.

Each run starts Mosquitto on a free port, the GNSS and pigpio emulators, and
``python -m agent run`` with a generated config; the scenario's expectations
are the assertions. The short ones run by default (about 40 s together); every
shipped scenario runs with ``--run-slow``.

``KNOWN_AGENT_BUGS`` lists expectations the agent is known to fail today, with
the reason; they are checked strictly the other way round (a listed one that
passes fails the test, so the list is emptied when the agent is fixed).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from hil.engine import ScenarioResult, run_scenario
from hil.report import text_table, write_all
from hil.scenario import Scenario, load_scenario, parse_scenario, shipped_scenarios
from hil.slowdown import slowdown
from tests.support.broker import mosquitto_path

# (scenario, expectation name) -> why it fails today.
KNOWN_AGENT_BUGS: dict[tuple[str, str], str] = {}


def check(result: ScenarioResult) -> None:
    assert result.error is None, result.error
    unexpected = [o for o in result.outcomes if not o.passed and (result.scenario.name, o.name) not in KNOWN_AGENT_BUGS]
    fixed = [o.name for o in result.outcomes if o.passed and (result.scenario.name, o.name) in KNOWN_AGENT_BUGS]
    assert not unexpected, text_table([result])
    assert not fixed, f"fixed in the agent, remove from KNOWN_AGENT_BUGS: {fixed}"


@pytest.fixture(autouse=True)
def _need_mosquitto() -> None:
    mosquitto_path()


def test_invalid_call_scenario_with_reports(tmp_path: Path):
    result = run_scenario(with_latency_margin(load_scenario("invalid-call"), 3.0), workdir=tmp_path / "run")
    check(result)
    # The run left its log, and the writers take a real run.
    log = json.loads((tmp_path / "run" / "runlog.json").read_text())
    assert any(m["topic"] == "call/rejected" for m in log["messages"])
    paths = write_all([result], tmp_path / "out")
    root = ET.parse(paths["junit"]).getroot()
    assert root.get("tests") == str(len(result.outcomes)) and root.get("failures") == "0"
    assert 'class="plot map"' in paths["html"].read_text()


def with_latency_margin(scenario: Scenario, factor: float) -> Scenario:
    """The scenario with its "arrives within" bounds widened by ``factor``.

    The latency figures themselves are measured by ``make bench`` (docs/performance.md) on
    a quiet machine; here a run shares two cores with the rest of the suite, so the test
    checks what happens, in order and promptly, not the last hundred milliseconds. Under
    emulation (``make test-arm64``) the factor is multiplied by ``UMPS_RIG_SLOWDOWN``.
    """
    factor *= slowdown()
    widened = tuple(
        replace(e, args={**e.args, "within_ms": e.args["within_ms"] * factor})
        if e.kind in ("message", "sequence", "led") and "within_ms" in e.args else e
        for e in scenario.expectations)
    return replace(scenario, expectations=widened)


def test_full_call_scenario(tmp_path: Path):
    check(run_scenario(with_latency_margin(load_scenario("full-call"), 3.0), workdir=tmp_path / "run"))


def test_an_invalid_agent_config_fails_before_the_agent_starts(tmp_path: Path):
    scenario = parse_scenario("""
[scenario]
name = "bad-pin"
duration_s = 5
[agent]
gpio = { inputs = { ack = { pin = 17 } } }
[[expect]]
kind = "agent_alive"
""")
    result = run_scenario(scenario, workdir=tmp_path / "run")
    assert not result.passed
    assert result.error is not None and "pin 17 used by both" in result.error  # the agent's own validation
    assert "not run" in result.outcomes[0].seen
    assert not (tmp_path / "run" / "agent.log").exists()


def test_an_agent_that_exits_at_start_fails_every_expectation_with_its_output(tmp_path: Path):
    scenario = parse_scenario('[scenario]\nname = "dies"\nduration_s = 5\n[[expect]]\nkind = "agent_alive"\n')
    cmd = "{python} -c \"print('no GNSS port, giving up'); raise SystemExit(3)\""
    result = run_scenario(scenario, workdir=tmp_path / "run", agent_cmd=cmd)
    assert result.error is not None
    assert "exited with 3 before coming online" in result.error and "giving up" in result.error
    assert not result.outcomes[0].passed


STALE_STATE = '{"status": "out_of_service", "status_since": null, "calls": {}}'

KEEP_STATE = """
[scenario]
name = "kept"
duration_s = 4
keep_state = {keep}
[[expect]]
kind = "message"
topic = "status"
at = 0
within_ms = 3000
match = {{ status = "{status}" }}
"""


@pytest.mark.parametrize("keep, status", [(False, "available"), (True, "out_of_service")])
def test_a_run_from_another_directory_starts_clean_unless_it_keeps_state(tmp_path: Path, monkeypatch, keep, status):
    """``umps-hil run --out results`` from any directory: the agent finds the emulators and its state
    where the rig put them, and a past run's state is gone unless the scenario keeps it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    state = Path("results/kept/state")
    state.mkdir(parents=True)
    (state / "unit-state.json").write_text(STALE_STATE)
    scenario = parse_scenario(KEEP_STATE.format(keep=str(keep).lower(), status=status), default_name="kept")
    result = run_scenario(scenario, workdir=Path("results/kept"))
    check(result)
    config = (elsewhere / "results/kept/agent.toml").read_text()
    assert f'state_dir = "{elsewhere / "results/kept/state"}"' in config
    assert not (Path(__file__).parents[1] / "results").exists()


@pytest.mark.slow
@pytest.mark.parametrize("path", shipped_scenarios(), ids=lambda p: p.stem)
def test_every_shipped_scenario(path: Path, tmp_path: Path, monkeypatch):
    """From a directory that is not the repository's, with a relative results directory, as
    ``umps-hil run --out hil-results`` run anywhere."""
    monkeypatch.chdir(tmp_path)
    check(run_scenario(load_scenario(path), workdir=Path("hil-results") / path.stem))


def test_a_crash_raises_the_pre_alarm_the_rider_cancels(tmp_path: Path):
    """The emulated crash sensor read by the real agent, end to end (hil/imu_emulator.py)."""
    check(run_scenario(with_latency_margin(load_scenario("crash-high-side"), 2.0), workdir=tmp_path / "run"))
