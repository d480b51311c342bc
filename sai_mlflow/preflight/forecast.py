"""memory_forecast: the peak a batch will reach, from comparable runs in the store (validation included).

Per device: under DDP the configured batch is the total and each device holds batch // devices, so the fit
is the largest device's peak against the batch per device of each earlier run, the prediction is for the
planned per-device batch, and the largest batch that fits is per device times the planned devices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .. import keys as K
from ..compare.memfit import fit_peak_memory
from ..keys import GIB
from .finding import Finding
from .host import GpuInfo
from .state import State


@dataclass(frozen=True)
class ForecastRecord:
    """One comparable run for memory_forecast: what it trained at and the most memory it used."""

    batch_effective: int
    peak_gib: float
    total_gib: float
    model: str
    imgsz: int
    gpu: str
    run_id: str = ""
    devices: int = 1  # the run's DDP world size: its batch per device is batch_effective // devices

    @property
    def batch_per_device(self) -> int:
        return self.batch_effective // max(1, self.devices)


def _gpu_for(s: State) -> GpuInfo | None:
    gpus = s.host.gpus or []
    idx = (s.args.cuda or [0])[0] if s.args.cuda != [] else None
    return next((g for g in gpus if g.index == idx), None) if idx is not None else None


def _model_key(model: str | None) -> str:
    return Path(model).name if model else ""


def check_memory_forecast(s: State) -> list[Finding]:
    a = s.args
    if a.batch is None or a.imgsz is None:
        return []
    gpu = _gpu_for(s)
    gpu_name = s.ctx.gpu_name or (gpu.name if gpu else "cpu")
    model = _model_key(a.model)
    history = s.ctx.history or []
    comparable = [r for r in history
                  if _model_key(r.model) == model and int(r.imgsz) == a.imgsz and r.gpu == gpu_name
                  and r.batch_effective and r.peak_gib is not None and math.isfinite(r.peak_gib)]
    fit = fit_peak_memory([(r.batch_per_device, r.peak_gib) for r in comparable])
    if fit is None:
        return [Finding("info", "memory_forecast",
                        f"no forecast: {len(comparable)} comparable run(s) (model {model or '?'}, imgsz {a.imgsz}, "
                        f"gpu {gpu_name}) with fewer than two distinct batch sizes",
                        "run short probes at two batch sizes to calibrate (e.g. --set epochs=1)")]
    totals = sorted(r.total_gib for r in comparable if r.total_gib and math.isfinite(r.total_gib))
    total = totals[len(totals) // 2] if totals else (gpu.total_bytes / GIB if gpu else None)
    if not total:
        return [Finding("info", "memory_forecast", "no forecast: comparable runs carry no device total")]
    frac = s.ctx.max_memory_fraction
    limit = frac * total
    devices = len(a.cuda) if a.cuda else 1
    per_device = a.batch // devices
    pred = fit.predict(per_device)
    per = " per device" if devices > 1 or any(r.devices > 1 for r in comparable) else ""
    basis = (f"fit over {len(comparable)} runs at batches{per} {list(fit.batches)}: "
             f"{fit.intercept_gib:.1f} GiB + {fit.slope_gib_per_image:.3f} GiB per image")
    if fit.flat:
        return [Finding("info", "memory_forecast", f"batch {a.batch} predicted to peak at {pred:.1f} GiB on "
                                                   f"{gpu_name}; {fit.flat_text()} ({basis})")]
    best_pd = fit.largest_batch_under(limit)
    best = best_pd * devices if best_pd else None
    what = f"batch {a.batch}" + (f" ({per_device} per device on {devices} devices)" if devices > 1 else "")
    fits = f"{best} ({best_pd} per device)" if best and devices > 1 else f"{best}" if best else "none"
    if pred > limit:
        return [Finding(
            "error", "memory_forecast",
            f"{what} is predicted to peak at {pred:.1f} GiB (validation included) on {gpu_name}, over the "
            f"limit {limit:.1f} GiB ({frac:.0%} of {total:.1f} GiB); largest batch predicted to fit: {fits} ({basis})",
            f"batch: {best}" if best else "a smaller imgsz or model",
        )]
    return [Finding("info", "memory_forecast",
                    f"{what} predicted to peak at {pred:.1f} GiB ({pred / total:.0%} of {total:.1f} GiB, limit "
                    f"{frac:.0%}); largest batch predicted to fit: {fits} ({basis})")]


def load_forecast_history(client, experiment_ids, model: str | None, imgsz: int | None,
                          gpu: str | None) -> list[ForecastRecord]:
    """Comparable runs' (effective batch, peak, total), read by compare-runs' loader.

    `model` compares by file name (tag `model`), `imgsz` as the trained int, `gpu` by name; None means
    any. Runs that FAILED are left out (a crash's peak is not the batch's demand) and so are runs
    without `summary/peak_gib`.
    """
    from ..compare.loader import record_from_run, search_runs

    wanted = {K.TAG_MODEL: _model_key(model) if model else None, K.TAG_IMGSZ: imgsz, K.TAG_GPU: gpu}
    out: list[ForecastRecord] = []
    for run in search_runs(client, experiment_ids, tag_equals=wanted):
        r = record_from_run(run)
        batch = r.batch
        if r.status == "FAILED" or not batch or r.peak_gib is None or r.imgsz is None:
            continue
        rec = ForecastRecord(batch_effective=batch, peak_gib=r.peak_gib, total_gib=r.total_gib or 0.0,
                             model=r.model or "", imgsz=r.imgsz, gpu=r.gpu or "", run_id=r.run_id,
                             devices=r.device_count)
        if model is not None and _model_key(rec.model) != _model_key(model):
            continue
        if imgsz is not None and rec.imgsz != int(imgsz):
            continue
        if gpu is not None and rec.gpu != gpu:
            continue
        out.append(rec)
    return out
