"""Dataset audit on real files: counts, Ultralytics' corrupt rules, bad labels, digest, parallel scan."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from sai_mlflow.data.audit import audit, image_problem
from sai_mlflow.data.layout import DatasetError
from sai_mlflow.data.synthetic import SyntheticSpec, generate


@pytest.fixture
def data(tmp_path) -> Path:
    return generate(tmp_path / "ds", SyntheticSpec(train=24, val=8, width=64, height=48))


def _images(data: Path, split: str) -> list[Path]:
    return sorted((data.parent / "images" / split).glob("*.jpg"))


def test_counts_on_a_clean_set(data):
    a = audit(data)
    assert (a.train_images, a.val_images) == (24, 8)
    assert a.corrupt == [] and a.bad_labels == []
    tr = a.splits["train"]
    assert tr.backgrounds == 3 and tr.labels == 21 and tr.missing_labels == 0 and tr.instances >= 21
    assert len(tr.image_sizes) == 24 and tr.image_sizes[0] == (64, 48)
    assert a.as_params()["data.backgrounds"] == "4" and int(a.as_params()["data.bytes"]) == a.total_bytes > 0
    assert len(a.digest) == 16


def test_corrupt_images_follow_ultralytics_rules(data):
    imgs = _images(data, "train")
    raw = imgs[0].read_bytes()
    imgs[0].write_bytes(raw[: len(raw) // 2])  # truncated JPEG: no FFD9 end marker
    imgs[1].write_bytes(os.urandom(3000))  # random bytes named .jpg
    imgs[2].write_bytes(b"")  # empty file
    Image.new("RGB", (8, 40)).save(imgs[3], format="JPEG")  # a side under 10 px
    Image.new("RGB", (40, 40)).save(imgs[4].with_suffix(".png"))  # a fine PNG goes through PIL
    imgs[4].unlink()
    a = audit(data)
    reasons = a.splits["train"].corrupt_reasons
    assert set(a.corrupt) == {str(p) for p in imgs[:4]}
    assert "truncated" in reasons[str(imgs[0])]
    assert reasons[str(imgs[1])].startswith("unreadable")
    assert reasons[str(imgs[2])] == "empty file"
    assert "under 10 px" in reasons[str(imgs[3])]
    assert a.as_params()["data.corrupt"] == "4"


def test_fast_jpeg_walk_agrees_with_pil(data):
    for p in _images(data, "val"):
        problem, size = image_problem(p)
        with Image.open(p) as im:
            assert problem is None and size == im.size


def test_bad_labels_are_counted(data):
    lbl = data.parent / "labels" / "train"
    (lbl / "train_00000.txt").write_text("5 0.5 0.5 0.1 0.1\n")  # class outside 0..1
    (lbl / "train_00001.txt").write_text("0 1.2 0.5 0.1 0.1\n")  # x outside 0..1
    (lbl / "train_00002.txt").write_text("0 0.5 0.5\n")  # too few coordinates
    (lbl / "train_00003.txt").write_text("fire 0.5 0.5 0.1 0.1\n")  # not numbers
    (lbl / "train_00004.txt").write_text("0.5 0.5 0.5 0.1 0.1\n")  # non-integer class
    (lbl / "train_00005.txt").write_text("0 1.005 0.5 0.1 0.1\n")  # within Ultralytics' 1 % tolerance
    (lbl / "train_00006.txt").unlink()  # missing label file = background
    a = audit(data)
    tr = a.splits["train"]
    assert tr.class_out_of_range == 1 and tr.coords_out_of_range == 1
    assert len(tr.bad_labels) == 5
    assert tr.missing_labels == 1
    assert any("class 5 outside 0..1" in b for b in tr.bad_labels)


def test_digest_tracks_content_not_location(data, tmp_path):
    d1 = audit(data).digest
    copy = tmp_path / "copy"
    shutil.copytree(data.parent, copy)
    text = (copy / "data.yaml").read_text().replace(str(data.parent.resolve()), str(copy.resolve()))
    (copy / "data.yaml").write_text(text)
    assert audit(copy / "data.yaml").digest == d1  # same files elsewhere: same digest
    (copy / "labels" / "train" / "train_00000.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    assert audit(copy / "data.yaml").digest != d1


def test_parallel_scan_equals_serial(tmp_path):
    data = generate(tmp_path / "big", SyntheticSpec(train=300, val=20, width=32, height=32))
    raw = _images(data, "train")[100]
    raw.write_bytes(os.urandom(100))
    a1, a3 = audit(data, workers=1), audit(data, workers=3)
    assert a1.digest == a3.digest and a1.corrupt == a3.corrupt == [str(raw)]
    assert a1.splits["train"].image_sizes == a3.splits["train"].image_sizes


def test_missing_yaml_and_split(tmp_path, data):
    with pytest.raises(DatasetError):
        audit(tmp_path / "nope.yaml")
    bad = tmp_path / "noval.yaml"
    bad.write_text(f"path: {data.parent}\ntrain: images/train\nnames: [fire, smoke]\n")
    with pytest.raises(DatasetError, match="val"):
        audit(bad)


def _fs_type(path) -> str:
    import subprocess

    return subprocess.run(["stat", "-f", "-c", "%T", str(path)],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not os.path.isdir("/dev/shm") or _fs_type("/dev/shm") != "tmpfs", reason="no tmpfs at /dev/shm")
def test_on_tmpfs_detected(tmp_path):
    shm = Path("/dev/shm") / f"sai-test-audit-{os.getpid()}"
    try:
        data = generate(shm, SyntheticSpec(train=4, val=2, width=32, height=32))
        assert audit(data).on_tmpfs is True
        disk = generate(tmp_path / "disk", SyntheticSpec(train=4, val=2, width=32, height=32))
        assert audit(disk).on_tmpfs is (_fs_type(tmp_path) == "tmpfs")  # what coreutils' stat says, not our own rule
    finally:
        shutil.rmtree(shm, ignore_errors=True)
