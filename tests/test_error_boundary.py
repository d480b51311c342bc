"""No traceback (issue 9, items 8, 12, 15, 16): one `Error:` line and exit 2 for bad stores and bad input;
imports validated whole before any write and never leaving a half-made run; bounds against hangs.

Real parts: real sqlite stores (corrupt, unwritable), real malformed files, the real CLI in a subprocess.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, cli_in_process, smoke_args

HIST = ROOT / "configs" / "history" / "seed_2024-08.yaml"


def one_error_line(p, code: int = 2) -> str:
    """A subprocess result or a CliRunner result: exit `code`, exactly one `Error:` line, no traceback."""
    if hasattr(p, "exit_code"):  # CliRunner: an exception escaping the command would be kept here
        assert p.exception is None or isinstance(p.exception, SystemExit), repr(p.exception)
        out, rc = p.output, p.exit_code
    else:
        out, rc = p.stdout + p.stderr, p.returncode
    assert rc == code, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out[-3000:]
    return errors[0]


def cli_run(*args):
    """The real `sai-mlflow` group in this process (its error boundary included), stdout and stderr together."""
    from click.testing import CliRunner

    from sai_mlflow.cli import cli

    return CliRunner().invoke(cli, list(args))


def history(path: Path, **run) -> Path:
    base = {"name": "a", "start": "2024-08-24T06:00:00Z", "batch": 8, "batches_per_epoch": 10,
            "epochs_planned": 3, "epochs_completed": 2, "speed": {"step_s": 0.5},
            "memory": {"total_gib": 10, "ramp": [[0, 1], [5, 2]]}, "epochs": {"val/mAP50": [0.1, 0.2]}}
    base.update(run)
    path.write_text(yaml.safe_dump({"format": "sai-history/1", "experiment": "bad", "runs": [base]}))
    return path


def active_runs(client, exp="bad"):
    e = client.get_experiment_by_name(exp)
    return [] if e is None else client.search_runs([e.experiment_id])


# --- item 12: stores that cannot be used ---------------------------------------------------------------

@pytest.fixture
def corrupt_store(tmp_path) -> str:
    db = tmp_path / "corrupt" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(b"this is not a database\n" * 200)
    return f"sqlite:///{db}"


@pytest.mark.parametrize("args", [
    ["compare-runs", "--experiment", "x"],
    ["import-history", str(HIST)],
    ["promote", "0" * 32, "--model", "det", "--dry-run"],
])
def test_corrupt_store_is_one_line(corrupt_store, args):
    line = one_error_line(cli_run(*args, "--tracking-uri", corrupt_store))
    assert "store" in line or "database" in line, line


def test_standalone_compare_runs_has_the_same_boundary(corrupt_store, tmp_path):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", "from sai_mlflow.cli.compare import main; main()", "--experiment", "x",
                        "--tracking-uri", corrupt_store], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    one_error_line(p)


@pytest.mark.parametrize("args", [["compare-runs", "--experiment", "x"], ["import-history", str(HIST)]])
def test_unwritable_store_is_one_line(tmp_path, args):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_error_line(cli_run(*args, "--tracking-uri", f"sqlite:///{blocker}/mlruns/mlflow.db"))


def test_plot_to_a_missing_folder_is_refused_before_any_work(tmp_path):
    db = tmp_path / "never" / "mlflow.db"
    line = one_error_line(cli_run("compare-runs", "--experiment", "x", "--plot", str(tmp_path / "no" / "p.png"),
                                  "--tracking-uri", f"sqlite:///{db}"))
    assert "--plot" in line and "does not exist" in line, line
    assert not db.exists()  # refused before the store was even opened


# --- item 12 and 16: malformed import files ------------------------------------------------------------

BAD_HISTORIES = {
    "nan step time": {"speed": {"step_s": [0.5, float("nan"), 0.4]}},
    "inf step time": {"speed": {"step_s": float("inf")}},
    "nan epoch": {"epochs": {"val/mAP50": [float("nan"), 0.2]}},
    "inf epoch": {"epochs": {"val/mAP50": [0.1, float("inf")]}},
    "empty memory ramp": {"memory": {"ramp": []}},
    "param collision": {"params": {"a(b)": 1, "a_b": 2}},
    "tag collision": {"tags": {"x(y)": 1, "x_y": 2}},
    "start in 1900": {"start": "1900-01-01T00:00:00Z"},
    "negative step time": {"speed": {"step_s": [0.5, -1.0]}},
    "interval_s 1e-6": {"memory": {"ramp": [[0, 1]], "interval_s": 1e-6}},
    "batches 3e8": {"speed": {"step_s": 0.5, "batches": 300_000_000}},
    "1e9 implied batches": {"batches_per_epoch": 1_000_000, "epochs_completed": 1000, "epochs_planned": 1000,
                            "epochs": {}},
}


def test_malformed_histories_are_refused_whole_and_leave_no_run(client, tmp_path):
    for case, run in BAD_HISTORIES.items():
        f = history(tmp_path / f"{case.replace(' ', '_')}.yaml", **run)
        t = time.monotonic()
        line = one_error_line(cli_run("import-history", str(f), "--tracking-uri", client.tracking_uri))
        took = time.monotonic() - t
        assert str(f) in line, (case, line)
        assert took < 30, f"{case}: {took:.0f} s"  # refused, not hanging (before: forever / 5 GB)
        assert active_runs(client) == [], case


def test_non_utf8_history_file(client, tmp_path):
    f = tmp_path / "h.yaml"
    f.write_bytes(b"format: sai-history/1\nruns:\n - name: \xff\xfe\n")
    one_error_line(cli_run("import-history", str(f), "--tracking-uri", client.tracking_uri))


@pytest.mark.parametrize("which", ["args.yaml", "results.csv"])
def test_non_utf8_ultralytics_files(client, tmp_path, which):
    from test_import_ultralytics import make_run_dir

    d = make_run_dir(tmp_path, "data.yaml")
    (d / which).write_bytes((d / which).read_bytes() + b"\nname: caf\xe9\xff\n")
    line = one_error_line(cli_run("import-ultralytics", str(d), "--tracking-uri", client.tracking_uri))
    assert which in line and "UTF-8" in line, line
    assert active_runs(client, "sai-mlflow") == []


def test_ultralytics_args_collision(client, tmp_path):
    from test_import_ultralytics import make_run_dir

    d = make_run_dir(tmp_path, "data.yaml")
    args = yaml.safe_load((d / "args.yaml").read_text())
    args.update({"a(b)": 1, "a_b": 2})
    (d / "args.yaml").write_text(yaml.safe_dump(args))
    line = one_error_line(cli_run("import-ultralytics", str(d), "--tracking-uri", client.tracking_uri))
    assert "a(b)" in line and "a_b" in line, line
    assert active_runs(client, "sai-mlflow") == []


# --- item 8: a failing import leaves no run holding the fingerprint -----------------------------------

def test_a_run_whose_writing_fails_is_deleted_and_import_again_works(client, tmp_path):
    from sai_mlflow.importers import atomic_run, find_imported
    from sai_mlflow.importers.history_file import import_history_file
    from sai_mlflow.tracking.store import get_or_create_experiment

    exp_id = get_or_create_experiment(client, "bad")
    with pytest.raises(RuntimeError), atomic_run(client, exp_id, "a", 0, "fp-1") as rid:
        client.log_param(rid, "batch", "8")
        raise RuntimeError("the store failed mid-import")
    assert client.get_run(rid).info.lifecycle_stage == "deleted"
    assert find_imported(client, exp_id, "fp-1") is None and active_runs(client) == []
    # the case: a start before 1970 made the store refuse the metrics after the run existed
    f = history(tmp_path / "h.yaml", start="1900-01-01T00:00:00Z")
    one_error_line(cli_run("import-history", str(f), "--tracking-uri", client.tracking_uri))
    assert active_runs(client) == []
    f = history(tmp_path / "h.yaml")  # fixed: imported, not "already imported"
    assert [r.action for r in import_history_file(client, f)] == ["imported"]
    (run,) = active_runs(client)
    assert run.info.status == "FINISHED" and run.data.metrics


# --- item 15: a bad model path starts nothing ----------------------------------------------------------

@pytest.mark.parametrize("model", ["/nope/x.pt", "no-such-model.yaml"])
def test_missing_model_is_refused_before_a_run_or_runs_dir(synthetic_data, tmp_path, model):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    p = cli_in_process(*smoke_args(tmp_path, synthetic_data, "--set", f"model={model}"), "--tracking-uri", uri,
                       cwd=tmp_path)
    line = one_error_line(p)
    assert model in line, line
    assert not (tmp_path / "runs").exists()
    if (tmp_path / "mlruns" / "mlflow.db").exists():
        from sai_mlflow.tracking.store import make_client

        c = make_client(uri)
        assert c.search_runs([e.experiment_id for e in c.search_experiments()]) == []
