"""RunTracker's glue, unit-tested with the in-memory sink and a stand-in trainer (no store, no training).

Real training through the real store is covered by test_train_contract.py; this pins the mapping from
trainer state to contract keys, and the pure per-epoch metrics.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sai_mlflow import keys as K
from sai_mlflow.telemetry.epoch import EpochInputs, epoch_metrics
from sai_mlflow.tracking.settings import TrackingSettings
from sai_mlflow.tracking.sink import MemorySink
from sai_mlflow.training import RunTracker

BATCHES, EPOCHS = 4, 2


def stand_in_trainer(tmp_path, synthetic_data):
    args = SimpleNamespace(batch=8, imgsz=[96, 64], cache="True", model="yolov8n.yaml", data=str(synthetic_data),
                           val=True, resume=False, name="t", api_token="s3cr3t")
    return SimpleNamespace(
        device="cpu", args=args, batch_size=8, data={"train": str(synthetic_data.parent / "images" / "train")},
        train_loader=[None] * BATCHES, start_epoch=0, epoch=0, epochs=EPOCHS, tloss=None,
        label_loss_items=lambda tloss, prefix: {"train/box_loss": 1.5, "train/cls_loss": 2.0, "train/dfl_loss": 1.1},
        metrics={"metrics/mAP50(B)": 0.4, "metrics/mAP50-95(B)": 0.2, "val/box_loss": 1.0},
        lr={"lr/pg0": 0.01}, save_dir=str(tmp_path), wdir=str(tmp_path / "weights"), best=str(tmp_path / "none.pt"),
    )


@pytest.fixture
def tracked(tmp_path, synthetic_data):
    trainer = stand_in_trainer(tmp_path, synthetic_data)
    sink = MemorySink()
    settings = TrackingSettings(stage="unit", memory_interval_s=0.05, publish_interval_s=0.05, log_model=False)
    tracker = RunTracker(trainer, settings=settings, sink=sink)
    tracker.on_setup_done(trainer)
    tracker.on_train_start(trainer)
    for epoch in range(EPOCHS):
        trainer.epoch = epoch
        tracker.on_epoch_start(trainer)
        for _ in range(BATCHES):
            tracker.clock.batch_start()
            tracker.clock.batch_end()
        tracker.on_train_epoch_end(trainer)
        tracker.on_fit_epoch_end(trainer)
    trainer.epoch = EPOCHS  # Ultralytics' final validation of best.pt, reported at epochs + 1
    tracker.on_fit_epoch_end(trainer)
    assert tracker.finish(trainer, "FINISHED")
    return sink


def test_params_and_tags_follow_the_one_reading_of_the_arguments(tracked):
    assert tracked.params["batch"] == "8"
    assert tracked.params["api_token"] == "***redacted***"
    assert tracked.tags[K.TAG_CACHE_MODE] == "none"  # 'True' (a string): Ultralytics 8.4 builds no cache
    assert tracked.tags[K.TAG_IMGSZ] == "96"  # a list trains at its largest side
    assert tracked.tags[K.TAG_RUN_KIND] == "train" and tracked.tags[K.TAG_STAGE] == "unit"
    assert tracked.tags[K.TAG_MEMORY_SOURCE] == "rss" and tracked.tags[K.TAG_GPU] == "cpu"
    assert tracked.tags[K.TAG_DATASET_DIGEST]


def test_every_batch_once_and_epochs_one_based(tracked):
    assert [s for s, _ in tracked.series(K.BATCH_STEP_S)] == list(range(BATCHES * EPOCHS))
    assert [s for s, _ in tracked.series(K.VAL_MAP50)] == [1, 2]  # the best.pt re-validation is not an epoch
    assert [v for _, v in tracked.series(K.VAL_MAP50)] == [0.4, 0.4]
    assert {s for s, _ in tracked.series(K.SUMMARY_EPOCHS_COMPLETED)} == {0}
    assert tracked.series(K.SUMMARY_EPOCHS_COMPLETED)[-1][1] == EPOCHS
    assert tracked.status == "FINISHED"
    assert any(p.endswith("batch_timings.csv") for p, _ in tracked.artifacts)


def test_epoch_metrics_is_pure_and_maps_ultralytics_names():
    values = epoch_metrics(EpochInputs(
        epoch=2, epochs_planned=5, losses={"train/box_loss": 1.0}, val_metrics={"metrics/mAP50(B)": 0.5, "x": 3},
        lr={"lr/pg0": 0.01}, train_peak_gib=3.0, val_peak_gib=4.0, torch_peaks_gib=(5.0, 4.5),
        step_s=[1.0, 3.0, 2.0], duration_s=10.0, epoch_durations_s=[20.0, 10.0]))
    assert values[K.VAL_MAP50] == 0.5 and "x" not in values
    assert values[K.EPOCH_STEP_S_MEDIAN] == 2.0
    assert values[K.EPOCH_TORCH_RESERVED_PEAK_GIB] == 5.0 and values[K.EPOCH_TORCH_ALLOCATED_PEAK_GIB] == 4.5
    assert values[K.EPOCH_ETA_S] == 3 * 15.0  # 3 epochs left at the mean epoch so far


def test_no_validation_no_map():
    values = epoch_metrics(EpochInputs(
        epoch=1, epochs_planned=1, losses={}, val_metrics=None, lr={}, train_peak_gib=0, val_peak_gib=0,
        torch_peaks_gib=None, step_s=[], duration_s=1.0, epoch_durations_s=[1.0]))
    assert K.VAL_MAP50 not in values and K.EPOCH_STEP_S_MEDIAN not in values and values[K.EPOCH_ETA_S] == 0


def test_a_run_that_cannot_be_opened_leaves_no_sampler_running(tmp_path, synthetic_data, sqlite_uri, client):
    """Nothing is started before the call that can raise: a failed open leaks no thread."""
    import threading

    trainer = stand_in_trainer(tmp_path, synthetic_data)
    before = {t.ident for t in threading.enumerate()}
    settings = TrackingSettings(tracking_uri=sqlite_uri, experiment="e", run_id="0" * 32, log_model=False)
    with pytest.raises(Exception, match="0" * 32):  # the store's refusal naming the run, not any error at all
        RunTracker(trainer, settings=settings)
    leaked = [t.name for t in threading.enumerate() if t.ident not in before and t.name.startswith("sai-")]
    assert leaked == []
