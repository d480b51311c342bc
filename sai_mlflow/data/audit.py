"""Dataset audit and digest: what a training set holds, and a fingerprint that changes when it does.

The digest covers the file list, each image's size and every label file's bytes, so two runs with
the same digest trained on the same data (the comparator's `not_comparable` rule relies on it).

The scan follows Ultralytics' own rules (`ultralytics.data.utils.verify_image_label`) so that what
the audit calls corrupt is what the trainer would drop or rewrite:

* an image is corrupt when PIL cannot identify or verify it, when a side is under 10 px, or when a
  JPEG lacks its end-of-image marker (Ultralytics re-saves such a file *in place*);
* a label row is bad when it is not numbers, has fewer than 4 coordinates, a class outside the
  names, a non-integer class, or coordinates outside 0..1 (Ultralytics' 1 % tolerance applies);
  Ultralytics drops the whole image for one bad row;
* a missing or empty label file makes the image a background.

JPEG headers are checked by walking their markers directly (the same test PIL's open + verify
makes for a JPEG, ~4x cheaper); other formats go through PIL. Large sets are scanned in chunks by
worker processes (the work is Python-bound, so threads would only queue on the GIL); results are
folded in file order, so the digest does not depend on scheduling.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError

from .layout import DatasetLayout, label_path_for, resolve

# Ultralytics' tolerance for normalised coordinates (points.max() <= 1.01, min >= -0.01).
COORD_TOLERANCE = 0.01
MIN_SIDE_PX = 10


@dataclass
class SplitAudit:
    images: int = 0
    labels: int = 0  # images with a non-empty label file
    instances: int = 0  # label rows (objects)
    backgrounds: int = 0  # images with no label file or an empty one
    missing_labels: int = 0
    bytes: int = 0
    corrupt: list[str] = field(default_factory=list)
    corrupt_reasons: dict[str, str] = field(default_factory=dict)  # path -> why
    bad_labels: list[str] = field(default_factory=list)  # "file:line: why"
    class_out_of_range: int = 0  # label rows whose class is outside the names
    coords_out_of_range: int = 0  # label rows with coordinates outside 0..1
    # (width, height) of every image whose header was read; feeds the cache=ram estimate
    image_sizes: list[tuple[int, int]] = field(default_factory=list, repr=False)


@dataclass
class DatasetAudit:
    data_yaml: str
    digest: str
    splits: dict[str, SplitAudit]
    names: dict[int, str]
    on_tmpfs: bool
    root: str = ""
    seconds: float = 0.0

    @property
    def train_images(self) -> int:
        return self.splits["train"].images if "train" in self.splits else 0

    @property
    def val_images(self) -> int:
        return self.splits["val"].images if "val" in self.splits else 0

    @property
    def corrupt(self) -> list[str]:
        return [c for s in self.splits.values() for c in s.corrupt]

    @property
    def bad_labels(self) -> list[str]:
        return [b for s in self.splits.values() for b in s.bad_labels]

    @property
    def backgrounds(self) -> int:
        return sum(s.backgrounds for s in self.splits.values())

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.splits.values())

    def as_params(self) -> dict[str, str]:
        """The contract's data.* params."""
        return {
            "data.train_images": str(self.train_images),
            "data.val_images": str(self.val_images),
            "data.backgrounds": str(self.backgrounds),
            "data.corrupt": str(len(self.corrupt)),
            "data.bytes": str(self.total_bytes),
        }


def _check_label(text: str, n_classes: int, where: Path) -> tuple[list[str], int, int, int]:
    """Problems of one label file: (messages, rows, class-out-of-range rows, coords-out-of-range rows)."""
    problems: list[str] = []
    rows = bad_cls = bad_xy = 0
    for i, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        rows += 1
        try:
            cls_f = float(parts[0])
            coords = [float(v) for v in parts[1:]]
        except ValueError:
            problems.append(f"{where}:{i}: not numbers")
            continue
        if len(coords) < 4:
            problems.append(f"{where}:{i}: {len(coords)} coordinates, need 4")
        elif not math.isfinite(cls_f) or cls_f != int(cls_f):
            problems.append(f"{where}:{i}: class {parts[0]} is not an integer")
        elif not 0 <= int(cls_f) < n_classes:
            bad_cls += 1
            problems.append(f"{where}:{i}: class {int(cls_f)} outside 0..{n_classes - 1}")
        elif any(not (-COORD_TOLERANCE <= c <= 1.0 + COORD_TOLERANCE) for c in coords):
            bad_xy += 1
            problems.append(f"{where}:{i}: coordinates outside 0..1")
    return problems, rows, bad_cls, bad_xy


_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_HEAD = 1 << 16


def _jpeg_fast(path: str | Path) -> tuple[str | None, tuple[int, int]] | None:
    """A JPEG's (problem, size) from its markers alone; None when it is not a plain JPEG or the walk is unsure.

    PIL's JPEG `verify()` checks nothing beyond the header walk its `open` already did, so reading
    the markers up to the frame header, plus the last two bytes, is the same test at a fraction
    of the cost. Anything unusual falls back to PIL for its exact diagnosis.
    """
    with open(path, "rb") as f:
        head = f.read(_HEAD)
        if head[:3] != b"\xff\xd8\xff":
            return None
        if len(head) < _HEAD:
            tail = head[-2:]
        else:
            f.seek(-2, os.SEEK_END)
            tail = f.read(2)
    pos, n = 2, len(head)
    while pos + 4 <= n:
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        seg = (head[pos + 2] << 8) | head[pos + 3]
        if marker in _SOF:
            if pos + 9 > n:
                return None
            h = (head[pos + 5] << 8) | head[pos + 6]
            w = (head[pos + 7] << 8) | head[pos + 8]
            if w == 0 or h == 0:
                return None
            if w < MIN_SIDE_PX or h < MIN_SIDE_PX:
                return f"image size {w}x{h} under {MIN_SIDE_PX} px", (w, h)
            if tail != b"\xff\xd9":
                return "truncated JPEG (no end-of-image marker; Ultralytics re-saves it in place)", (w, h)
            return None, (w, h)
        pos += 2 + seg
    return None


def image_problem(path: str | Path) -> tuple[str | None, tuple[int, int] | None]:
    """Why Ultralytics would reject or rewrite this image (None when fine), and its (width, height)."""
    try:
        fast = _jpeg_fast(path)
        if fast is not None and fast[0] is None:
            return fast
        with open(path, "rb") as f:
            with Image.open(f) as im:
                fmt = (im.format or "").lower()
                size = im.size
                im.verify()
            if size[0] < MIN_SIDE_PX or size[1] < MIN_SIDE_PX:
                return f"image size {size[0]}x{size[1]} under {MIN_SIDE_PX} px", size
            if fmt in ("jpeg", "jpg", "mpo"):
                f.seek(-2, os.SEEK_END)
                if f.read(2) != b"\xff\xd9":
                    return "truncated JPEG (no end-of-image marker; Ultralytics re-saves it in place)", size
            return None, size
    except FileNotFoundError:
        return "missing", None
    except UnidentifiedImageError:
        return "unreadable: not an image PIL can identify", None
    except Exception as e:  # PIL raises many types for bad data
        return f"unreadable: {type(e).__name__}: {e}"[:200], None


class ImageScan(NamedTuple):
    """Everything the audit learns about one image (picklable: worker subprocesses send these back)."""

    rel: str  # path under the dataset root, as hashed into the digest
    size: int  # bytes; -1 when the file is missing
    problem: str | None  # why Ultralytics would drop the image
    wh: tuple[int, int] | None  # width, height from the header
    label_bytes: bytes | None  # None: no label file (a background)
    label: tuple[list[str], int, int, int] | None  # (problems, rows, class out of range, coords out of range)


def _scan_one(img: Path, root_prefix: str, root: Path, n_classes: int, check_images: bool) -> ImageScan:
    """Everything the audit needs about one image; no shared state, safe in any thread or process."""
    s = str(img)
    try:
        size = os.stat(s).st_size
    except OSError:
        size = -1
    rel = s[len(root_prefix):] if s.startswith(root_prefix) else os.path.relpath(s, root)
    problem, wh = (None, None)
    if size < 0:
        problem = "missing"
    elif size == 0:
        problem = "empty file"
    elif check_images:
        problem, wh = image_problem(s)
    lbl = label_path_for(s)
    try:
        with open(lbl, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return ImageScan(rel, size, problem, wh, None, None)
    except OSError:
        return ImageScan(rel, size, problem, wh, b"", ([f"{lbl}: unreadable"], 0, 0, 0))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return ImageScan(rel, size, problem, wh, raw, ([f"{lbl}: not UTF-8 text"], 0, 0, 0))
    return ImageScan(rel, size, problem, wh, raw, _check_label(text, n_classes, lbl))


def _scan_chunk(chunk: list, root: Path, n_classes: int, check_images: bool) -> list:
    prefix = str(root).rstrip(os.sep) + os.sep
    return [_scan_one(img, prefix, root, n_classes, check_images) for img in chunk]


def is_on_tmpfs(path: str | Path) -> bool:
    """True when `path` lives on a tmpfs (e.g. /dev/shm), by the mount table."""
    return mount_of(path)[1] in ("tmpfs", "ramfs")


def mount_of(path: str | Path) -> tuple[str, str]:
    """(mount point, filesystem type) holding `path` (its nearest existing parent), by /proc/mounts."""
    try:
        target = os.path.realpath(path)
        best, best_fs = "", ""
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, best_fs = mnt, parts[2]
        return best, best_fs
    except OSError:
        return "", ""


def _scan_in_subprocess(chunks: list[list[str]], root: Path, n_classes: int, check_images: bool) -> list[list]:
    """Scan `chunks` in a fresh interpreter (`python -m sai_mlflow.data.audit`).

    A subprocess rather than multiprocessing: spawn/forkserver re-import the caller's __main__ (a
    training script without a main guard would start again), and fork copies a process that may
    hold CUDA, MLflow or logging threads mid-lock.
    """
    pkg_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-m", "sai_mlflow.data.audit"],
        input=pickle.dumps((str(root), n_classes, check_images, chunks)),
        capture_output=True,
        env=env,
        check=True,
    )
    return pickle.loads(proc.stdout)


def _run_jobs(chunks: list[list], root: Path, n_classes: int, check_images: bool, n_workers: int) -> list[list]:
    """Scan every chunk, in order; shares go to worker subprocesses, share 0 to this process."""
    n_workers = max(1, min(n_workers, len(chunks)))
    if n_workers == 1:
        return [_scan_chunk(c, root, n_classes, check_images) for c in chunks]
    per = -(-len(chunks) // n_workers)
    shares = [chunks[i : i + per] for i in range(0, len(chunks), per)]
    out: list[list | None] = [None] * len(shares)

    def work(k: int) -> None:
        try:
            out[k] = _scan_in_subprocess([[str(p) for p in c] for c in shares[k]], root, n_classes, check_images)
        except Exception:  # no interpreter to spare, killed, ...: the share is scanned here instead
            out[k] = None

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(1, len(shares))]
    for t in threads:
        t.start()
    out[0] = [_scan_chunk(c, root, n_classes, check_images) for c in shares[0]]
    for t in threads:
        t.join()
    results: list[list] = []
    for k, share in enumerate(shares):
        got = out[k]
        if got is None or len(got) != len(share):
            got = [_scan_chunk(c, root, n_classes, check_images) for c in share]
        results.extend(got)
    return results


def _worker_main() -> None:
    root, n_classes, check_images, chunks = pickle.load(sys.stdin.buffer)
    root = Path(root)
    res = [_scan_chunk(c, root, n_classes, check_images) for c in chunks]
    sys.stdout.buffer.write(pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()


def _default_workers(n_images: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 16, n_images // PARALLEL_MIN_IMAGES))


# Below this many images per worker, starting worker processes costs more than it saves.
PARALLEL_MIN_IMAGES = 3000


def _tally(sa: SplitAudit, digest, img: str, scan: ImageScan) -> None:
    """Add one image's scan to its split's counts and to the dataset digest (file list, sizes, label bytes)."""
    sa.bytes += max(scan.size, 0)
    digest.update(f"{scan.rel}\t{scan.size}\n".encode())
    if scan.problem:
        sa.corrupt.append(img)
        sa.corrupt_reasons[img] = scan.problem
    if scan.wh:
        sa.image_sizes.append(scan.wh)
    if scan.label_bytes is None:
        sa.missing_labels += 1
        sa.backgrounds += 1
        return
    digest.update(scan.label_bytes)
    problems, rows, bad_cls, bad_xy = scan.label
    sa.bad_labels.extend(problems)
    sa.class_out_of_range += bad_cls
    sa.coords_out_of_range += bad_xy
    sa.instances += rows
    if rows:
        sa.labels += 1
    elif not problems:
        sa.backgrounds += 1


def audit(data_yaml: str | Path, check_images: bool = True, workers: int | None = None) -> DatasetAudit:
    """Count, check and fingerprint a dataset; `check_images` reads headers to find corrupt files.

    `workers`: processes for the scan (None: one per core, when the set is large enough to pay
    for starting them; 1: scan in this process). Raises `DatasetError` (a ValueError) when the
    data.yaml itself cannot be used.
    """
    t0 = time.perf_counter()
    layout: DatasetLayout = resolve(data_yaml)
    n_classes = len(layout.names)
    total = sum(len(v) for v in layout.splits.values())
    n_workers = _default_workers(total) if workers is None else max(1, int(workers))
    chunk_size = max(64, min(2048, total // (n_workers * 8) or 64))
    jobs = [
        (split, images[i : i + chunk_size])
        for split, images in layout.splits.items()
        for i in range(0, len(images), chunk_size)
    ]
    results = _run_jobs([chunk for _, chunk in jobs], layout.root, n_classes, check_images, n_workers)
    h = hashlib.sha256()
    splits: dict[str, SplitAudit] = {}
    by_split: dict[str, list] = {split: [] for split in layout.splits}
    for (split, chunk), result in zip(jobs, results):
        by_split[split].append((chunk, result))
    for split, parts in by_split.items():  # in the layout's order: the digest depends on it
        sa = splits[split] = SplitAudit(images=len(layout.splits[split]))
        h.update(f"[{split}]\n".encode())
        for chunk, result in parts:
            for img, scan in zip(chunk, result):
                _tally(sa, h, str(img), scan)
    train = layout.splits.get("train") or []
    return DatasetAudit(
        data_yaml=str(layout.yaml_path),
        digest=h.hexdigest()[:16],
        splits=splits,
        names=layout.names,
        on_tmpfs=is_on_tmpfs(train[0] if train else layout.root),
        root=str(layout.root),
        seconds=time.perf_counter() - t0,
    )


if __name__ == "__main__":  # worker subprocess of `_run_jobs`
    from sai_mlflow.data.audit import _worker_main as main  # the importable module: its ImageScan unpickles

    main()
