"""`sai-mlflow make-synthetic`: the README's first step writes a real, valid, deterministic dataset."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from sai_mlflow.cli import cli
from sai_mlflow.data.audit import audit


def make(out, *extra):
    return CliRunner().invoke(cli, ["make-synthetic", "--out", str(out), *extra])


def test_writes_the_requested_dataset(tmp_path):
    r = make(tmp_path / "ds", "--train", "10", "--val", "3", "--size", "80x48")
    assert r.exit_code == 0, r.output
    data = tmp_path / "ds" / "data.yaml"
    assert f"wrote 10 train + 3 val images; data file: {data}" in r.output
    doc = yaml.safe_load(data.read_text())
    assert doc["names"] in ({0: "fire", 1: "smoke"}, ["fire", "smoke"])
    a = audit(data)
    assert (a.train_images, a.val_images) == (10, 3)
    assert a.corrupt == [] and a.bad_labels == []
    tr = a.splits["train"]
    assert set(tr.image_sizes) == {(80, 48)}
    assert tr.labels + tr.backgrounds == 10 and tr.labels > 0 and tr.instances >= tr.labels


def test_the_same_seed_gives_the_same_data_another_seed_other_data(tmp_path):
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert make(tmp_path / name, "--train", "6", "--val", "2", "--size", "64x32", "--seed", seed).exit_code == 0
    digest = {name: audit(tmp_path / name / "data.yaml").digest for name in "abc"}
    assert digest["a"] == digest["b"] != digest["c"]


def test_bad_size_or_count_is_one_error_exit_2_and_nothing_written(tmp_path):
    for extra, needle in ((["--size", "80by48"], "WIDTHxHEIGHT"), (["--train", "0"], "--train")):
        r = make(tmp_path / "ds", *extra)
        assert r.exit_code == 2, r.output
        assert needle in r.output and r.output.count("Error:") == 1, r.output
        assert not (tmp_path / "ds").exists()
