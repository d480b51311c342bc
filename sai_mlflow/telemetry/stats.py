"""Small pure statistics, so the decision and summary code imports no numpy/pandas."""

from __future__ import annotations

import math
from collections.abc import Sequence


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50.0)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no values."""
    xs = sorted(v for v in values if v is not None and math.isfinite(v))
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def finite(x) -> float | None:
    """A real number as float, or None for missing, NaN, ±inf and non-numbers: a figure is never invented."""
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def sample_indices(n: int, max_points: int) -> list[int]:
    """Which of `n` ordered rows MLflow's own sampler keeps: the first row of each of NTILE(max_points)
    buckets, with the last row always kept (`SqlAlchemyStore.get_metric_history_bulk_interval`, which
    the server's bulk endpoint runs). Every reader keeps exactly these rows, so a verdict never depends
    on the kind of store."""
    if n <= max_points:
        return list(range(n))
    q, r = divmod(n, max_points)
    picks = [i * (q + 1) if i < r else r * (q + 1) + (i - r) * q for i in range(max_points)]
    picks[-1] = n - 1
    return picks
