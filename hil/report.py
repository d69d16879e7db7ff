"""Results of rig runs, for people and for CI: a table, JSON, JUnit XML and an HTML report.

* ``text_table(results)``: the pass/fail table printed at the end of a run,
  one line per expectation with the measured latency, and under each failure
  what was expected and what was seen.
* ``results_json(results)``: everything judged, per scenario (the run logs
  themselves are in each scenario's ``runlog.json``).
* ``junit_xml(results)``: one ``<testsuite>`` per scenario, one
  ``<testcase>`` per expectation; a failure's message says what was expected,
  its text what was seen. A rig error (the agent never came online) is an
  ``<error>`` on every case.
* ``html_report(results)``: one self-contained page (no scripts, no CDN; SVG
  drawn inline). First, when anything failed, why: each failed expectation
  with what was expected and seen, and the agent's log lines of the span it
  judged (:func:`relevant_lines`: every line of that span, and the warnings
  and errors before it), so nobody digs through a collapsed log. Then per
  scenario the table, the emulated route against the positions the unit
  published (an equirectangular map, metres to scale), the histograms, and
  the live telemetry interval over time with each step's line labelled.
  Latencies are two histograms, never one: the unit's reactions (ms) apart
  from the receiver's time to a fix or to a noticed loss (s, ``measure ==
  "fix"``), which would otherwise squash every reaction into the first bar.

``write_all(results, out_dir)`` writes ``results.json``, ``junit.xml`` and
``report.html`` there and returns their paths.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hil.engine import ScenarioResult
from hil.runlog import RunLog

# --------------------------------------------------------------------- text


def text_table(results: Sequence[ScenarioResult]) -> str:
    lines: list[str] = []
    width = max([len(o.name) for r in results for o in r.outcomes] + [20])
    for r in results:
        verdict = "PASS" if r.passed else "FAIL"
        lines.append(f"\n{r.scenario.name}: {verdict}  ({sum(o.passed for o in r.outcomes)}/{len(r.outcomes)} "
                     f"expectations, {r.wall_s:.1f} s)")
        if r.error:
            lines.append(f"  rig error: {r.error.splitlines()[0]}")
        for o in r.outcomes:
            latency = f"{o.latency_ms:8.0f} ms" if o.latency_ms is not None else " " * 11
            lines.append(f"  {'ok  ' if o.passed else 'FAIL'}  {o.name:<{width}}  {latency}")
            if not o.passed:
                lines.append(f"        expected: {o.expected}")
                lines.append(f"        seen:     {o.seen}")
    total = len(results)
    passed = sum(r.passed for r in results)
    lines.append(f"\n{passed}/{total} scenario(s) passed")
    return "\n".join(lines)


# --------------------------------------------------------------------- JSON


def results_json(results: Sequence[ScenarioResult]) -> dict[str, Any]:
    return {
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "passed": all(r.passed for r in results),
        "scenarios": [
            {
                "name": r.scenario.name,
                "description": r.scenario.description,
                "source": r.scenario.source,
                "passed": r.passed,
                "error": r.error,
                "wall_s": round(r.wall_s, 3),
                "duration_s": r.scenario.duration_s,
                "workdir": str(r.workdir) if r.workdir else None,
                "messages": len(r.log.messages),
                "agent_exit": r.log.agent_exit,
                "actions": [{"t": round(a.t, 4), "step": a.step_id, "action": a.action, "detail": a.detail, "ok": a.ok}
                            for a in r.log.actions],
                "expectations": [o.to_json() for o in r.outcomes],
            }
            for r in results
        ],
    }


# -------------------------------------------------------------------- JUnit


def junit_xml(results: Sequence[ScenarioResult]) -> str:
    suites = ET.Element("testsuites", name="umps-hil")
    total = fails = errors = 0
    for r in results:
        n_fail = 0 if r.error else sum(not o.passed for o in r.outcomes)
        n_err = len(r.outcomes) if r.error else 0
        suite = ET.SubElement(suites, "testsuite", name=f"hil.{r.scenario.name}", tests=str(len(r.outcomes)),
                              failures=str(n_fail), errors=str(n_err), time=f"{r.wall_s:.3f}")
        for o in r.outcomes:
            case = ET.SubElement(suite, "testcase", classname=f"hil.{r.scenario.name}", name=o.name,
                                 time=f"{(o.latency_ms or 0) / 1000:.3f}")
            if r.error:
                el = ET.SubElement(case, "error", message=r.error.splitlines()[0][:500])
                el.text = r.error
            elif not o.passed:
                el = ET.SubElement(case, "failure", message=f"expected {o.expected}"[:500])
                el.text = f"expected: {o.expected}\nseen: {o.seen}"
        if r.log.agent_output and (r.error or n_fail):
            out = ET.SubElement(suite, "system-out")
            out.text = r.log.agent_output
        total += len(r.outcomes)
        fails += n_fail
        errors += n_err
    suites.set("tests", str(total))
    suites.set("failures", str(fails))
    suites.set("errors", str(errors))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


# --------------------------------------------------------------------- SVG

W, H = 640, 300
PAD = 44


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    out = []
    v = start
    while v <= hi + 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _axes(x0: float, x1: float, y0: float, y1: float, xlabel: str, ylabel: str) -> tuple[list[str], Any, Any]:
    def sx(x: float) -> float:
        return PAD + (x - x0) / ((x1 - x0) or 1) * (W - 2 * PAD)

    def sy(y: float) -> float:
        return H - PAD - (y - y0) / ((y1 - y0) or 1) * (H - 2 * PAD)

    parts = [f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" class="frame"/>']
    for t in _ticks(x0, x1):
        parts.append(f'<line x1="{sx(t):.1f}" y1="{H - PAD}" x2="{sx(t):.1f}" y2="{H - PAD + 4}" class="tick"/>'
                     f'<text x="{sx(t):.1f}" y="{H - PAD + 16}" class="lbl" text-anchor="middle">{t:g}</text>')
    for t in _ticks(y0, y1):
        parts.append(f'<line x1="{PAD - 4}" y1="{sy(t):.1f}" x2="{W - PAD}" y2="{sy(t):.1f}" class="grid"/>'
                     f'<text x="{PAD - 6}" y="{sy(t) + 4:.1f}" class="lbl" text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{W / 2}" y="{H - 6}" class="lbl" text-anchor="middle">{html.escape(xlabel)}</text>')
    parts.append(f'<text x="12" y="{H / 2}" class="lbl" text-anchor="middle" transform="rotate(-90 12 {H / 2})">'
                 f'{html.escape(ylabel)}</text>')
    return parts, sx, sy


def _svg(parts: list[str], title: str, cls: str) -> str:
    caption = f'<text x="{PAD}" y="{PAD - 12}" class="cap">{html.escape(title)}</text>'
    return (f'<svg class="plot {cls}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
            f'role="img" aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>{caption}'
            f'{"".join(parts)}</svg>')


def published_positions(log: RunLog, topic: str = "telemetry") -> list[tuple[float, float, float]]:
    """(t, lat, lon) of every report with a fix on ``topic``."""
    out = []
    for m in log.messages:
        if m.topic != topic:
            continue
        data = m.json()
        fix = data.get("fix") if isinstance(data, dict) else None
        if isinstance(fix, dict) and (fix.get("mode") or 0) >= 2 and fix.get("lat") is not None:
            out.append((m.t, float(fix["lat"]), float(fix["lon"])))
    return out


def map_svg(log: RunLog) -> str:
    """The emulated route (truth) as a line, the published positions as dots, metres to scale."""
    truth = [(p.lat, p.lon) for p in log.truth if p.t >= -5]
    pubs = [(lat, lon) for _, lat, lon in published_positions(log)]
    late = [(lat, lon) for _, lat, lon in published_positions(log, "telemetry/backlog")]
    pts = truth + pubs + late
    if not pts:
        return _svg([f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="lbl">no positions</text>'], "map", "map")
    lat0 = sum(p[0] for p in pts) / len(pts)
    kx = 111_320.0 * math.cos(math.radians(lat0))
    ky = 110_540.0
    xs = [p[1] * kx for p in pts]
    ys = [p[0] * ky for p in pts]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    span = max(max(xs) - min(xs), (max(ys) - min(ys)) * (W - 2 * PAD) / (H - 2 * PAD), 100.0) * 1.1
    half_w, half_h = span / 2, span / 2 * (H - 2 * PAD) / (W - 2 * PAD)
    parts, sx, sy = _axes(-half_w, half_w, -half_h, half_h, "east (m)", "north (m)")

    def proj(lat: float, lon: float) -> str:
        return f"{sx(lon * kx - cx):.1f},{sy(lat * ky - cy):.1f}"

    if truth:
        parts.append(f'<polyline class="route" points="{" ".join(proj(*p) for p in truth)}"/>')
    for lat, lon in pubs:
        x, y = proj(lat, lon).split(",")
        parts.append(f'<circle class="pub" cx="{x}" cy="{y}" r="2.6"/>')
    for lat, lon in late:
        x, y = proj(lat, lon).split(",")
        parts.append(f'<circle class="late" cx="{x}" cy="{y}" r="3.2"/>')
    parts.append(f'<g class="legend"><line x1="{W - 200}" y1="{PAD + 14}" x2="{W - 180}" y2="{PAD + 14}" class="route"/>'
                 f'<text x="{W - 175}" y="{PAD + 18}" class="lbl">emulated route ({len(truth)} epochs)</text>'
                 f'<circle cx="{W - 190}" cy="{PAD + 32}" r="3" class="pub"/>'
                 f'<text x="{W - 175}" y="{PAD + 36}" class="lbl">published live ({len(pubs)})</text>'
                 f'<circle cx="{W - 190}" cy="{PAD + 50}" r="3.2" class="late"/>'
                 f'<text x="{W - 175}" y="{PAD + 54}" class="lbl">published as backlog ({len(late)})</text></g>')
    return _svg(parts, "emulated route and published positions", "map")


def histogram_svg(latencies: Sequence[float], title: str = "latency", *, unit: str = "ms",
                  xlabel: str = "latency (ms)", cls: str = "hist") -> str:
    """A histogram of ``latencies`` (in ``unit``); bins of a "nice" width, 10 ms or 0.1 s at least."""
    if not latencies:
        return _svg([f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="lbl">nothing measured</text>'],
                    title, cls)
    hi = max(latencies)
    ticks = _ticks(0, hi, 12)
    least = 10.0 if unit == "ms" else 0.1
    width = max(least, ticks[1] - ticks[0] if len(ticks) > 1 else least)
    nbins = max(1, math.ceil((hi + 1e-9) / width))
    bins = [0] * nbins
    for v in latencies:
        bins[min(nbins - 1, int(v // width))] += 1
    parts, sx, sy = _axes(0, nbins * width, 0, max(bins) * 1.15, xlabel, "count")
    for i, c in enumerate(bins):
        if c:
            x0, x1 = sx(i * width), sx((i + 1) * width)
            parts.append(f'<rect class="bar" x="{x0 + 1:.1f}" y="{sy(c):.1f}" width="{max(1.0, x1 - x0 - 2):.1f}" '
                         f'height="{sy(0) - sy(c):.1f}"><title>{i * width:g}-{(i + 1) * width:g} {unit}: {c}'
                         f'</title></rect>')
    return _svg(parts, title, cls)


def histograms(outcomes: Sequence[Any], scope: str) -> str:
    """The reactions' histogram, and beside it (when any was measured) the GNSS fix times'."""
    reactions = [o.latency_ms for o in outcomes if o.latency_ms is not None and o.measure != "fix"]
    fixes = [o.latency_ms / 1000.0 for o in outcomes if o.latency_ms is not None and o.measure == "fix"]
    out = histogram_svg(reactions, f"{scope}: reaction latencies (GNSS fix times apart)")
    if fixes:
        out += histogram_svg(fixes, f"{scope}: GNSS time to a fix, or to notice it lost", unit="s",
                             xlabel="time after the step or the start (s)", cls="hist fixhist")
    return out


def cadence_svg(log: RunLog) -> str:
    """Interval between consecutive live reports against time; steps as vertical marks."""
    times = [m.t for m in log.messages if m.topic == "telemetry"]
    backlog = [m.t for m in log.messages if m.topic == "telemetry/backlog"]
    pts = [(b, b - a) for a, b in zip(times, times[1:])]
    x1 = max([log.end_t] + [p[0] for p in pts] + [1.0])
    y1 = max([p[1] for p in pts] + [2.0]) * 1.1
    parts, sx, sy = _axes(0, x1, 0, y1, "time (s)", "interval since previous live report (s)")
    for i, a in enumerate(log.actions):
        # Each dashed line says which step it is; labels of close steps are staggered.
        x = sx(a.t)
        parts.append(f'<line class="step" x1="{x:.1f}" y1="{PAD}" x2="{x:.1f}" y2="{H - PAD}">'
                     f'<title>{html.escape(a.step_id)} at {a.t:.2f} s</title></line>'
                     f'<text class="steplbl" x="{x + 3:.1f}" y="{PAD + 11 + (i % 4) * 11}">'
                     f'{html.escape(a.step_id)}</text>')
    if pts:
        parts.append(f'<polyline class="cad" points="{" ".join(f"{sx(t):.1f},{sy(v):.1f}" for t, v in pts)}"/>')
        for t, v in pts:
            parts.append(f'<circle class="cadpt" cx="{sx(t):.1f}" cy="{sy(v):.1f}" r="1.8"/>')
    for t in backlog:
        parts.append(f'<line class="backlog" x1="{sx(t):.1f}" y1="{H - PAD}" x2="{sx(t):.1f}" y2="{H - PAD - 8}"/>')
    # The legend on the caption's line, right of it: what each kind of line is.
    y = PAD - 16
    parts.append(f'<g class="legend"><line class="cad" x1="262" y1="{y}" x2="278" y2="{y}"/>'
                 f'<text class="lbl" x="282" y="{y + 4}">live interval</text>'
                 f'<line class="step" x1="362" y1="{y - 6}" x2="362" y2="{y + 6}"/>'
                 f'<text class="lbl" x="367" y="{y + 4}">a step (labelled with its id)</text>'
                 f'<line class="backlog" x1="522" y1="{y + 6}" x2="522" y2="{y - 2}"/>'
                 f'<text class="lbl" x="527" y="{y + 4}">backlog report</text></g>')
    return _svg(parts, "telemetry cadence over time", "cadence")


# --------------------------------------------------------------------- HTML

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1b1f24;background:#fafafa}
h1{margin-top:0}h2{border-top:1px solid #ccc;padding-top:1em}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ddd;padding:3px 8px;vertical-align:top}
th{background:#eef}.pass{color:#176f2c;font-weight:600}.fail{color:#b3261e;font-weight:600}
td.seen{font-family:ui-monospace,monospace;font-size:12px;max-width:48em;word-break:break-word}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plot{background:#fff;border:1px solid #ddd}
.frame{fill:none;stroke:#999}.grid{stroke:#eee}.tick{stroke:#999}.lbl{font-size:11px;fill:#444}
.route{fill:none;stroke:#2f6db5;stroke-width:2}.pub{fill:#e0702a;opacity:.8}
.late{fill:none;stroke:#7a3fb0;stroke-width:1.2}.cap{font-size:13px;font-weight:600;fill:#1b1f24}
.bar{fill:#4d8fd6}.cad{fill:none;stroke:#2f6db5;stroke-width:1.2}.cadpt{fill:#2f6db5}
.step{stroke:#b3261e;stroke-dasharray:3 3}.backlog{stroke:#e0702a;stroke-width:1.5}
.steplbl{font-size:10px;fill:#b3261e}.fixhist .bar{fill:#7a9a3a}
.failures{border:2px solid #b3261e;background:#fff5f4;padding:0 1em 1em;margin:1em 0}
.failures h2{border:0;color:#b3261e}.failures h3{margin-bottom:.2em}
pre.agentlog{max-height:28em}.agentlog .warn{color:#b3261e;font-weight:600}.agentlog .before{color:#777}
pre{background:#f0f0f0;padding:.5em;overflow:auto;max-height:20em;font-size:12px}
"""


# A line the agent logged at WARNING or above (plain or journald form), or a traceback.
_ALARMING = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|^Traceback|^<[0-4]>")
LOG_MARGIN_S = 2.0  # agent lines this long before and after the judged span are shown too
LOG_LINES_MAX = 40
WARNINGS_MAX = 15


def relevant_lines(log: RunLog, window: tuple[float, float] | None) -> list[tuple[float, str, str]]:
    """The agent's lines that explain a failure: (rig time, line, "span" or "before").

    Every line of the judged span (with a margin), the last :data:`LOG_LINES_MAX` of them; and
    the warnings and errors logged before it, the last :data:`WARNINGS_MAX`. Without a span
    (its step never ran), the warnings and errors of the whole run.
    """
    if window is None:
        lo, hi = math.inf, log.end_t + LOG_MARGIN_S
    else:
        lo, hi = window[0] - LOG_MARGIN_S, window[1] + LOG_MARGIN_S
    span = [(t, line, "span") for t, line in log.agent_lines if lo <= t <= hi][-LOG_LINES_MAX:]
    earlier = [(t, line, "before") for t, line in log.agent_lines if t < lo]
    before = [item for item in earlier if _ALARMING.search(item[1])][-WARNINGS_MAX:]
    if not span:  # a quiet agent: what it said last, for context
        before = sorted(set(before) | set(earlier[-5:]))
    return before + span


def _log_html(lines: list[tuple[float, str, str]]) -> str:
    e = html.escape
    rows = []
    for t, line, where in lines:
        cls = "warn" if _ALARMING.search(line) else ("before" if where == "before" else "")
        rows.append(f'<span class="{cls}">{t:8.2f} s  {e(line)}</span>' if cls else f"{t:8.2f} s  {e(line)}")
    return '<pre class="agentlog">' + "\n".join(rows) + "</pre>"


def failures_html(results: Sequence[ScenarioResult]) -> str:
    """Why each failed scenario failed, for the top of the page: what was expected, what was seen,
    and what the agent logged meanwhile."""
    e = html.escape
    failed = [r for r in results if not r.passed]
    if not failed:
        return ""
    out = ['<section class="failures" id="failures"><h2>Why it failed</h2>']
    for r in failed:
        bad = [o for o in r.outcomes if not o.passed]
        name = e(r.scenario.name)
        out.append(f'<h3><a href="#{name}">{name}</a>: {len(bad)} of {len(r.outcomes)} expectation(s) failed</h3>')
        if r.error:
            out.append(f"<p>The rig could not run it: <b>{e(r.error.splitlines()[0])}</b></p>")
            tail = [(t, line, "span") for t, line in r.log.agent_lines[-LOG_LINES_MAX:]]
            out.append(_log_html(tail) if tail else f"<pre>{e(r.error)}</pre>")
            continue
        for o in bad:
            out.append(f'<p><span class="fail">FAIL</span> <b>{e(o.name)}</b><br>expected: {e(o.expected)}<br>'
                       f"seen: <code>{e(o.seen)}</code></p>")
            lines = relevant_lines(r.log, o.window)
            quiet = not any(where == "span" for _, _, where in lines)
            if o.window is None:
                out.append("<p>The warnings and errors the agent logged in the run:</p>")
            else:
                span = f"from {o.window[0] - LOG_MARGIN_S:.1f} s to {o.window[1] + LOG_MARGIN_S:.1f} s"
                earlier = any(where == "before" for _, _, where in lines)
                out.append(f"<p>The agent logged nothing {span} (the span judged, {LOG_MARGIN_S:g} s either side); "
                           "its last lines before, in grey:</p>" if quiet else
                           f"<p>The agent's log {span} (the span judged, {LOG_MARGIN_S:g} s either side)"
                           + (", after the warnings and errors it logged before, in grey:</p>" if earlier else ":</p>"))
            out.append(_log_html(lines) if lines else "<p>(the agent logged nothing)</p>")
    out.append("</section>")
    return "".join(out)


def html_report(results: Sequence[ScenarioResult]) -> str:
    e = html.escape
    body = [f"<h1>umps-hil report</h1><p>{sum(r.passed for r in results)}/{len(results)} scenario(s) passed; "
            f"generated {e(dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds'))}.</p>"]
    body.append("<table><tr><th>scenario</th><th>result</th><th>expectations</th><th>run time</th></tr>")
    for r in results:
        cls = "pass" if r.passed else "fail"
        body.append(f'<tr><td><a href="#{e(r.scenario.name)}">{e(r.scenario.name)}</a></td>'
                    f'<td class="{cls}">{"PASS" if r.passed else "FAIL"}</td>'
                    f"<td>{sum(o.passed for o in r.outcomes)}/{len(r.outcomes)}</td><td>{r.wall_s:.1f} s</td></tr>")
    body.append("</table>")
    body.append(failures_html(results))
    body.append(f'<div class="plots">{histograms([o for r in results for o in r.outcomes], "all scenarios")}</div>')
    for r in results:
        body.append(f'<h2 id="{e(r.scenario.name)}">{e(r.scenario.name)}: '
                    f'<span class="{"pass" if r.passed else "fail"}">{"PASS" if r.passed else "FAIL"}</span></h2>')
        body.append(f"<p>{e(r.scenario.description)}</p>")
        if r.error:
            body.append(f"<p class=fail>rig error</p><pre>{e(r.error)}</pre>")
        body.append("<table><tr><th></th><th>expectation</th><th>latency</th><th>expected</th><th>seen</th></tr>")
        for o in r.outcomes:
            lat = f"{o.latency_ms:.0f} ms" if o.latency_ms is not None else ""
            body.append(f'<tr><td class="{"pass" if o.passed else "fail"}">{"ok" if o.passed else "FAIL"}</td>'
                        f"<td>{e(o.name)}</td><td>{lat}</td><td>{e(o.expected)}</td><td class=seen>{e(o.seen)}</td></tr>")
        body.append("</table>")
        if r.log.actions:
            body.append("<details><summary>steps</summary><table><tr><th>t</th><th>step</th><th>what</th></tr>")
            for a in r.log.actions:
                body.append(f"<tr><td>{a.t:.2f} s</td><td>{e(a.step_id)}</td><td>{e(a.detail)}</td></tr>")
            body.append("</table></details>")
        body.append(f'<div class="plots">{map_svg(r.log)}{histograms(r.outcomes, r.scenario.name)}'
                    f"{cadence_svg(r.log)}</div>")
        if not r.passed and r.log.agent_output:
            body.append(f"<details><summary>agent output (tail)</summary><pre>{e(r.log.agent_output)}</pre></details>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>umps-hil report</title>'
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")


def write_all(results: Sequence[ScenarioResult], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "junit": out_dir / "junit.xml", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(results_json(results), indent=2, ensure_ascii=False), encoding="utf-8")
    paths["junit"].write_text(junit_xml(results), encoding="utf-8")
    paths["html"].write_text(html_report(results), encoding="utf-8")
    return paths
