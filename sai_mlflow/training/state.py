"""What one tracked training has measured so far, and the run's summary computed from it (one rule).

Written by the hooks (hooks.py) a few times per epoch and by the batch clock per batch; read by the publisher's
collectors, the guard, the closer and the probe's projection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..redact import redact_text
from ..telemetry.clock import BatchClock
from ..telemetry.summary import SummaryInputs, compute_summary


def dataset_name(audit) -> str:
    """The name a run's dataset input (and its logged model's metrics) carry: the data.yaml's folder, redacted."""
    return redact_text(Path(audit.data_yaml).parent.name) or "dataset"


@dataclass
class RunState:
    # the batch as asked: AutoBatch (-1, 0.7) rewrites trainer.args.batch in _setup_train, after this is made
    batch_request: object = None
    audit: object = None  # the dataset audit (data/audit.py), from a preflight or made at setup
    clock: BatchClock = field(default_factory=BatchClock)
    memory_first_step: int = 0  # the step of this session's first memory sample (a resumed run goes on)
    requested_batch: int | None = None
    batches_per_epoch: int | None = None
    setup_tags: dict[str, str] = field(default_factory=dict)  # read again by the guard and the run report
    epoch_rows_start: int = 0
    epoch_wall_start: float = field(default_factory=time.time)
    val_wall_start: float = 0.0
    train_peak: float = 0.0
    last_train_epoch: int = 0
    epoch_seconds: list[float] = field(default_factory=list)
    val_seconds: list[float] = field(default_factory=list)
    map50: list[float] = field(default_factory=list)
    map50_95: list[float] = field(default_factory=list)

    def summary(self, monitor, batch_size_effective: int, epochs_completed: int, epochs_planned: int,
                batches_per_epoch: int | None = None, val_s: list[float] | None = None) -> dict[str, float]:
        """summary/* from everything measured so far; the probe passes its full run's plan (batches, val time)."""
        rows = list(self.clock.rows)
        return compute_summary(SummaryInputs(
            step_s=[w + c for w, c, _ in rows],
            data_wait_s=[w for w, _, _ in rows],
            batch_size_effective=int(batch_size_effective),
            peak_gib=monitor.peak_gib or None,
            total_gib=monitor.sampler.total_gib,
            map50=self.map50, map50_95=self.map50_95,
            epochs_completed=epochs_completed,
            epochs_planned=int(epochs_planned),
            batches_per_epoch=self.batches_per_epoch if batches_per_epoch is None else batches_per_epoch,
            val_s=self.val_seconds if val_s is None else val_s,
            memory=monitor.samples, memory_first_step=self.memory_first_step,
        ))
