"""Contract with Ultralytics: our hook names exist, and the DDP launcher's script rebuilds our trainer with them."""

import pickle

import pytest

from sai_mlflow import trainer as tr


def test_every_hook_we_use_exists_in_ultralytics_callback_table():
    from ultralytics.utils.callbacks.base import default_callbacks

    assert set(tr.HOOKS) <= set(default_callbacks)


def test_callbacks_pickle_by_reference():
    for fn in tr.HOOKS.values():
        assert pickle.loads(pickle.dumps(fn)) is fn


@pytest.mark.slow
def test_ddp_script_imports_our_trainer_with_our_callbacks(synthetic_data, tmp_path, monkeypatch):
    """Ultralytics writes a temp script + pickled state for DDP workers (ultralytics#6168): check both."""
    from ultralytics.utils import dist
    from ultralytics.utils.patches import torch_load

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'db.sqlite'}")
    trainer = tr.TrackedDetectionTrainer(overrides=dict(
        model="yolov8n.yaml", data=str(synthetic_data), epochs=1, batch=4, imgsz=32, device="cpu",
        project=str(tmp_path / "runs"), name="ddp", plots=False))
    try:
        script = dist.generate_ddp_file(trainer)
        text = open(script).read()
        assert 'state["trainer"](cfg=cfg, overrides=state["args"], _callbacks=state["callbacks"])' in text
        state = torch_load(script.replace(".py", ".pt"), map_location="cpu")  # as the worker script does
        assert state["trainer"] is tr.TrackedDetectionTrainer
        for event, fn in tr.HOOKS.items():
            assert fn in state["callbacks"][event]
        mlflow_cbs = [f for fns in state["callbacks"].values() for f in fns
                      if getattr(f, "__module__", "") == tr.ULTRALYTICS_MLFLOW_MODULE]
        assert mlflow_cbs == []  # Ultralytics' own MLflow callback is off for our runs
    finally:
        if trainer.sai_tracker is not None:
            trainer.sai_tracker.finish(trainer, "KILLED")


def test_worker_side_init_does_not_register_hooks_twice(synthetic_data, tmp_path, monkeypatch, sqlite_uri, client):
    """A DDP worker builds our trainer from the launcher's pickled callbacks, which already hold our hooks."""
    from ultralytics.utils.callbacks import get_default_callbacks

    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri)  # building the trainer opens its run (a ready store)
    cbs = get_default_callbacks()
    for event, fn in tr.HOOKS.items():
        cbs[event].append(fn)  # as if unpickled from the launcher's state
    overrides = dict(model="yolov8n.yaml", data=str(synthetic_data), epochs=1, batch=4, imgsz=32, device="cpu",
                     project=str(tmp_path / "runs"), plots=False)
    worker = tr.TrackedDetectionTrainer(overrides={**overrides, "name": "worker"}, _callbacks=cbs)
    try:
        for event, fn in tr.HOOKS.items():
            assert worker.callbacks[event].count(fn) == 1, event
    finally:
        if worker.sai_tracker is not None:
            worker.sai_tracker.finish(worker, "KILLED")
