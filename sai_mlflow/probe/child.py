"""One probe, in a fresh process (`python -m sai_mlflow.probe.child SPEC.json`).

A fresh process so that the CUDA allocator starts clean, as the long run's will. It is the tracked
trainer with the same memory monitor, trained for one epoch over the probe's slice (past warm-up,
then steady batches), followed by Ultralytics' own validation pass at its validation batch (2x).
The final re-validation of best.pt is skipped: the same pass again, on the same batch, proves
nothing more. At the end the run's summary is re-projected onto the full run (the config's
epochs, the whole dataset), with the same summary function a training uses.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from pathlib import Path

from ultralytics.utils import RANK

from ..trainer import TrackedDetectionTrainer

ENV_PROBE_SPEC = "SAI_MLFLOW_PROBE_SPEC"  # a DDP probe: rank 0 (which holds the tracker) re-projects the summary


class ProbeTrainer(TrackedDetectionTrainer):
    """The tracked trainer, without the end-of-training re-validation of best.pt."""

    def final_eval(self):
        return None

    def train(self):
        super().train()
        tracker = self.__dict__.get("sai_tracker")
        if RANK == 0 and tracker is not None and tracker.client is not None and os.environ.get(ENV_PROBE_SPEC):
            try:
                _log_projection(tracker, self, json.loads(Path(os.environ[ENV_PROBE_SPEC]).read_text())["full"])
            except Exception as e:
                print(f"sai_mlflow probe: could not re-project the summary onto the full run ({e})", file=sys.stderr)


def _log_projection(tracker, trainer, full: dict) -> None:
    from ..backend import log_records
    from .plan import full_run_plan

    state = tracker.state
    eff = int(trainer.batch_size)
    bpe, val_s = full_run_plan(eff, full["n_train"], state.val_seconds[-1] if state.val_seconds else 0.0,
                               full["val_images_probe"], full["n_val"])
    summary = state.summary(tracker.monitor, eff, state.last_train_epoch, full["epochs"], bpe, [val_s])
    ts = int(time.time() * 1000) + 1  # later than the tracker's own summary: this one is the latest
    log_records(tracker.client, tracker.run_id, metrics=[(k, float(v), ts, 0) for k, v in summary.items()])


def main(spec_path: str) -> int:
    from ..redact import redact_text
    from ..tracking.settings import TrackingSettings, environment

    spec = json.loads(Path(spec_path).read_text())
    if spec.get("parent_pid"):
        from .stop import die_with_parent

        die_with_parent(int(spec["parent_pid"]))  # a SIGKILLed session takes its probe along
    settings = TrackingSettings(**spec["settings"])
    audit = pickle.loads(Path(spec["audit"]).read_bytes()) if spec.get("audit") else None
    error, batch_effective = None, None
    os.environ[ENV_PROBE_SPEC] = str(Path(spec_path).resolve())
    with environment(settings):
        trainer = ProbeTrainer(overrides=spec["args"])
        trainer.sai_audit = audit
        try:
            trainer.train()
        except Exception as e:  # recorded by the session (FAILED run, outcome), never a crash of the session
            error = redact_text(f"{type(e).__name__}: {e}")[:2000]
        batch_effective = int(trainer.batch_size)
        tracker = trainer.__dict__.get("sai_tracker")
        if error is None and tracker is not None and tracker.client is not None:
            try:
                _log_projection(tracker, trainer, spec["full"])
            except Exception as e:
                print(f"sai_mlflow probe: could not re-project the summary onto the full run ({e})", file=sys.stderr)
    Path(spec["result"]).write_text(json.dumps({"error": error, "batch_effective": batch_effective}))
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
