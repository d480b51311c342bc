"""A real 2-process DDP training on the CPU (gloo) through Ultralytics' launcher and torch.distributed.run.

tests/ddp_cpu_trainer.py is the tracked trainer with a CPU world size of 2 (Ultralytics gives `cpu` world size
0 and sets up DDP on CUDA only); the launcher, the workers rebuilt from the module path, rank 0's tracking,
the guard and Ultralytics' broadcast of `stop` are the product's own. Real sqlite store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sai_mlflow import keys as K

HERE = Path(__file__).resolve().parent
PER_RANK_BATCH, TRAIN_IMAGES = 2, 16
BATCHES_PER_EPOCH = TRAIN_IMAGES // 2 // PER_RANK_BATCH  # each rank sees half the images: 4 batches, counted once


def _launch(tmp_path, synthetic_data, sqlite_uri, epochs: int, policy: Path | None = None, stop_on: str = ""):
    spec = {"args": {"model": "yolov8n.yaml", "data": str(synthetic_data), "epochs": epochs,
                     "batch": 2 * PER_RANK_BATCH, "imgsz": 64, "device": "cpu", "workers": 0, "amp": False,
                     "plots": False, "project": str(tmp_path / "runs"), "name": "ddp"},
            "settings": {"tracking_uri": sqlite_uri, "experiment": "ddp-cpu", "publish_interval_s": 1.0,
                         "log_model": False, "system_metrics": False, "guard_stop_on": stop_on,
                         "policy_file": str(policy or "")}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "ycfg"), "MPLBACKEND": "Agg",
           "SAI_TEST_DDP_WORLD": "2",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    log = (tmp_path / "launcher.log").open("w")
    return subprocess.Popen([sys.executable, str(HERE / "ddp_cpu_trainer.py"), str(path)], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def _the_run(client):
    exp = client.get_experiment_by_name("ddp-cpu")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    assert len(runs) == 1, f"{len(runs)} runs: rank 1 (or the launcher) opened a run of its own"
    return runs[0]


@pytest.fixture
def sixteen_images(tmp_path):
    from sai_mlflow.data.synthetic import SyntheticSpec, generate

    return generate(tmp_path / "data", SyntheticSpec(train=TRAIN_IMAGES, val=8, width=96, height=64, seed=1))


@pytest.mark.slow
def test_ddp_on_two_cpu_ranks_one_run_steps_once_guard_stops_both(tmp_path, sixteen_images, sqlite_uri, client):
    policy = tmp_path / "policy.yaml"
    policy.write_text("max_memory_fraction: 0.01\n")  # any CPU process is over it: the guard stops after epoch 1
    proc = _launch(tmp_path, sixteen_images, sqlite_uri, epochs=3, policy=policy, stop_on="memory_over_limit")
    rc = proc.wait(timeout=1500)
    log = (tmp_path / "launcher.log").read_text(errors="replace")
    assert rc == 0, log[-4000:]  # torch.distributed.run returned 0: both ranks ended, at the same epoch
    run = _the_run(client)
    assert run.info.status == "FINISHED"
    assert f'launched run: ["{run.info.run_id}", "{run.info.experiment_id}"]' in log  # the launcher can point at it
    tags, metrics = run.data.tags, run.data.metrics
    assert tags[K.TAG_DEVICES] == "2"
    assert tags[K.TAG_STOPPED_BY] == "memory_over_limit"
    assert tags[K.TAG_BATCH_SIZE] == str(2 * PER_RANK_BATCH)  # Ultralytics' total over the devices
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, K.BATCH_STEP_S))
    assert steps == list(range(BATCHES_PER_EPOCH))  # rank 0's batches of epoch 1 only, each once
    assert metrics[K.SUMMARY_BATCHES_PER_EPOCH] == BATCHES_PER_EPOCH
    assert metrics[K.SUMMARY_EPOCHS_COMPLETED] == 1
    results = (tmp_path / "runs" / "ddp" / "results.csv").read_text().strip().splitlines()
    assert len(results) == 2  # header + epoch 1: every rank left the loop at the guard's epoch


@pytest.mark.slow
def test_sigterm_to_the_ddp_launcher_stops_every_rank_and_leaves_the_run_killed(tmp_path, sixteen_images,
                                                                                   sqlite_uri, client):
    proc = _launch(tmp_path, sixteen_images, sqlite_uri, epochs=200)
    deadline = time.monotonic() + 900
    run = None
    while time.monotonic() < deadline and proc.poll() is None:  # until rank 0's batches reach the store
        exp = client.get_experiment_by_name("ddp-cpu")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if runs and client.get_metric_history(runs[0].info.run_id, K.BATCH_STEP_S):
            run = runs[0]
            break
        time.sleep(1)
    assert run is not None, (tmp_path / "launcher.log").read_text(errors="replace")[-4000:]
    family = psutil.Process(proc.pid).children(recursive=True)  # torch.distributed.run and its two workers
    assert len(family) >= 3
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=300)
    assert rc == 128 + signal.SIGTERM, (tmp_path / "launcher.log").read_text(errors="replace")[-4000:]
    gone, alive = psutil.wait_procs(family, timeout=60)
    assert not alive, f"left running: {[p.pid for p in alive]}"
    run = _the_run(client)
    assert run.info.status == "KILLED"
    assert run.data.tags[K.TAG_DEVICES] == "2"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, K.BATCH_STEP_S)]
    assert len(steps) == len(set(steps))  # each batch once
