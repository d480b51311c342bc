"""Steady-state memory: the second half of a run's `memory/used_gib` samples, sampled to `STEADY_POINTS` by
MLflow's rule, how long it covers and how fast it grows. One rule for the trainer's summary (from the samples
it holds) and for compare-runs reading the series of a run whose summary does not cover it (the same points,
sampled by the store), so a leak is judged alike wherever the figures come from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .stats import finite, median, sample_indices

STEADY_POINTS = 200  # the steady half is judged on at most this many samples


@dataclass(frozen=True)
class SteadyMemory:
    series_samples: int | None          # samples of the whole series the steady half is of (None: not known)
    samples: int                        # finite points judged
    span_s: float                       # seconds between the first and last point (0: none)
    growth_gib_per_h: float | None      # memory_slope_gib_per_hour; None when it cannot be computed


def steady_start(total_samples: int) -> int:
    """Index (step) of the first steady-state sample of a series of `total_samples`: its second half."""
    return total_samples // 2


def steady_picks(steady_samples: int) -> list[int]:
    """Which of the steady half's samples are judged: MLflow's sampling rule, as every store reader keeps."""
    return sample_indices(steady_samples, STEADY_POINTS)


def steady_indices(held: int, first_step: int = 0) -> list[int] | None:
    """Which of `held` samples, from step `first_step` on, are the judged points of the whole series' steady
    half (its second half, picked by `steady_picks`); None when earlier steps (a resumed run's earlier
    sessions) hold part of that half."""
    start = steady_start(first_step + held) - first_step
    if start < 0:
        return None
    return [start + i for i in steady_picks(held - start)]


def steady_half(points: Sequence) -> list:
    """The judged points of a whole series held in memory (any units)."""
    return [points[i] for i in steady_indices(len(points))]


def memory_slope_gib_per_hour(samples: Sequence[tuple[float, float]]) -> float | None:
    """Robust growth of (time s, GiB) samples in GiB/hour: the median of the last third minus the
    median of the first third, over the time between the thirds' middles. Medians ignore the
    periodic validation peaks (2x batch) that a least-squares line would read as a trend when one
    falls near an end. None with < 3 samples or no time between the thirds."""
    pts = sorted((float(t), float(g)) for t, g in samples if finite(t) is not None and finite(g) is not None)
    n = len(pts)
    if n < 3:
        return None
    k = max(1, n // 3)
    first, last = pts[:k], pts[-k:]
    dt = median([t for t, _ in last]) - median([t for t, _ in first])
    if dt <= 0:
        return None
    return (median([g for _, g in last]) - median([g for _, g in first])) / dt * 3600.0


def series_span_s(points: Sequence[tuple[float, float]]) -> float:
    """Seconds between the first and last timestamps of (time s, value) points; 0 when fewer than two
    or when the timestamps do not move forward (never negative)."""
    times = [t for t, _ in points if finite(t) is not None]
    return max(0.0, max(times) - min(times)) if len(times) >= 2 else 0.0


def steady_memory(points: Sequence[tuple[float, float]], series_samples: int | None = None) -> SteadyMemory:
    """The figures of the judged steady-half points, as (time s, GiB) (NaN values dropped, as every reader does)."""
    kept = [(t, g) for t, g in points if finite(g) is not None]
    return SteadyMemory(series_samples, len(kept), series_span_s(kept), memory_slope_gib_per_hour(kept))


def steady_memory_of_series(samples_ms: Sequence[tuple[float, float]], first_step: int = 0) -> SteadyMemory | None:
    """The figures of a whole series given as (time ms, GiB) samples from step `first_step` on; None when
    there are none or earlier steps hold part of the steady half."""
    held = len(samples_ms)  # read once: a monitor thread may append meanwhile
    picks = steady_indices(held, first_step) if held else None
    if picks is None:
        return None
    return steady_memory([(samples_ms[i][0] / 1000.0, samples_ms[i][1]) for i in picks], first_step + held)
