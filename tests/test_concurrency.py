"""Eight training processes at once on one sqlite store, and on one `mlflow server`: every point arrives."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ROOT

from sai_mlflow import keys as K

pytestmark = pytest.mark.slow
PROCS, EPOCHS, BATCH, TRAIN_IMAGES = 8, 1, 8, 32


def _train_all(tmp, data, uri):
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    procs = []
    for i in range(PROCS):
        work = tmp / f"p{i}"
        work.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "sai_mlflow.cli", "train", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"),
             "--set", f"data={data}", "--set", f"epochs={EPOCHS}", "--set", f"batch={BATCH}", "--set", "imgsz=32",
             "--set", f"project={work / 'runs'}", "--set", "tracking.publish_interval_s=1",
             "--set", "tracking.log_model=false", "--set", "val=false", "--run-name", f"p{i}",
             "--tracking-uri", uri, "--experiment", "concurrency"],
            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]


def _check_every_point(uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("concurrency")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"p{i}" for i in range(PROCS)]
    nb = TRAIN_IMAGES // BATCH
    for r in runs:
        assert r.info.status == "FINISHED", r.info.run_name
        for key in K.BATCH_KEYS:
            steps = [m.step for m in client.get_metric_history(r.info.run_id, key)]
            assert sorted(steps) == list(range(EPOCHS * nb)), (r.info.run_name, key)
        assert client.get_metric_history(r.info.run_id, K.MEMORY_USED_GIB)
        assert r.data.metrics[K.SUMMARY_EPOCHS_COMPLETED] == EPOCHS
        assert r.data.tags[K.TAG_DATASET_DIGEST]


def test_eight_processes_on_one_sqlite_store(tmp_path, synthetic_data):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    _train_all(tmp_path, synthetic_data, uri)
    _check_every_point(uri)


def test_eight_processes_on_one_mlflow_server(tmp_path, synthetic_data, plain_server):
    _train_all(tmp_path, synthetic_data, plain_server.uri)
    _check_every_point(plain_server.uri)
