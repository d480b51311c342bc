"""Dataset audit and digest: what a training set holds, and a fingerprint that changes when it does.

The digest covers the file list, each image's size and every label file's bytes, so two runs with
the same digest trained on the same data (the comparator's `not_comparable` rule relies on it).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .layout import DatasetLayout, label_path_for, resolve


@dataclass
class SplitAudit:
    images: int = 0
    backgrounds: int = 0  # images with no label file or an empty one
    missing_labels: int = 0
    bytes: int = 0
    corrupt: list[str] = field(default_factory=list)
    bad_labels: list[str] = field(default_factory=list)  # "file:line: why"


@dataclass
class DatasetAudit:
    data_yaml: str
    digest: str
    splits: dict[str, SplitAudit]
    names: dict[int, str]
    on_tmpfs: bool

    @property
    def train_images(self) -> int:
        return self.splits["train"].images

    @property
    def val_images(self) -> int:
        return self.splits["val"].images

    @property
    def corrupt(self) -> list[str]:
        return [c for s in self.splits.values() for c in s.corrupt]

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.splits.values())

    def as_params(self) -> dict[str, str]:
        """The contract's data.* params."""
        return {
            "data.train_images": str(self.train_images),
            "data.val_images": str(self.val_images),
            "data.backgrounds": str(sum(s.backgrounds for s in self.splits.values())),
            "data.corrupt": str(len(self.corrupt)),
            "data.bytes": str(self.total_bytes),
        }


def _check_label(text: str, n_classes: int, where: Path) -> list[str]:
    problems = []
    for i, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = int(float(parts[0]))
            coords = [float(v) for v in parts[1:]]
        except ValueError:
            problems.append(f"{where}:{i}: not numbers")
            continue
        if len(coords) < 4:
            problems.append(f"{where}:{i}: {len(coords)} coordinates, need 4")
        elif not 0 <= cls < n_classes:
            problems.append(f"{where}:{i}: class {cls} outside 0..{n_classes - 1}")
        elif any(not 0.0 <= c <= 1.0 for c in coords):
            problems.append(f"{where}:{i}: coordinates outside 0..1")
    return problems


def _image_ok(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:
        return False


def is_on_tmpfs(path: str | Path) -> bool:
    """True when `path` lives on a tmpfs (e.g. /dev/shm), by the mount table."""
    try:
        target = os.path.realpath(path)
        best, best_fs = "", ""
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, best_fs = mnt, parts[2]
        return best_fs in ("tmpfs", "ramfs")
    except OSError:
        return False


def audit(data_yaml: str | Path, check_images: bool = True, workers: int | None = None) -> DatasetAudit:
    """Count, check and fingerprint a dataset; `check_images` decodes headers to find corrupt files."""
    layout: DatasetLayout = resolve(data_yaml)
    n_classes = len(layout.names)
    h = hashlib.sha256()
    splits: dict[str, SplitAudit] = {}
    to_verify: list[tuple[str, Path]] = []
    for split, images in layout.splits.items():
        sa = SplitAudit(images=len(images))
        h.update(f"[{split}]\n".encode())
        for img in images:
            try:
                size = img.stat().st_size
            except OSError:
                sa.corrupt.append(str(img))
                size = -1
            sa.bytes += max(size, 0)
            rel = os.path.relpath(img, layout.root)
            h.update(f"{rel}\t{size}\n".encode())
            if check_images and size > 0:
                to_verify.append((split, img))
            lbl = label_path_for(img)
            try:
                text = lbl.read_text()
            except FileNotFoundError:
                sa.missing_labels += 1
                sa.backgrounds += 1
                continue
            except (OSError, UnicodeDecodeError):
                sa.bad_labels.append(f"{lbl}: unreadable")
                continue
            h.update(text.encode())
            if not text.strip():
                sa.backgrounds += 1
            else:
                sa.bad_labels.extend(_check_label(text, n_classes, lbl))
        splits[split] = sa
    if to_verify:
        with ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 2) * 4)) as pool:
            for (split, img), ok in zip(to_verify, pool.map(lambda t: _image_ok(t[1]), to_verify, chunksize=64)):
                if not ok:
                    splits[split].corrupt.append(str(img))
    return DatasetAudit(
        data_yaml=str(layout.yaml_path),
        digest=h.hexdigest()[:16],
        splits=splits,
        names=layout.names,
        on_tmpfs=is_on_tmpfs(layout.splits["train"][0] if layout.splits.get("train") else layout.root),
    )
