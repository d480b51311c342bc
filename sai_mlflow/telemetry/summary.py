"""The `summary/*` metrics from what a run recorded: pure, shared by the trainer and the importers.

Used at every epoch end of a live run and once for replayed history, so a run trained here and
a run imported from notes are judged from figures computed the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import keys as K
from .stats import median, percentile
from .steady_memory import steady_memory_of_series
from .warmup import detect_warmup


@dataclass
class SummaryInputs:
    step_s: Sequence[float] = ()            # batch/step_s, whole run, in order
    data_wait_s: Sequence[float] = ()       # batch/data_wait_s, same length
    batch_size_effective: int | None = None
    peak_gib: float | None = None           # highest memory of any phase
    total_gib: float | None = None          # device total (or host RAM for rss)
    map50: Sequence[float] = ()             # per completed epoch
    map50_95: Sequence[float] = ()
    epochs_completed: int = 0
    epochs_planned: int | None = None
    batches_per_epoch: int | None = None
    val_s: Sequence[float] = field(default_factory=list)  # measured validation seconds per epoch
    memory: Sequence[tuple[float, float]] = ()  # memory/used_gib as (time ms, GiB), in step order, from step…
    memory_first_step: int = 0                  # …this one (a resumed run's earlier sessions hold the steps before)


def compute_summary(x: SummaryInputs) -> dict[str, float]:
    """Contract summary keys -> values; a figure that cannot be computed is left out, never invented."""
    out: dict[str, float] = {}
    n = len(x.step_s)
    warm = detect_warmup(x.step_s)
    steady = list(x.step_s[warm:])
    out[K.SUMMARY_WARMUP_BATCHES] = float(warm)
    steady_s = median(steady)
    if steady_s is not None:
        out[K.SUMMARY_STEP_S_STEADY] = steady_s
        out[K.SUMMARY_STEP_S_P90] = percentile(steady, 90.0)
        if x.batch_size_effective and steady_s > 0:
            out[K.SUMMARY_IMAGES_PER_S] = x.batch_size_effective / steady_s
    if n and len(x.data_wait_s) == n:
        total = sum(steady)
        if total > 0:
            out[K.SUMMARY_DATA_WAIT_FRACTION] = sum(x.data_wait_s[warm:]) / total
    if x.peak_gib is not None:
        out[K.SUMMARY_PEAK_GIB] = x.peak_gib
    if x.total_gib:
        out[K.SUMMARY_TOTAL_GIB] = x.total_gib
        if x.peak_gib is not None:
            out[K.SUMMARY_PEAK_FRACTION] = x.peak_gib / x.total_gib
    if x.map50:
        out[K.SUMMARY_BEST_MAP50] = max(x.map50)
    if x.map50_95:
        out[K.SUMMARY_BEST_MAP50_95] = max(x.map50_95)
    out[K.SUMMARY_EPOCHS_COMPLETED] = float(x.epochs_completed)
    if x.epochs_planned:
        out[K.SUMMARY_EPOCHS_PLANNED] = float(x.epochs_planned)
    if x.batches_per_epoch:
        out[K.SUMMARY_BATCHES_PER_EPOCH] = float(x.batches_per_epoch)
        if steady_s is not None and x.epochs_planned:
            val = median(x.val_s) or 0.0
            out[K.SUMMARY_ETA_FULL_S] = x.epochs_planned * (x.batches_per_epoch * steady_s + val)
    out.update(_steady_memory(x.memory, x.memory_first_step))
    return out


def _steady_memory(memory: Sequence[tuple[float, float]], first_step: int) -> dict[str, float]:
    """The steady half's figures for the whole series (steps 0..n-1), when these samples hold all of it."""
    steady = steady_memory_of_series(memory, first_step)
    if steady is None:
        return {}
    out = {K.SUMMARY_MEMORY_SAMPLES: float(steady.series_samples), K.SUMMARY_MEMORY_STEADY_SPAN_S: steady.span_s}
    if steady.growth_gib_per_h is not None:
        out[K.SUMMARY_MEMORY_GROWTH_GIB_PER_H] = steady.growth_gib_per_h
    return out
