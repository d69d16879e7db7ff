"""The bench's bookkeeping: pass/miss against targets, percentiles, and the doc it writes."""

from __future__ import annotations

import math

from bench.__main__ import render
from bench.common import Figure, fmt, summary


def test_a_figure_passes_or_misses_by_its_comparison():
    assert Figure("A", "latency", 8.0, "ms", target=10).ok is True
    assert Figure("A", "latency", 12.0, "ms", target=10).ok is False
    assert Figure("A", "rate", 6000.0, "msg/s", target=5000, op=">=").ok is True
    assert Figure("A", "rate", 4000.0, "msg/s", target=5000, op=">=").ok is False
    assert Figure("A", "no target", 1.0, "ms").ok is None
    # A target with nothing measured is not met, and NaN is written as null.
    missing = Figure("A", "never seen", float("nan"), "ms", target=10)
    assert missing.ok is False and missing.as_dict()["value"] is None


def test_summary_uses_the_rigs_percentile():
    s = summary([float(v) for v in range(1, 101)])
    assert s["n"] == 100 and s["min"] == 1.0 and s["max"] == 100.0
    assert (s["p50"], s["p95"], s["p99"]) == (50.0, 95.0, 99.0)
    assert math.isnan(summary([])["p50"])


def test_memory_growth_is_median_last_tenth_minus_first_tenth():
    from bench.bench_memory import growth_kib, memory_kib

    steps = [100] * 20 + [900] + [100] * 9 + [150] * 10  # one spike, then a step of 50
    assert growth_kib(steps) == 50
    assert math.isnan(growth_kib([1, 2, 3]))  # too few samples to say
    import os

    mine = memory_kib(os.getpid())
    assert mine["rss"] >= mine["anon"] > 0 and mine["pss"] > 0
    assert memory_kib(2 ** 22 + 12345) == {}  # no such process


def test_numbers_are_written_for_people():
    assert fmt(17596.4, 0) == "17,596"
    assert fmt(-0.0001, 2) == "0.00"
    assert fmt(None) == "—" and fmt(float("nan")) == "—"


def test_the_doc_says_what_missed_and_what_could_not_run():
    store = {"results": {
        "button": {"name": "button", "status": "ok", "title": "Panel", "quick": False, "date": "2026-01-01 00:00 UTC",
                   "seconds": 80, "notes": ["a note"], "figures": [
                       Figure("Panel", "edge -> PUBLISH, p99", 2.5, "ms", target=10, source="#4",
                              peer=0.9, peer_label="bare gpiozero").as_dict(),
                       Figure("Resources", "RSS", 51.0, "MiB", target=40, source="#3").as_dict(),
                   ]},
        "call": {"name": "call", "status": "skipped", "reason": "chromium is not installed", "figures": []},
    }}
    doc = render(store, {"cpu": "Test CPU", "cores": "2", "python": "CPython 3.11", "date": "today"})
    assert "| Test CPU |" in doc and "CPython 3.11" in doc
    assert "1 of 2 targeted figures met" in doc
    assert "**miss**" in doc and "| pass |" in doc
    assert "0.9 ms (bare gpiozero)" in doc
    assert "Not measured: skipped" in doc and "chromium is not installed" in doc
    assert "## How to reproduce" in doc
