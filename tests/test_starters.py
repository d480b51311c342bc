"""Packaged starters: configs, the decision policy and the seed's history ship inside the package.

A name that is not a file in the working folder resolves to the packaged starter; `sai-mlflow init` copies
them out for editing; and a wheel built from this tree, installed into a fresh virtualenv, trains with
`--config cpu_smoke.yaml` and runs compare-runs from an empty folder (the heavy dependencies come from the
project's environment through a .pth file; the wheel itself is installed with --no-deps).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import ROOT, cli_in_process

from sai_mlflow.app import starters
from sai_mlflow.compare.policy import DEFAULT_POLICY_FILE


def test_one_copy_of_each_starter_and_the_repo_path_is_the_package_folder():
    assert (ROOT / "configs").resolve() == starters.PACKAGED
    names = {str(p) for p in starters.files()}
    assert {"cpu_smoke.yaml", "decision.yaml", "h200_shm_stage1.yaml", "history/seed_2024-08.yaml"} <= names
    assert DEFAULT_POLICY_FILE == starters.DEFAULT_POLICY and DEFAULT_POLICY_FILE.is_file()


def test_resolve_prefers_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    packaged = str(starters.PACKAGED / "cpu_smoke.yaml")
    assert starters.resolve("cpu_smoke.yaml") == packaged
    assert starters.resolve("configs/cpu_smoke.yaml") == packaged
    assert starters.resolve("seed_2024-08.yaml") == str(starters.PACKAGED / "history" / "seed_2024-08.yaml")
    assert starters.resolve("nope.yaml") == "nope.yaml"  # the caller's error names what was typed
    (tmp_path / "cpu_smoke.yaml").write_text("experiment: mine\n")
    assert starters.resolve("cpu_smoke.yaml") == "cpu_smoke.yaml"


def test_init_copies_for_editing_and_keeps_edits(tmp_path):
    first = cli_in_process("init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    copied = tmp_path / "configs" / "cpu_smoke.yaml"
    assert copied.read_text() == (starters.PACKAGED / "cpu_smoke.yaml").read_text()
    assert (tmp_path / "configs" / "history" / "seed_2024-08.yaml").is_file()
    copied.write_text("experiment: edited\n")
    again = cli_in_process("init", cwd=tmp_path)
    assert again.returncode == 0 and "kept" in again.stdout and copied.read_text() == "experiment: edited\n"
    (tmp_path / "afile").write_text("x")
    bad = cli_in_process("init", "afile", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("Error:") == 1


def test_import_history_by_name_from_an_empty_folder(tmp_path):
    proc = cli_in_process("import-history", "seed_2024-08.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("imported") == 3 and (tmp_path / "mlruns").is_dir()


def _run(cmd, cwd, env, timeout=900):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


@pytest.mark.slow
def test_wheel_in_a_fresh_virtualenv_trains_and_compares_from_an_empty_folder(tmp_path):
    src = tmp_path / "tree"  # what the build needs, copied: building in place would leave build/ in the repo
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "sai_mlflow", src / "sai_mlflow", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(tmp_path / "ultralytics"), MPLBACKEND="Agg")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w",
          str(tmp_path / "dist")], tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("sai_mlflow-*.whl")

    venv = tmp_path / "venv"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                     env).stdout.strip())
    (site / "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # mlflow, ultralytics, torch
    _run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], tmp_path, env)

    work = tmp_path / "empty"
    work.mkdir()
    where = _run([str(py), "-c", "import sai_mlflow; print(sai_mlflow.__file__)"], work, env).stdout.strip()
    assert where.startswith(str(site)), where  # the wheel, not this checkout
    sai, compare = str(venv / "bin" / "sai-mlflow"), str(venv / "bin" / "compare-runs")
    _run([sai, "make-synthetic", "--train", "16", "--val", "8"], work, env)
    _run([sai, "train", "--config", "cpu_smoke.yaml", "--set", "epochs=1", "--set", "imgsz=64"], work, env)
    judged = _run([compare, "--experiment", "sai-smoke"], work, env)
    assert "Recommended" in judged.stdout
    imported = _run([sai, "import-history", "seed_2024-08.yaml"], work, env)
    assert imported.stdout.count("imported") == 3
    assert sorted(p.name for p in work.iterdir()) == ["data", "mlruns", "runs"]
