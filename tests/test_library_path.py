"""The README's library path, `YOLO(...).train(trainer=TrackedDetectionTrainer, ...)`, logs the whole contract.

Run as a user's script would: a child process without pytest's marker in its environment, MLflow's own
variables pointing at a fresh sqlite store, Ultralytics' settings in a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import AS_A_USER, ROOT

from sai_mlflow import keys as K

pytestmark = pytest.mark.slow  # real CPU training
EPOCHS, BATCH, IMAGES = 2, 8, 32
RUN_NAME_SECRET = "LibS3cretRunName"  # SAI_MLFLOW_RUN_NAME on the library path goes through the redaction rule

SCRIPT = """
import sys
from ultralytics import YOLO
from sai_mlflow.trainer import TrackedDetectionTrainer
data, project, epochs, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
YOLO("yolov8n.yaml").train(trainer=TrackedDetectionTrainer, data=data, epochs=epochs, batch=batch, imgsz=64,
                           device="cpu", workers=0, plots=False, amp=False, project=project, name="lib")
"""


def test_yolo_train_with_our_trainer_logs_the_contract(tmp_path, synthetic_data):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k not in AS_A_USER}
    env.update(YOLO_OFFLINE="1", MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME="lib",
               YOLO_CONFIG_DIR=str(tmp_path / "yolo-settings"), SAI_MLFLOW_LOG_MODEL="0",
               SAI_MLFLOW_RUN_NAME=f"lib password={RUN_NAME_SECRET}")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(synthetic_data), str(tmp_path / "runs"), str(EPOCHS),
                           str(BATCH)], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, [r.info.run_name for r in runs]  # ours only: Ultralytics' own callback stays off
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("lib password=") and RUN_NAME_SECRET not in run.info.run_name
    summary = next((tmp_path / "runs").rglob("summary.md")).read_text()
    assert RUN_NAME_SECRET not in summary and RUN_NAME_SECRET not in proc.stdout + proc.stderr
    for t in K.CONTRACT_TAGS:
        assert t in run.data.tags, t
    assert run.data.tags[K.TAG_BATCH_SIZE] == str(BATCH) and run.data.tags[K.TAG_RUN_KIND] == "train"
    for key in K.SUMMARY_KEYS:
        assert key in run.data.metrics, key
    nb = IMAGES // BATCH
    for key in K.BATCH_KEYS:
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == list(range(EPOCHS * nb)), key
    for key in K.EPOCH_KEYS:
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == list(range(1, EPOCHS + 1))
