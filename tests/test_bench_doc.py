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


def _result(figures: list[dict], date: str = "2026-01-01 00:00 UTC", quick: bool = False) -> dict:
    return {"name": "call", "status": "ok", "title": "Calls", "quick": quick, "date": date, "seconds": 60,
            "figures": figures}


def test_a_figure_more_than_a_fifth_worse_than_the_last_recorded_is_marked_a_regression():
    from bench.__main__ import compare

    before = _result([
        Figure("Dispatch", "received, p50 (200 calls)", 10.0, "ms", target=15).as_dict(),
        Figure("Dispatch", "DOM, p99", 20.0, "ms", target=30).as_dict(),
        Figure("Dispatch", "rate", 5000.0, "msg/s", target=4000, op=">=").as_dict(),
        Figure("Dispatch", "no target, p50", 4.0, "ms").as_dict(),
        Figure("Dispatch", "gone from the new run", 1.0, "ms").as_dict(),
        Figure("Dispatch", "drift", 0.0005, "reports", digits=2).as_dict(),
    ])
    now = _result([
        # Counts in the name differ between quick and full runs: still the same figure.
        Figure("Dispatch", "received, p50 (30 calls)", 12.5, "ms", target=15).as_dict(),  # 25 % worse, still met
        Figure("Dispatch", "DOM, p99", 23.0, "ms", target=30).as_dict(),  # 15 % worse: noise, not marked
        Figure("Dispatch", "rate", 3900.0, "msg/s", target=4000, op=">=").as_dict(),  # 22 % lower
        Figure("Dispatch", "no target, p50", 2.0, "ms").as_dict(),  # better
        Figure("Dispatch", "new figure", 1.0, "ms").as_dict(),
        Figure("Dispatch", "drift", 0.004, "reports", digits=2).as_dict(),  # both read 0.00 in the doc
    ], date="2026-02-01 00:00 UTC", quick=True)
    compare(now, before)
    marks = {f["name"]: f.get("regression") for f in now["figures"]}
    assert marks == {"received, p50 (30 calls)": True, "DOM, p99": False, "rate": True, "no target, p50": False,
                     "new figure": None, "drift": False}
    assert now["figures"][0]["previous"] == {"value": 10.0, "date": "2026-01-01 00:00 UTC", "quick": False}

    doc = render({"results": {"call": now}}, {"date": "today"})
    row = next(line for line in doc.splitlines() if line.startswith("| received, p50 (30 calls)"))
    assert "≤ 15 ms" in row and "**regression**: 25 % worse than the last recorded 10.0 ms (2026-01-01" in row
    assert "| pass |" in row  # a regression is marked beside the target, the verdict stays the target's
    assert "| DOM, p99 | ≤ 30 ms |" in doc
    assert "Against the last recorded figures: 2 of 5 more than 20 % worse" in doc


def test_nothing_is_compared_with_a_run_that_failed_or_measured_nothing():
    from bench.__main__ import compare

    now = _result([Figure("Dispatch", "received, p50", 50.0, "ms", target=15).as_dict()])
    compare(now, {"status": "failed", "figures": []})
    compare(now, None)
    compare(now, _result([Figure("Dispatch", "received, p50", float("nan"), "ms", target=15).as_dict()]))
    assert "previous" not in now["figures"][0] and "regression" not in now["figures"][0]
    assert "regression" not in render({"results": {"call": now}}, {"date": "today"}).lower()
