"""import-ultralytics: an Ultralytics run dir -> a run_kind=import run; unknowns stay absent; no duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sai_mlflow import keys as K
from sai_mlflow.cli import cli
from sai_mlflow.importers import TAG_IMPORT_FINGERPRINT, ImportFailed
from sai_mlflow.importers.ultralytics_dir import import_run_dir, read_results

HEADER = ("epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),"
          "metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2")


def make_run_dir(root: Path, data: str, name="train", epochs_done=3, cache=False, batch=16, maps=None) -> Path:
    """A run dir as Ultralytics 8.4 leaves it: args.yaml = every resolved trainer argument."""
    from ultralytics.cfg import get_cfg

    d = root / name
    (d / "weights").mkdir(parents=True)
    args = vars(get_cfg(overrides={"model": "yolov8n.yaml", "data": data, "epochs": 10, "batch": batch,
                                   "imgsz": 640, "cache": cache, "name": name, "plots": False}))
    (d / "args.yaml").write_text(yaml.safe_dump(args, sort_keys=False))
    maps = maps or [0.30, 0.40, 0.45, 0.47, 0.48][:epochs_done]
    rows = [HEADER]
    for e in range(1, epochs_done + 1):
        m = maps[e - 1]
        rows.append(f"{e},{60.5 * e:.6g},1.2,2.1,1.1,0.6,0.5,{m},{m / 2},1.3,2.2,1.2,0.01,0.01,0.01")
    (d / "results.csv").write_text("\n".join(rows) + "\n")
    (d / "weights" / "best.pt").write_bytes(b"weights-best")
    (d / "weights" / "last.pt").write_bytes(b"weights-last")
    return d


def test_import_maps_what_the_dir_knows(client, tmp_path, synthetic_data):
    d = make_run_dir(tmp_path, str(synthetic_data))
    res = import_run_dir(client, d, "imports")
    assert res.action == "imported"
    run = client.get_run(res.run_id)
    tags, m, p = run.data.tags, run.data.metrics, run.data.params
    assert tags[K.TAG_RUN_KIND] == "import" and tags[K.TAG_BATCH_SIZE] == "16" and tags[K.TAG_CACHE_MODE] == "none"
    assert tags[K.TAG_MODEL] == "yolov8n.yaml" and tags[K.TAG_IMGSZ] == "640"
    assert len(tags[K.TAG_DATASET_DIGEST]) > 8  # the data.yaml resolves here, so its digest is known
    assert tags[K.TAG_DATA_ON_TMPFS] in ("true", "false")
    # unknowable from a run dir: absent, not guessed
    for t in (K.TAG_GPU, K.TAG_BATCH_SIZE_EFFECTIVE, K.TAG_MEMORY_SOURCE):
        assert t not in tags, t
    for key in (K.SUMMARY_PEAK_GIB, K.SUMMARY_STEP_S_STEADY, K.SUMMARY_IMAGES_PER_S, K.SUMMARY_WARMUP_BATCHES,
                K.SUMMARY_DATA_WAIT_FRACTION, K.MEMORY_USED_GIB, K.BATCH_STEP_S):
        assert key not in m, key
    assert p["batch"] == "16" and p["epochs"] == "10" and p["lr0"] == "0.01"
    hist = client.get_metric_history(res.run_id, K.VAL_MAP50)
    assert sorted((h.step, h.value) for h in hist) == [(1, 0.3), (2, 0.4), (3, 0.45)]
    assert m[K.SUMMARY_BEST_MAP50] == 0.45 and m[K.SUMMARY_EPOCHS_COMPLETED] == 3
    assert m[K.SUMMARY_ETA_FULL_S] == pytest.approx(10 * 60.5)  # planned epochs x median epoch time
    assert "metrics/mAP50(B)" not in m and K.TRAIN_LOSSES[0] in m and K.LR_KEYS[0] in m
    arts = {a.path for a in client.list_artifacts(res.run_id)}
    assert {"args.yaml", "results.csv", "weights"} <= arts
    assert {a.path for a in client.list_artifacts(res.run_id, "weights")} == {"weights/best.pt", "weights/last.pt"}


def test_same_dir_twice_is_not_duplicated(client, tmp_path, synthetic_data):
    d = make_run_dir(tmp_path, str(synthetic_data))
    first = import_run_dir(client, d, "imports", weights=False)
    again = import_run_dir(client, d, "imports", weights=False)
    assert again.action == "already imported" and again.run_id == first.run_id
    exp = client.get_experiment_by_name("imports")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].data.tags[TAG_IMPORT_FINGERPRINT]


def test_compare_says_what_an_import_cannot_tell(sqlite_uri, client, tmp_path, synthetic_data):
    a = make_run_dir(tmp_path, str(synthetic_data), name="a", cache=True)
    b = make_run_dir(tmp_path, str(synthetic_data), name="b", maps=[0.5, 0.5, 0.40, 0.41, 0.40], epochs_done=5)
    r = CliRunner().invoke(cli, ["import-ultralytics", str(a), str(b), "--no-weights",
                                 "--tracking-uri", sqlite_uri, "-e", "imports"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["compare-runs", "--tracking-uri", sqlite_uri, "-e", "imports", "--format", "json"])
    obj = json.loads(r.stdout)
    runs = {x["run_name"]: x for x in obj["runs"]}
    info = {x["code"] for x in runs["a"]["reasons"] if x["severity"] == "info"}
    assert {"memory_over_limit", "memory_leak", "data_bound", "batch_changed"} <= info
    assert runs["a"]["peak_gib"] is None and runs["a"]["step_s_steady"] is None
    assert runs["b"]["verdict"] == "rejected"
    assert [x["code"] for x in runs["b"]["reasons"] if x["severity"] == "reject"] == ["map_degradation"]
    assert runs["a"]["verdict"] == "recommended" and r.exit_code == 0
    assert obj["suggested_batch"] is None


def test_results_csv_with_padded_headers(tmp_path):
    f = tmp_path / "results.csv"
    f.write_text("                  epoch,      train/box_loss,   metrics/mAP50(B)\n"
                 "                      1,              1.5,               0.2\n")
    assert read_results(f) == [{"epoch": 1.0, "train/box_loss": 1.5, "metrics/mAP50(B)": 0.2}]


@pytest.mark.parametrize("setup,needle", [
    (lambda d: None, "no args.yaml"),
    (lambda d: (d / "args.yaml").write_text("a: [\n"), "not valid YAML"),
    (lambda d: ((d / "args.yaml").write_text("batch: 8\n"), (d / "results.csv").write_text("x,y\n1,2\n")),
     "no 'epoch' column"),
])
def test_bad_dirs_exit_2(sqlite_uri, client, tmp_path, setup, needle):  # client: the store exists (no migration)
    d = tmp_path / "run"
    d.mkdir()
    setup(d)
    r = CliRunner().invoke(cli, ["import-ultralytics", str(d), "--tracking-uri", sqlite_uri])
    assert r.exit_code == 2 and needle in r.output, r.output


def test_not_a_dir(client, tmp_path):
    with pytest.raises(ImportFailed, match="not a directory"):
        import_run_dir(client, tmp_path / "missing", "x")


@pytest.mark.slow
def test_real_ultralytics_run_dir(client, tmp_path, synthetic_data, monkeypatch):
    """A dir written by real Ultralytics training (CPU, tiny) imports with its real columns."""
    from ultralytics import YOLO

    monkeypatch.chdir(tmp_path)
    YOLO("yolov8n.yaml").train(data=str(synthetic_data), epochs=1, imgsz=64, batch=8, workers=0, plots=False,
                               device="cpu", project=str(tmp_path / "runs"), name="real", val=True, verbose=False,
                               amp=False)
    res = import_run_dir(client, tmp_path / "runs" / "real", "real")
    run = client.get_run(res.run_id)
    assert run.data.tags[K.TAG_BATCH_SIZE] == "8" and run.data.tags[K.TAG_IMGSZ] == "64"
    assert K.VAL_MAP50 in run.data.metrics and K.EPOCH_DURATION_S in run.data.metrics
    assert run.data.metrics[K.SUMMARY_EPOCHS_COMPLETED] == 1
