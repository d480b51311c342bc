"""A probe's slice of the dataset: symlinks to the real images and labels, in the session's folder.

Links, not a list file: Ultralytics writes its labels cache beside the label folder, so a list
over the real folders would overwrite the full dataset's cache with the slice's. The images are
the real files (same bytes, same filesystem read), picked evenly across each split.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ..data.layout import label_path_for, resolve


def _evenly(files: list[Path], n: int) -> list[Path]:
    if n >= len(files):
        return list(files)
    step = len(files) / n
    return [files[int(i * step)] for i in range(n)]


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    os.symlink(os.path.abspath(src), dst)


def make_subset(data_yaml: str | Path, out: Path, n_train: int, n_val: int) -> Path:
    """Write `out`/data.yaml over `n_train` train and `n_val` val images of `data_yaml`; return its path."""
    layout = resolve(data_yaml)
    out = Path(out).resolve()
    for split, n in (("train", n_train), ("val", n_val)):
        for i, img in enumerate(_evenly(layout.splits[split], n)):
            name = f"{i:06d}_{img.name}"
            _link(img, out / "images" / split / name)
            label = Path(label_path_for(str(img)))
            if label.is_file():
                _link(label, out / "labels" / split / (Path(name).stem + ".txt"))
    doc = {"path": str(out), "train": "images/train", "val": "images/val", "names": layout.names}
    path = out / "data.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
