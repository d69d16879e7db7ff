"""Report writers: the JUnit XML parses and says what failed; the HTML is self-contained with its plots."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from hil.engine import ScenarioResult
from hil.expect import evaluate
from hil.report import html_report, junit_xml, results_json, text_table, write_all
from hil.runlog import ActionRecord, Msg, PinSample, RunLog, TruthSample
from hil.scenario import parse_scenario

SCENARIO = parse_scenario("""
[scenario]
name = "demo-call"
description = "a call & <its> answers"
duration_s = 20
[[step]]
at = 2
id = "call"
action = "call"
call_id = "C-1"
[[expect]]
name = "received fast"
kind = "message"
after = "call"
topic = "call/response"
match = { response = "received" }
within_ms = 300
[[expect]]
name = "accepted"
kind = "message"
after = "call"
topic = "call/response"
match = { response = "accepted" }
within_ms = 300
[[expect]]
kind = "cadence"
""")


def make_result() -> ScenarioResult:
    t0 = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.timezone.utc)
    truth = [TruthSample(float(i), t0 + dt.timedelta(seconds=i), 34.2588 + i * 2e-5, -6.5795 - i * 1e-4, True)
             for i in range(20)]
    messages = [Msg(2.04, "call/response", b'{"response":"received"}')]
    for i in range(1, 20):
        when = (t0 + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body = {"seq": i, "fix": {"mode": 3, "time": when, "lat": 34.2588 + i * 2e-5, "lon": -6.5795 - i * 1e-4}}
        messages.append(Msg(i + 0.3, "telemetry", json.dumps(body).encode()))
    log = RunLog(messages=messages, actions=[ActionRecord(2.0, "call", "call", "dispatch sends call C-1")],
                 pins={"call": [PinSample(2.0, 1)]}, truth=truth, end_t=20.0, agent_output="agent log tail")
    return ScenarioResult(SCENARIO, evaluate(SCENARIO, log), log, wall_s=21.5)


def test_outcomes_of_the_fixture_are_what_the_report_shows():
    r = make_result()
    assert [o.passed for o in r.outcomes] == [True, False, True]
    assert not r.passed


def test_junit_xml_parses_and_names_the_failure():
    root = ET.fromstring(junit_xml([make_result()]))
    assert root.tag == "testsuites" and root.get("tests") == "3" and root.get("failures") == "1"
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "hil.demo-call"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"received fast", "accepted", "cadence"}
    failure = cases["accepted"].find("failure")
    assert failure is not None and 'response="accepted"' in failure.get("message", "")
    assert "seen: " in (failure.text or "")
    assert cases["received fast"].find("failure") is None
    assert "agent log tail" in (suite.findtext("system-out") or "")


def test_junit_marks_a_rig_error_on_every_case():
    r = make_result()
    r.error = "the agent exited with 2 before coming online"
    root = ET.fromstring(junit_xml([r]))
    assert root.get("errors") == "3" and len(root.findall(".//error")) == 3


def test_html_is_self_contained_with_the_three_plots():
    page = html_report([make_result()])
    assert page.startswith("<!doctype html>")
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count("<svg") == 4  # overall histogram, then map, histogram, cadence for the scenario
    for cls in ('class="plot map"', 'class="plot hist"', 'class="plot cadence"'):
        assert cls in page
    assert 'class="route"' in page and page.count('class="pub"') >= 19  # route line and each published fix
    assert "a call &amp; &lt;its&gt; answers" in page  # text is escaped
    # The SVG is well-formed XML.
    start = page.index('<svg class="plot map"')
    ET.fromstring(page[start:page.index("</svg>", start) + 6])


def test_json_and_text_table(tmp_path: Path):
    r = make_result()
    data = results_json([r])
    assert data["passed"] is False
    (sc,) = data["scenarios"]
    assert [e["passed"] for e in sc["expectations"]] == [True, False, True]
    assert abs(sc["expectations"][0]["latency_ms"] - 40.0) < 1e-6
    table = text_table([r])
    assert "demo-call: FAIL" in table and 'expected: call/response {response="accepted"}' in table
    paths = write_all([r], tmp_path / "out")
    assert json.loads(paths["json"].read_text())["scenarios"][0]["name"] == "demo-call"
    ET.parse(paths["junit"])
    assert "<svg" in paths["html"].read_text()
