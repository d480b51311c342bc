"""AutoBatch (`batch: -1` or a fraction) is accepted and the request is recorded as asked.

`batch_size` keeps the request (`-1`, `0.7`); `batch_size_effective` the batch Ultralytics settled on. On the
CPU Ultralytics' AutoBatch falls back to its default batch 16, so both paths train for real here: the CLI
(`--set batch=-1`) and the library (`YOLO().train(trainer=TrackedDetectionTrainer, batch=0.7)`), where
Ultralytics overwrites `trainer.args.batch` before our setup hook reads it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ROOT, run_cli

from sai_mlflow import keys as K
from sai_mlflow.config import ConfigError, load_config
from sai_mlflow.ultralytics_args import batch_request_tag, is_autobatch

SMOKE = str(ROOT / "configs" / "cpu_smoke.yaml")


@pytest.mark.parametrize("given, kept", [("-1", -1), ("0.7", 0.7), ("8", 8), ("8.0", 8)])
def test_config_accepts_autobatch_and_whole_batches(given, kept):
    cfg = load_config(SMOKE, [f"batch={given}"], check_data=False)
    assert cfg.train["batch"] == kept and type(cfg.train["batch"]) is type(kept)


@pytest.mark.parametrize("given", ["0", "-2", "1.5", "abc"])
def test_config_refuses_other_batches(given):
    with pytest.raises(ConfigError, match="train.batch"):
        load_config(SMOKE, [f"batch={given}"], check_data=False)


def test_request_reading_and_tag():
    assert [is_autobatch(v) for v in (-1, 0.7, 0.05, 1, 16, 0, -2, 1.0, True)] == \
        [True, True, True, False, False, False, False, False, False]
    assert [batch_request_tag(v) for v in (-1, 0.7, 96, 96.0)] == ["-1", "0.7", "96", "96"]


def _tags(uri: str, experiment: str) -> dict:
    from sai_mlflow.tracking.store import make_client

    client = make_client(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return runs[0].data.tags


@pytest.mark.slow
def test_cli_training_with_batch_minus_one_records_request_and_settled_batch(tmp_path, synthetic_data):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    proc = run_cli("train", "--config", SMOKE, "--set", f"data={synthetic_data}", "--set", "epochs=1",
                   "--set", "batch=-1", "--set", "imgsz=64", "--set", f"project={tmp_path / 'runs'}",
                   "--set", "tracking.log_model=false", "--set", "tracking.system_metrics=false",
                   "--tracking-uri", uri, "--experiment", "ab", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AutoBatch" in proc.stderr  # preflight's note instead of comparing -1 with the dataset
    tags = _tags(uri, "ab")
    assert tags[K.TAG_BATCH_SIZE] == "-1"
    assert tags[K.TAG_BATCH_SIZE_EFFECTIVE] == "16"  # Ultralytics' CPU fallback
    summary = next((tmp_path / "runs").rglob("summary.md")).read_text()
    assert "| batch (requested / effective) | -1 / 16 |" in summary, summary  # the request, not the settled batch


LIBRARY = """
import sys
from ultralytics import YOLO
from sai_mlflow.trainer import TrackedDetectionTrainer
data, project = sys.argv[1:3]
YOLO("yolov8n.yaml").train(trainer=TrackedDetectionTrainer, data=data, epochs=1, batch=0.7, imgsz=64,
                           device="cpu", workers=0, plots=False, amp=False, project=project, name="lib")
"""


@pytest.mark.slow
def test_library_path_keeps_the_fraction_asked_for(tmp_path, synthetic_data):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "ycfg"), "MLFLOW_TRACKING_URI": uri,
           "MLFLOW_EXPERIMENT_NAME": "lib", "SAI_MLFLOW_LOG_MODEL": "0", "SAI_MLFLOW_SYSTEM_METRICS": "0"}
    proc = subprocess.run([sys.executable, "-c", LIBRARY, str(synthetic_data), str(tmp_path / "runs")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tags = _tags(uri, "lib")
    assert tags[K.TAG_BATCH_SIZE] == "0.7"
    assert tags[K.TAG_BATCH_SIZE_EFFECTIVE] == "16"
