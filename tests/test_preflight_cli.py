"""`sai-mlflow preflight` and scripts/setup_shm_training.sh end to end: exit codes 0/1/2, table and json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sai_mlflow.cli import cli
from sai_mlflow.data.audit import is_on_tmpfs
from sai_mlflow.data.synthetic import SyntheticSpec, generate

REPO = Path(__file__).resolve().parents[1]
HAS_SHM = os.path.isdir("/dev/shm") and is_on_tmpfs("/dev/shm") and os.access("/dev/shm", os.W_OK)


@pytest.fixture
def shm_root():
    if not HAS_SHM:
        pytest.skip("no writable tmpfs at /dev/shm")
    root = Path("/dev/shm") / f"sai-test-cli-{os.getpid()}-{time.monotonic_ns()}"
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./mlruns from elsewhere
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _config(path: Path, **train) -> Path:
    doc = {"experiment": "pf", "train": {"model": "yolov8n.yaml", "epochs": 1, "batch": 8, "imgsz": 64,
                                         "workers": 0, "device": "cpu", "cache": False, **train}}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_clean_config_exits_0(env, synthetic_data):
    cfg = _config(env / "ok.yaml", data=str(synthetic_data))
    r = CliRunner().invoke(cli, ["preflight", "--config", str(cfg), "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["ok"] and {f["code"] for f in doc["findings"]} >= {"dataset_audit"}
    assert not (env / "mlruns").exists()  # preflight never creates a store


def test_seed_double_cache_config_exits_1_with_table(env, shm_root):
    data = generate(shm_root, SyntheticSpec(train=8, val=2, width=48, height=32))
    cfg = _config(env / "seed.yaml", data=str(data), cache=True, imgsz=[1440, 808])
    r = CliRunner().invoke(cli, ["preflight", "--config", str(cfg)], terminal_width=200)
    assert r.exit_code == 1
    assert "double_cache" in r.output and "imgsz_coerced" in r.output and "error(s)" in r.output
    r = CliRunner().invoke(cli, ["preflight", "--config", str(cfg), "--set", "cache=false", "--format", "json"])
    assert r.exit_code == 0, r.output


def test_flags_without_config(env, synthetic_data):
    r = CliRunner().invoke(cli, ["preflight", "--data", str(synthetic_data), "--batch", "1000", "--imgsz", "1440,808",
                                 "--device", "cpu", "--format", "json"])
    assert r.exit_code == 0, r.output
    got = {f["code"]: f for f in json.loads(r.output)["findings"]}
    assert got["batch_vs_dataset"]["level"] == "warning" and "1440×1440" in got["imgsz_coerced"]["message"]
    r = CliRunner().invoke(cli, ["preflight", "--data", str(env / "nope.yaml"), "--format", "json"])
    assert r.exit_code == 1 and "dataset_unreadable" in r.output


@pytest.mark.parametrize("argv", [
    ["preflight"],
    ["preflight", "--config", "missing.yaml"],
    ["preflight", "--format", "xml", "--data", "x"],
    ["preflight", "--set", "nokeyvalue", "--data", "x"],
])
def test_bad_usage_exits_2(env, argv):
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 2, r.output


def test_unknown_config_key_exits_2(env, synthetic_data):
    cfg = _config(env / "c.yaml", data=str(synthetic_data))
    r = CliRunner().invoke(cli, ["preflight", "--config", str(cfg), "--set", "bacth=8"])
    assert r.exit_code == 2 and "batch" in r.output


def test_forecast_reads_the_store(env, synthetic_data, sqlite_uri, client):
    from sai_mlflow import keys as K

    exp = client.create_experiment("pf")
    for batch, peak in (("32", 37.2), ("64", 72.8)):
        run = client.create_run(exp, tags={K.TAG_BATCH_SIZE_EFFECTIVE: batch, K.TAG_MODEL: "yolov8n.yaml",
                                           K.TAG_IMGSZ: "64", K.TAG_GPU: "cpu"})
        client.log_metric(run.info.run_id, K.SUMMARY_PEAK_GIB, peak)
        client.log_metric(run.info.run_id, K.SUMMARY_TOTAL_GIB, 139.8)
        client.set_terminated(run.info.run_id)
    cfg = _config(env / "c.yaml", data=str(synthetic_data), batch=128)
    r = CliRunner().invoke(cli, ["preflight", "--config", str(cfg), "--tracking-uri", sqlite_uri, "--format", "json"])
    assert r.exit_code == 1
    f = {x["code"]: x for x in json.loads(r.output)["findings"]}["memory_forecast"]
    assert f["level"] == "error" and f["fix"] == "batch: 111"


def test_setup_shm_training_script(shm_root, synthetic_data):
    dest = shm_root / "staged"
    script = REPO / "scripts" / "setup_shm_training.sh"
    env = {k: v for k, v in os.environ.items()}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    run = lambda *a: subprocess.run([str(script), *a], capture_output=True, text=True, env=env, timeout=120)  # noqa: E731
    r = run(str(synthetic_data), str(dest), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (dest / "data.yaml").is_file() and "cache: false" in r.stdout
    r = run(str(synthetic_data), str(dest), "--no-progress")
    assert r.returncode == 0 and "nothing copied" in r.stdout
    usage = run()
    assert usage.returncode == 2 and "setup_shm_training.sh DATA_YAML [DEST] [--dry-run]" in usage.stdout + usage.stderr
