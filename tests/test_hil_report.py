"""Report writers: the JUnit XML parses and says what failed; the HTML is self-contained with its plots."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hil.engine import ScenarioResult
from hil.expect import evaluate
from hil.report import html_report, junit_xml, results_json, text_table, write_all
from hil.runlog import ActionRecord, Msg, PinSample, RunLog, TruthSample
from hil.scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[1]

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


def test_a_failed_scenario_says_why_at_the_top_with_the_agents_lines_of_the_moment():
    r = make_result()
    r.log.agent_lines = [
        (-1.0, "2025-03-01 10:00:00,100 WARNING agent.adapters.serial_gnss: GNSS slow to open"),
        (-0.5, "2025-03-01 10:00:00,600 INFO    agent.runtime: boring start-up line"),
        (2.05, "2025-03-01 10:00:03,150 INFO    agent.core: call C-1 shown"),
        (2.2, "2025-03-01 10:00:03,300 ERROR   agent.adapters.gpio: ack button read failed"),
        (12.0, "2025-03-01 10:00:13,100 INFO    agent.runtime: much later, unrelated"),
    ]
    page = html_report([r])
    why = page.index("Why it failed")
    # Before anything else of the scenario: its table, its plots, the collapsed log at the bottom.
    assert why < page.index('<h2 id="demo-call">') and why < page.index("<svg")
    section = html.unescape(page[why:page.index("</section>", why)])
    assert "accepted" in section and 'call/response {response="accepted"} within 300 ms after call' in section
    assert "seen: " in section
    # The agent's lines of the span judged (the call at 2 s, 300 ms, with a 2 s margin) and the
    # warnings before it; not the rest.
    assert "call C-1 shown" in section and "ack button read failed" in section
    assert "GNSS slow to open" in section
    assert "boring start-up line" not in section and "much later" not in section
    assert 'class="warn"' in section  # warnings and errors stand out
    # The expectation knows the span it judged; the JSON says it too.
    accepted = next(o for o in r.outcomes if o.name == "accepted")
    assert accepted.window == (2.0, 2.3)
    assert results_json([r])["scenarios"][0]["expectations"][1]["window"] == [2.0, 2.3]
    # A passing run has no such section.
    ok = make_result()
    ok.outcomes = [o for o in ok.outcomes if o.passed]
    assert "Why it failed" not in html_report([ok])


def test_time_to_a_fix_has_its_own_histogram_apart_from_the_reactions():
    scenario = parse_scenario("""
[scenario]
name = "fix-and-call"
duration_s = 20
[[step]]
at = 2
id = "call"
action = "call"
call_id = "C-1"
[[expect]]
name = "first fix"
kind = "message"
at = 0
topic = "telemetry"
match = { "fix.mode" = { gte = 2 } }
within_ms = 5000
[[expect]]
name = "received fast"
kind = "message"
after = "call"
topic = "call/response"
match = { response = "received" }
within_ms = 300
""")
    log = RunLog(messages=[Msg(1.9, "telemetry", b'{"seq": 1, "fix": {"mode": 3}}'),
                           Msg(2.04, "call/response", b'{"response": "received"}')],
                 actions=[ActionRecord(2.0, "call", "call", "dispatch sends call C-1")], end_t=20.0)
    r = ScenarioResult(scenario, evaluate(scenario, log), log, wall_s=21.0)
    assert [o.measure for o in r.outcomes] == ["fix", "latency"]
    page = html_report([r])
    assert page.count('<svg class="plot hist fixhist"') == 2 and page.count('<svg class="plot hist"') == 2
    reactions = page[page.index("all scenarios: reaction latencies"):]
    reactions = reactions[:reactions.index("</svg>")]
    fixes = page[page.index("all scenarios: GNSS time to a fix"):]
    fixes = fixes[:fixes.index("</svg>")]
    # The 1.9 s first fix is not a 1,900 ms reaction squashing the 40 ms one into the first bar.
    assert "40-50 ms: 1" in reactions and "1900" not in reactions
    assert re.search(r"1\.[89]-1\.9\d* s: 1|1\.8-2 s: 1|1\.9-2 s: 1", fixes), fixes
    assert results_json([r])["scenarios"][0]["expectations"][0]["measure"] == "fix"


def test_each_dashed_step_line_of_the_cadence_plot_is_labelled():
    r = make_result()
    r.log.actions.append(ActionRecord(8.0, "enter-tunnel", "gnss_fault", "GNSS fault tunnel"))
    page = html_report([r])
    start = page.index('<svg class="plot cadence"')
    svg = page[start:page.index("</svg>", start) + 6]
    ET.fromstring(svg)  # still well-formed
    labels = re.findall(r'<text class="steplbl"[^>]*>([^<]*)</text>', svg)
    assert labels == ["call", "enter-tunnel"]
    assert svg.count('class="step"') == 2 + 1  # the two lines, and the legend's sample
    assert "a step (labelled with its id)" in svg and "live interval" in svg and "backlog report" in svg


@pytest.mark.browser
def test_in_a_browser_the_cause_is_on_the_first_screen(tmp_path):
    # What a person sees on opening report.html on a laptop: the failure and the agent's lines
    # without scrolling. The page is saved under test-artifacts/ui/hil-report/.
    from hil.browser import chromium_missing, launch

    if chromium_missing():
        pytest.skip(chromium_missing())
    from playwright.sync_api import sync_playwright

    r = make_result()
    r.log.agent_lines = [(2.1, "2025-03-01 10:00:03,200 ERROR   agent.adapters.gpio: ack button read failed")]
    paths = write_all([r], tmp_path / "out")
    artifacts = ROOT / "test-artifacts" / "ui" / "hil-report"
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(paths["html"].as_uri())
            for text in ("Why it failed", "ack button read failed"):
                box = page.get_by_text(text).first.bounding_box()
                assert box is not None and box["y"] + box["height"] <= 800, (text, box)
            page.screenshot(path=str(artifacts / "failure.png"), full_page=True)
        finally:
            browser.close()
