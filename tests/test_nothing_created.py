"""A command that does not run creates nothing: no ./mlruns/mlflow.db, no lock file, no run folder (issue 17,
item 3)."""

from __future__ import annotations

import pytest
import yaml
from helpers import ROOT, cli_in_process, fresh_sqlite_store

SMOKE = str(ROOT / "configs" / "cpu_smoke.yaml")


def _clean_env() -> dict:
    return {"MLFLOW_TRACKING_URI": "", "MLFLOW_EXPERIMENT_NAME": "", "SAI_MLFLOW_SPOOL_DIR": ""}


def _left(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("args", [
    ["compare-runs", "--experiment", "anything"],
    ["promote", "0123456789abcdef0123456789abcdef", "--model", "m", "--alias", "champion", "--dry-run"],
])
def test_reading_commands_in_a_folder_without_a_store_create_nothing(tmp_path, args):
    work = tmp_path / "empty"
    work.mkdir()
    r = cli_in_process(*args, cwd=work, env=_clean_env())
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Error:" in r.stderr and "no MLflow store at sqlite:///" in r.stderr and "Traceback" not in r.stderr
    assert _left(work) == []  # before: mlruns/, mlruns/mlflow.db, mlruns/.mlflow.db.init.lock


def test_compare_runs_standalone_command_creates_nothing(tmp_path):
    from sai_mlflow.cli.compare import compare_runs

    work = tmp_path / "empty"
    work.mkdir()
    r = cli_in_process("--experiment", "x", cwd=work, env=_clean_env(), command=compare_runs)
    assert r.returncode == 2 and "no MLflow store" in r.stderr, r.stderr[-2000:]
    assert _left(work) == []


def test_train_failing_preflight_creates_nothing(tmp_path, synthetic_data):
    work = tmp_path / "work"
    (tmp_path / "empty").mkdir()
    work.mkdir()
    bad = tmp_path / "bad.yaml"  # a validation split with no images: preflight's dataset_split_empty error
    doc = yaml.safe_load(synthetic_data.read_text())
    bad.write_text(yaml.safe_dump({**doc, "path": str(synthetic_data.parent), "val": str(tmp_path / "empty")}))
    r = cli_in_process("train", "--config", SMOKE, "--set", f"data={bad}", "--set", "imgsz=64",
                       "--set", f"project={work / 'runs'}", cwd=work, env=_clean_env())
    assert r.returncode == 1, r.stderr[-2000:]
    assert "nothing was started" in r.stdout + r.stderr
    assert _left(work) == []  # before: mlruns/mlflow.db (an empty store) and its lock file


def test_a_store_that_exists_is_read_without_a_lock_file(tmp_path, empty_mlflow_db):
    """Opening an existing, current store takes no lock: nothing is written beside it."""
    from sai_mlflow.tracking.store import get_or_create_experiment, make_client

    uri = fresh_sqlite_store(f"sqlite:///{tmp_path / 's' / 'mlflow.db'}", empty_mlflow_db)  # a store never locked
    get_or_create_experiment(make_client(uri), "e")
    assert not (tmp_path / "s" / ".mlflow.db.init.lock").exists()
    make_client(uri, create=False).get_experiment_by_name("e")
    assert not (tmp_path / "s" / ".mlflow.db.init.lock").exists()


@pytest.mark.parametrize("bad, needle", [
    ("history", "runs[0]"),            # a history file whose run lacks its batch
    ("ultralytics", "not valid YAML"),  # an Ultralytics run folder whose args.yaml is not YAML
])
def test_an_import_of_a_malformed_file_is_refused_before_the_store_is_made(tmp_path, bad, needle):
    work = tmp_path / "work"
    work.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    if bad == "history":
        (src / "h.yaml").write_text("format: sai-history/1\nruns:\n  - name: b96\n")
        args = ["import-history", str(src / "h.yaml")]
    else:
        (src / "args.yaml").write_text("epochs: [1\n")
        args = ["import-ultralytics", str(src)]
    r = cli_in_process(*args, cwd=work, env=_clean_env())
    assert r.returncode == 2, r.stderr[-2000:]
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")] and needle in r.stderr, r.stderr
    assert _left(work) == []  # before: mlruns/, mlruns/mlflow.db (a migrated, empty store), its lock file
