"""Peak memory as a straight line in the effective batch size: pure, shared by compare-runs and preflight.

YOLO's activation memory grows linearly with the batch (GPU anchor: ~1.08 GiB per image at imgsz
1440), so a least-squares line through (batch, peak) of comparable runs predicts an untried
batch's peak, validation included since the peaks fed in are the run's highest of any phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryFit:
    intercept_gib: float
    slope_gib_per_image: float
    batches: tuple[int, ...]  # distinct batch sizes the fit stands on

    def predict(self, batch: int) -> float:
        return self.intercept_gib + self.slope_gib_per_image * batch

    def largest_batch_under(self, limit_gib: float) -> int | None:
        """The largest batch whose predicted peak stays at or under `limit_gib`; None if none does."""
        if self.slope_gib_per_image <= 0:
            return None  # memory not growing with batch: the fit cannot bound anything
        b = math.floor((limit_gib - self.intercept_gib) / self.slope_gib_per_image + 1e-9)
        return b if b >= 1 else None


def fit_peak_memory(points: list[tuple[int, float]]) -> MemoryFit | None:
    """Least squares through (effective batch, peak GiB); None with fewer than two distinct batches."""
    pts = [(int(b), float(p)) for b, p in points if b and p is not None and math.isfinite(p)]
    batches = sorted({b for b, _ in pts})
    if len(batches) < 2:
        return None
    n = len(pts)
    mx = sum(b for b, _ in pts) / n
    my = sum(p for _, p in pts) / n
    sxx = sum((b - mx) ** 2 for b, _ in pts)
    slope = sum((b - mx) * (p - my) for b, p in pts) / sxx
    return MemoryFit(intercept_gib=my - slope * mx, slope_gib_per_image=slope, batches=tuple(batches))
