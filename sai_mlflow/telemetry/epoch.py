"""One epoch's metrics under the contract's keys, from what the trainer and the clock hold at its end.

Pure (numbers in, numbers out), so the mapping is unit-tested without a trainer; the tracker only gathers
the inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .. import keys as K
from .stats import median


@dataclass
class EpochInputs:
    epoch: int  # 1-based, as in results.csv
    epochs_planned: int
    losses: Mapping[str, float]  # trainer.label_loss_items(tloss, prefix="train"): train/box_loss, …
    val_metrics: Mapping[str, float] | None  # trainer.metrics when this epoch validated, else None
    lr: Mapping[str, float]  # lr/pg0 …
    train_peak_gib: float
    val_peak_gib: float
    torch_peaks_gib: tuple[float, float] | None  # (reserved, allocated) on CUDA
    step_s: Sequence[float]  # this epoch's batch times
    duration_s: float
    epoch_durations_s: Sequence[float]  # every epoch so far, this one included (for the ETA)


def epoch_metrics(e: EpochInputs) -> dict[str, float]:
    values = {name: float(v) for name, v in e.losses.items()}
    for name, v in (e.val_metrics or {}).items():
        if name in K.ULTRALYTICS_METRIC_MAP:
            values[K.ULTRALYTICS_METRIC_MAP[name]] = float(v)
    values.update({name: float(v) for name, v in e.lr.items()})
    values[K.EPOCH_TRAIN_PEAK_GIB] = e.train_peak_gib
    values[K.EPOCH_VAL_PEAK_GIB] = e.val_peak_gib
    if e.torch_peaks_gib:
        values[K.EPOCH_TORCH_RESERVED_PEAK_GIB], values[K.EPOCH_TORCH_ALLOCATED_PEAK_GIB] = e.torch_peaks_gib
    if e.step_s:
        values[K.EPOCH_STEP_S_MEDIAN] = median(list(e.step_s))
    values[K.EPOCH_DURATION_S] = e.duration_s
    mean_epoch = sum(e.epoch_durations_s) / len(e.epoch_durations_s) if e.epoch_durations_s else e.duration_s
    values[K.EPOCH_ETA_S] = max(0, e.epochs_planned - e.epoch) * mean_epoch
    return values
