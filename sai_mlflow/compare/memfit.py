"""Peak memory as a straight line in the batch per device: pure, shared by compare-runs, preflight, probe, guard.

YOLO's activation memory grows linearly with the batch (GPU anchor: ~1.08 GiB per image at imgsz
1440), so a least-squares line through (batch per device, peak) of comparable runs predicts an untried
batch's peak, validation included since the peaks fed in are the run's highest of any phase. Under DDP
each device holds batch // devices images and the peak is the largest device's, so the fit is per device
and a total batch is the per-device one times the device count.

Two things the evidence cannot tell, said instead of a number:
- one run alone cannot separate the fixed part of memory (CUDA context, weights, optimizer) from the part
  that grows with the batch: scaling its peak in proportion to the batch under-states a smaller batch's
  peak (8 -> 7 -> 6 each trip the limit again), so one run's advice is "probe", never a batch;
- when memory barely grows with the batch (a CPU box: the process RSS is mostly fixed), the line's slope
  is noise and its "largest batch" is any number (46789, 2246, 4200, …): memory sets no batch limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# memory "barely grows with the batch" when the part that grows is under this share of the predicted peak
# at the largest batch measured (GPU anchor: ~95 %; a CPU run's RSS: ~5 %)
FLAT_SHARE = 0.10


@dataclass(frozen=True)
class MemoryFit:
    intercept_gib: float
    slope_gib_per_image: float
    batches: tuple[int, ...]  # distinct batch sizes the fit stands on

    def predict(self, batch: int) -> float:
        return self.intercept_gib + self.slope_gib_per_image * batch

    @property
    def flat(self) -> bool:
        """Memory barely grows with the batch: the fit bounds no batch (say so, never a number)."""
        top = max(self.batches)
        return self.slope_gib_per_image <= 0 or self.slope_gib_per_image * top < FLAT_SHARE * self.predict(top)

    def basis(self) -> str:
        return (f"fit over batches {', '.join(str(b) for b in self.batches)}: {self.intercept_gib:.1f} GiB + "
                f"{self.slope_gib_per_image:.3f} GiB per image")

    def flat_text(self) -> str:
        top = max(self.batches)
        share = self.slope_gib_per_image * top / self.predict(top) if self.predict(top) > 0 else 0.0
        return (f"memory barely grows with the batch ({self.slope_gib_per_image:.4f} GiB per image, "
                f"{max(share, 0.0):.0%} of the peak at batch {top}): memory sets no batch limit here")

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


def total_text(per_device: int, devices: int) -> str:
    """A batch as `--set batch=` takes it (Ultralytics' total), with the per-device share when DDP."""
    return f"{per_device * devices} ({per_device} per device on {devices} devices)" if devices > 1 else str(per_device)


def memory_advice(batch_per_device: int | None, devices: int, limit_gib: float | None,
                  fit: MemoryFit | None) -> str:
    """What to do about a run over the memory limit, saying only what the evidence supports: the largest
    batch a fit over comparable runs (with its fixed part) keeps under the limit, else "probe"."""
    total = batch_per_device * devices if batch_per_device else None
    smaller = f" {max(1, total // 2)},{max(1, total * 3 // 4)}" if total and total >= 2 else " …"
    probe = ("one run cannot tell how much of its memory is fixed, so no smaller batch is promised safe: "
             f"`sai-mlflow probe --batches{smaller}` measures the largest safe batch")
    if fit is None or len(fit.batches) < 2 or limit_gib is None:
        return probe
    if fit.flat:
        return f"{fit.flat_text()}: a smaller imgsz or model, not a smaller batch ({fit.basis()})"
    safe = fit.largest_batch_under(limit_gib)
    if safe is None:
        return f"no batch is predicted under the limit {limit_gib:.1f} GiB ({fit.basis()}): a smaller imgsz or model"
    if batch_per_device is not None and safe >= batch_per_device:
        return f"the fit over comparable runs predicts this batch under the limit ({fit.basis()}): {probe}"
    return (f"largest safe batch {total_text(safe, devices)} ({fit.basis()}, per device): "
            f"restart with --set batch={safe * devices}")
