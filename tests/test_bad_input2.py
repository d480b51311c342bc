"""Issue 17 item 5: every bad input gets one `Error:` line naming the file, key or flag, and the fix.

Each case runs the real `sai-mlflow` command, its error boundary included, in this process
(tests/helpers.py `cli_in_process`: what a refusal says does not depend on a new interpreter; test_error_boundary
keeps one subprocess per entry point) against real files and, where one is needed, a real sqlite store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import cli_in_process, copy_store


def one_error(p, code: int, *needles: str) -> str:
    """Exit `code`, exactly one `Error:` line holding every needle, no traceback; returns that line."""
    out = p.stdout + p.stderr
    assert p.returncode == code, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out[-2000:]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def _config(path: Path, data: Path, **train) -> Path:
    doc = {"experiment": "bad-input", "train": {"model": "yolov8n.yaml", "data": str(data), "epochs": 1, "batch": 4,
                                                "imgsz": 64, "workers": 0, "device": "cpu", **train}}
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def env(tmp_path):
    return {"YOLO_CONFIG_DIR": str(tmp_path / "yolo-cfg"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'db' / 'm.db'}"}


# --- importers: NaN / inf -----------------------------------------------------------------------------

def _run_dir(root: Path, epochs="3", batch="8", epoch_cell="2") -> Path:
    root.mkdir(parents=True)
    (root / "args.yaml").write_text(f"task: detect\nmodel: yolov8n.yaml\ndata: /nowhere/data.yaml\nepochs: {epochs}\n"
                                    f"batch: {batch}\nimgsz: 64\nname: r1\n")
    (root / "results.csv").write_text(f"epoch,time,metrics/mAP50(B)\n1,10,0.1\n{epoch_cell},20,0.2\n")
    return root


@pytest.mark.parametrize("field, kwargs, needles", [
    ("results.csv epoch nan", {"epoch_cell": "nan"}, ("results.csv", "epoch nan", "fix or delete that row")),
    ("args.yaml epochs .inf", {"epochs": ".inf"}, ("args.yaml", "epochs: inf", "write the number the run used")),
    ("args.yaml batch .inf", {"batch": ".inf"}, ("args.yaml", "batch: inf", "write the number the run used")),
])
def test_import_ultralytics_refuses_nan_and_inf_with_the_file_and_the_fix(tmp_path, client, field, kwargs, needles):
    d = _run_dir(tmp_path / "run", **kwargs)
    p = cli_in_process("import-ultralytics", str(d), "--experiment", "imp", cwd=tmp_path,
                       env={"MLFLOW_TRACKING_URI": client.tracking_uri})  # a store that exists: no migration
    one_error(p, 2, *needles)
    assert "unexpected" not in p.stderr


# --- config numbers, imgsz, device -----------------------------------------------------------------------

def test_config_numbers_written_1e_n_are_read_as_numbers(tmp_path, env, synthetic_data):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"experiment: e\ntrain:\n  model: yolov8n.yaml\n  data: {synthetic_data}\n  lr0: 1e-3\n"
                   "  epochs: 1e1\n  batch: 4\n  imgsz: 64\n  device: cpu\n  workers: 0\n")
    p = cli_in_process("preflight", "--config", str(cfg), "--set", "weight_decay=5e-4", "--format", "json",
                       cwd=tmp_path, env=env)
    assert p.returncode == 0, (p.stdout + p.stderr)[-2000:]
    assert json.loads(p.stdout[p.stdout.index("{"):])["ok"]  # after Ultralytics' first-run settings notice

    from sai_mlflow.config import load_config

    train = load_config(cfg, ["weight_decay=5e-4"]).train
    assert train["lr0"] == 0.001 and train["epochs"] == 10 and isinstance(train["epochs"], int)
    assert train["weight_decay"] == 0.0005
    assert load_config(cfg, ["name=1e9"]).train["name"] == "1e9"  # a text argument stays text


@pytest.mark.parametrize("command, imgsz, needle", [
    ("preflight", "[64,64,64]", "3 values"), ("train", "[0,64]", "at least 1 pixel"),
    ("preflight", "100000", "more than 16384"),
])
def test_impossible_imgsz_is_refused_naming_the_key(tmp_path, env, synthetic_data, command, imgsz, needle):
    cfg = _config(tmp_path / "c.yaml", synthetic_data)
    p = cli_in_process(command, "--config", str(cfg), "--set", f"imgsz={imgsz}", cwd=tmp_path, env=env)
    one_error(p, 2, "train.imgsz", needle, "imgsz: 640")


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


def test_a_cuda_device_the_host_lacks_fails_preflight(tmp_path, env, synthetic_data):
    """device 'cuda:N' with N = the number of GPUs here never exists: an error before training, not later."""
    n = _cuda_count()
    cfg = _config(tmp_path / "c.yaml", synthetic_data)
    p = cli_in_process("preflight", "--config", str(cfg), "--set", f"device=cuda:{n}", "--format", "json", cwd=tmp_path,
                env=env)
    assert p.returncode == 1, (p.stdout + p.stderr)[-2000:]
    found = {f["code"]: f for f in json.loads(p.stdout[p.stdout.index("{"):])["findings"]}
    assert found["gpu_missing"]["level"] == "error" and "device: cpu" in found["gpu_missing"]["fix"], found
    t = cli_in_process("train", "--config", str(cfg), "--set", f"device=cuda:{n}", cwd=tmp_path, env=env)
    assert t.returncode == 1 and "gpu_missing" in t.stdout + t.stderr and "nothing was started" in t.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(_cuda_count() > 0, reason="this host has a CUDA device 0")
def test_device_0_on_a_host_without_gpu_fails_preflight(tmp_path, env, synthetic_data):
    cfg = _config(tmp_path / "c.yaml", synthetic_data, device=0)
    p = cli_in_process("preflight", "--config", str(cfg), "--format", "json", cwd=tmp_path, env=env)
    assert p.returncode == 1, (p.stdout + p.stderr)[-2000:]
    found = {f["code"]: f for f in json.loads(p.stdout[p.stdout.index("{"):])["findings"]}
    assert found["gpu_missing"]["level"] == "error" and "no CUDA GPU" in found["gpu_missing"]["message"], found


# --- --set ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, item, needles", [
    ("train", "train=5", ("--set train=5", "section of Ultralytics arguments", "--set batch=8")),
    ("preflight", "data=", ("--set data=", "no value", "--set data=path/to/data.yaml")),
])
def test_set_without_a_usable_value_is_named(tmp_path, env, synthetic_data, command, item, needles):
    cfg = _config(tmp_path / "c.yaml", synthetic_data)
    p = cli_in_process(command, "--config", str(cfg), "--set", item, cwd=tmp_path, env=env)
    line = one_error(p, 2, *needles)
    assert "did you mean 'train'" not in line and "None does not exist" not in line


def test_preflight_without_config_refuses_an_empty_set_value(tmp_path, env, synthetic_data):
    p = cli_in_process("preflight", "--data", str(synthetic_data), "--set", "batch=", cwd=tmp_path, env=env)
    one_error(p, 2, "--set batch=", "no value")


# --- compare-runs and promote flags: checked before any work -----------------------------------------------

@pytest.fixture(scope="module")
def judged_store(tmp_path_factory, seed_store):
    """The seed's runs (judged without training), a copy of the session's store."""
    tmp = tmp_path_factory.mktemp("judged")
    return tmp, copy_store(seed_store[0], tmp / "store")


@pytest.mark.parametrize("flags, needles", [
    (["--width", "-5"], ("'--width'", "-5", "x>=40")),
    (["--max-memory-fraction", "-1"], ("'--max-memory-fraction'", "must be > 0 and <= 1")),
    (["--max-memory-fraction", "nan"], ("'--max-memory-fraction'", "not a finite number")),
    (["--max-memory-fraction", "50"], ("'--max-memory-fraction'", "must be > 0 and <= 1")),
    (["--plot", "p.txt"], ("'--plot'", "p.txt", ".png")),
])
def test_compare_runs_names_the_flag_before_any_verdict(judged_store, flags, needles):
    tmp, uri = judged_store
    p = cli_in_process("compare-runs", "--experiment", "sai-net-stage1", "--tracking-uri", uri, *flags, cwd=tmp)
    line = one_error(p, 2, *needles)
    assert "decision.yaml" not in line
    assert "Open in MLflow" not in p.stdout and "recommended" not in p.stdout  # nothing judged or printed first
    assert not (tmp / "p.txt").exists()


def test_compare_runs_still_takes_good_flags(judged_store):
    tmp, uri = judged_store
    p = cli_in_process("compare-runs", "--experiment", "sai-net-stage1", "--tracking-uri", uri, "--width", "120",
                "--max-memory-fraction", "0.95", "--plot", str(tmp / "ok.png"), cwd=tmp)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp / "ok.png").stat().st_size > 0


@pytest.mark.parametrize("alias", ["", "  "])
def test_an_empty_alias_is_called_empty_not_reserved(judged_store, alias):
    tmp, uri = judged_store
    p = cli_in_process("promote", "0" * 32, "--model", "m", "--alias", alias, "--dry-run", "--tracking-uri", uri,
                       cwd=tmp)
    line = one_error(p, 2, "'--alias'", "empty", "--alias champion")
    assert "reserved" not in line
