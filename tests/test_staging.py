"""Staging into a real tmpfs: capacity first, verified copy, atomic rename, idempotent, interruptions leave nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sai_mlflow.data.audit import audit, is_on_tmpfs
from sai_mlflow.data.staging import MANIFEST, StagingCapacityError, StagingError, capacity_problem, stage
from sai_mlflow.data.synthetic import SyntheticSpec, generate

HAS_SHM = os.path.isdir("/dev/shm") and is_on_tmpfs("/dev/shm") and os.access("/dev/shm", os.W_OK)
needs_shm = pytest.mark.skipif(not HAS_SHM, reason="no writable tmpfs at /dev/shm")


@pytest.fixture
def shm_dir():
    """A fresh folder on the real /dev/shm tmpfs, removed afterwards (with any hidden work folders)."""
    if not HAS_SHM:
        pytest.skip("no writable tmpfs at /dev/shm")
    base = Path("/dev/shm") / f"sai-test-{os.getpid()}-{time.monotonic_ns()}"
    base.mkdir()
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def data(tmp_path) -> Path:
    return generate(tmp_path / "src", SyntheticSpec(train=40, val=10, width=64, height=48))


def _hidden(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


@needs_shm
def test_stage_copies_verifies_and_points_yaml_at_copy(data, shm_dir):
    dest = shm_dir / "fasdd"
    r = stage(data, dest, progress=False)
    assert r.copied_files == r.files == 2 * (40 + 10) and r.on_tmpfs  # every image and its label file
    doc = yaml.safe_load((dest / "data.yaml").read_text())
    assert doc["path"] == str(dest) and doc["train"] == "images/train" and doc["names"] == {0: "fire", 1: "smoke"}
    a_src, a_dst = audit(data), audit(dest / "data.yaml")
    assert a_dst.digest == a_src.digest and a_dst.on_tmpfs and not a_dst.corrupt
    assert (dest / MANIFEST).is_file() and _hidden(shm_dir) == []


@needs_shm
def test_second_run_copies_nothing_and_change_copies_only_the_change(data, shm_dir):
    dest = shm_dir / "ds"
    stage(data, dest, progress=False)
    before = {p: p.stat().st_ino for p in dest.rglob("*.jpg")}
    r2 = stage(data, dest, progress=False)
    assert r2.up_to_date and r2.copied_files == 0 and r2.copied_bytes == 0
    assert {p: p.stat().st_ino for p in dest.rglob("*.jpg")} == before  # not even rewritten
    lbl = data.parent / "labels" / "train" / "train_00000.txt"
    lbl.write_text("0 0.5 0.5 0.25 0.25\n")
    r3 = stage(data, dest, progress=False)
    assert r3.copied_files == 1 and r3.reused_files == r3.files - 1
    assert (dest / "labels" / "train" / "train_00000.txt").read_text() == "0 0.5 0.5 0.25 0.25\n"
    assert audit(dest / "data.yaml").digest == audit(data).digest
    assert _hidden(shm_dir) == []


@needs_shm
def test_interruption_mid_copy_leaves_no_dataset(data, shm_dir):
    dest = shm_dir / "ds"
    calls = []

    def boom(rel):
        calls.append(rel)
        if len(calls) == 20:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-copy

    with pytest.raises(KeyboardInterrupt):
        stage(data, dest, progress=False, _on_file=boom)
    assert not dest.exists() and _hidden(shm_dir) == []
    r = stage(data, dest, progress=False)  # the next run completes it
    assert r.copied_files == r.files and stage(data, dest, progress=False).up_to_date


@needs_shm
def test_interruption_of_a_restage_keeps_the_previous_stage(data, shm_dir):
    dest = shm_dir / "ds"
    stage(data, dest, progress=False)
    (data.parent / "labels" / "val" / "val_00000.txt").write_text("1 0.5 0.5 0.5 0.5\n")

    def boom(rel):
        raise OSError(28, "No space left on device")

    with pytest.raises(StagingError, match="left as it was"):
        stage(data, dest, progress=False, _on_file=boom)
    assert audit(dest / "data.yaml").corrupt == [] and (dest / MANIFEST).is_file() and _hidden(shm_dir) == []


@needs_shm
def test_killed_subprocess_leaves_no_dataset_and_rerun_completes(tmp_path, shm_dir):
    data = generate(tmp_path / "big", SyntheticSpec(train=600, val=50, width=96, height=64))
    dest = shm_dir / "ds"
    code = (
        "import sys, time\n"
        "from sai_mlflow.data.staging import stage\n"
        "def slow(rel):\n"
        "    print('copied', flush=True); time.sleep(0.01)\n"
        "stage(sys.argv[1], sys.argv[2], progress=False, _on_file=slow)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(data), str(dest)], stdout=subprocess.PIPE, text=True)
    for _ in range(30):  # let it copy a few dozen files, then SIGKILL it
        proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not dest.exists()
    assert any(".staging-" in n for n in _hidden(shm_dir))  # the killed work folder, hidden
    r = stage(data, dest, progress=False)
    assert r.copied_files == r.files and _hidden(shm_dir) == []  # stale work folder cleaned
    assert stage(data, dest, progress=False).up_to_date
    assert audit(dest / "data.yaml").digest == audit(data).digest


def test_capacity_checked_before_anything_is_written(data, tmp_path, monkeypatch):
    import sai_mlflow.data.staging as S

    monkeypatch.setattr(S, "fs_free_bytes", lambda p: 1000)
    dest = tmp_path / "dest"
    with pytest.raises(StagingCapacityError, match="only 0.00 GiB free"):
        stage(data, dest, progress=False)
    assert not dest.exists() and _hidden(tmp_path) == []


def test_capacity_problem_figures():
    g = 2**30
    assert capacity_problem(10 * g, "/x", free_bytes=20 * g, on_tmpfs=False) is None
    assert "free" in capacity_problem(30 * g, "/x", free_bytes=20 * g, on_tmpfs=False)
    # tmpfs: pages are RAM; the seed host (258 GB RAM) staging 34 GB fits, 240 GB does not
    assert capacity_problem(34 * g, "/x", free_bytes=125 * g, on_tmpfs=True, ram_available=240 * g,
                            ram_total=258 * g) is None
    msg = capacity_problem(100 * g, "/x", free_bytes=125 * g, on_tmpfs=True, ram_available=110 * g, ram_total=258 * g)
    assert "leave the host" in msg and "25.80 GiB" in msg


def test_dry_run_writes_nothing(data, tmp_path):
    dest = tmp_path / "dest"
    r = stage(data, dest, dry_run=True, progress=False)
    assert r.dry_run and r.copied_files == r.files > 0 and not dest.exists() and _hidden(tmp_path) == []


def test_refuses_foreign_or_overlapping_dest(data, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(StagingError, match="not a staged dataset"):
        stage(data, foreign, progress=False)
    assert (foreign / "keep.txt").read_text() == "mine"
    with pytest.raises(StagingError, match="overlaps"):
        stage(data, data.parent / "images" / "staged", progress=False)
    with pytest.raises(StagingError, match="overlaps"):
        stage(data, data.parent.parent, progress=False)
    with pytest.raises(StagingError, match="does not exist"):
        stage(tmp_path / "nope.yaml", tmp_path / "x", progress=False)


def test_txt_split_lists_are_rewritten(tmp_path):
    data = generate(tmp_path / "src", SyntheticSpec(train=6, val=2, width=32, height=32))
    root = data.parent
    (root / "train.txt").write_text("".join(f"./images/train/train_{i:05d}.jpg\n" for i in range(4)))
    data.write_text(f"path: {root}\ntrain: train.txt\nval: images/val\nnames: [fire, smoke]\n")
    dest = tmp_path / "dest"
    stage(data, dest, progress=False)
    doc = yaml.safe_load((dest / "data.yaml").read_text())
    assert doc["train"] == "train.txt" and doc["val"] == "images/val"
    a = audit(dest / "data.yaml")
    assert a.train_images == 4 and a.corrupt == []


def test_cli_stage_shm(data, tmp_path):
    from click.testing import CliRunner

    from sai_mlflow.cli import cli

    dest = tmp_path / "dest"
    r = CliRunner().invoke(cli, ["stage-shm", "--data", str(data), "--dest", str(dest), "--dry-run"])
    assert r.exit_code == 0 and "dry run" in r.output and not dest.exists()
    r = CliRunner().invoke(cli, ["stage-shm", "--data", str(data), "--dest", str(dest), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "verified" in r.output and str(dest / "data.yaml") in r.output
    r = CliRunner().invoke(cli, ["stage-shm", "--data", str(data), "--dest", str(dest), "--format", "json"])
    assert r.exit_code == 0 and '"up_to_date": true' in r.output
    r = CliRunner().invoke(cli, ["stage-shm", "--data", str(tmp_path / "nope.yaml"), "--dest", str(dest)])
    assert r.exit_code == 2 and r.output.count("Error:") == 1, r.output
    assert f"--data {tmp_path / 'nope.yaml'}: no such file" in r.output  # names the flag, the file and the fix
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x").write_text("x")
    r = CliRunner().invoke(cli, ["stage-shm", "--data", str(data), "--dest", str(tmp_path / "foreign")])
    assert r.exit_code == 1 and "not a staged dataset" in r.output
