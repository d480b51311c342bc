"""Where seconds-per-batch settles: the pure warm-up rule.

The seed's run was slow for ~30 batches (CUDA context, cuDNN autotune, dataloader workers
filling), then steady at 1.07 s. Speed figures must exclude that start, or a short probe reads
as a slow machine. The rule, chosen to be easy to state and robust to noise:

1. reference = median of the second half of the series (long runs are steady there);
2. threshold = reference x (1 + tolerance), tolerance 0.25 by default;
3. warm-up ends at the first batch k that is itself under the threshold *and* whose next
   `window` batches (5 by default) have a median under it, so one lucky fast batch inside a
   slow start does not end the warm-up;
4. once settled, never again: a spike in the middle (a checkpoint, a GC pause) is steady-state
   noise that the median and p90 absorb, not a second warm-up;
5. capped at half the series, so at least half the batches always count as steady.

A flat series has no warm-up (0); a single batch has none either (nothing to compare it with).
"""

from __future__ import annotations

from collections.abc import Sequence

from .stats import median

DEFAULT_WINDOW = 5
DEFAULT_TOLERANCE = 0.25


def detect_warmup(step_s: Sequence[float], window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE) -> int:
    """Number of leading warm-up batches in `step_s` (0 <= result <= len // 2)."""
    n = len(step_s)
    if n < 2:
        return 0
    reference = median(step_s[n // 2:])
    if reference is None:
        return 0
    threshold = reference * (1.0 + tolerance)
    cap = n // 2
    for k in range(cap + 1):
        ahead = median(step_s[k:k + window])
        if step_s[k] <= threshold and ahead is not None and ahead <= threshold:
            return k
    return cap
