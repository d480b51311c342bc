"""Resolve an Ultralytics data.yaml into the image and label files it means.

Written here rather than taken from `ultralytics.data.utils.check_det_dataset`, which may try to
download a missing dataset or font; a tracker must never reach for the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

IMG_SUFFIXES = frozenset(
    {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}
)


class DatasetError(ValueError):
    """A data.yaml that cannot be used as it is; the message says what to fix."""


@dataclass
class DatasetLayout:
    yaml_path: Path
    root: Path
    names: dict[int, str]
    splits: dict[str, list[Path]] = field(default_factory=dict)  # "train"/"val"/"test" -> images

    @property
    def all_images(self) -> list[Path]:
        seen: dict[Path, None] = {}
        for files in self.splits.values():
            for f in files:
                seen.setdefault(f, None)
        return list(seen)


_SA, _SB = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"


def label_path_for(s: str) -> str:
    """Ultralytics' rule: the last `/images/` in the path becomes `/labels/`, suffix `.txt`.

    On strings, not Path objects: it runs once per image in the audit and staging scans.
    """
    if _SA in s:
        head, _, tail = s.rpartition(_SA)
        s = head + _SB + tail
    base, dot, ext = s.rpartition(".")
    if dot and os.sep not in ext:
        return base + ".txt"
    return s + ".txt"


def _collect(entry: str | Path, root: Path) -> list[Path]:
    p = Path(entry)
    if not p.is_absolute():
        p = root / p
    if p.is_dir():
        return sorted(q for q in p.rglob("*") if q.suffix.lower() in IMG_SUFFIXES and q.is_file())
    if p.is_file() and p.suffix == ".txt":
        base = p.parent
        out = []
        for line in p.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            q = Path(line)
            if not q.is_absolute():
                q = (root / q) if line.startswith("./") else (base / q)
            out.append(q)
        return out
    raise DatasetError(f"split entry {entry!r} resolves to {p}, which is neither a folder of images nor a .txt list")


def resolve(data_yaml: str | Path) -> DatasetLayout:
    """Read a data.yaml and list each split's images; raise DatasetError on what cannot work."""
    from ..yaml_file import load_mapping

    yaml_path = Path(data_yaml).expanduser()
    doc = load_mapping(yaml_path, DatasetError, "data file", expected="a mapping with train/val/names")
    root = Path(doc.get("path") or yaml_path.parent).expanduser()
    if not root.is_absolute():
        root = (yaml_path.parent / root).resolve()
    names = doc.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise DatasetError(f"data file {yaml_path} lacks 'names' (a list or mapping of class names)")
    layout = DatasetLayout(yaml_path=yaml_path, root=root, names={int(k): str(v) for k, v in names.items()})
    for split in ("train", "val", "test"):
        entry = doc.get(split)
        if entry in (None, ""):
            if split in ("train", "val"):
                raise DatasetError(f"data file {yaml_path} has no '{split}' entry")
            continue
        entries = entry if isinstance(entry, list) else [entry]
        files: list[Path] = []
        for e in entries:
            files.extend(_collect(e, root))
        layout.splits[split] = files
    return layout
