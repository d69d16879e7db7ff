"""The one percentile (nearest rank) of the rig, its verdicts, its fleet mode and the bench."""

from __future__ import annotations

import math

from hil.stats import percentile


def test_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    # 20 intervals: the 95th percentile is the 19th, not the largest.
    assert percentile(range(1, 21), 95) == 19
    assert percentile(reversed(range(1, 21)), 95) == 19  # any order, any iterable
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))
