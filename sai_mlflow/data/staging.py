"""Stage a dataset into a tmpfs (e.g. /dev/shm) so the loaders read from RAM: the seed's setup script, done safely.

Order of work, each step a guard against the seed's failure modes:

1. resolve the data.yaml and list every image and label file it means;
2. compare with the manifest a previous stage left in `dest`: files whose source size and mtime
   are unchanged (and whose staged copy is still there) are reused, not copied again; when
   nothing changed, nothing is written at all;
3. check capacity *before* writing: the bytes still to copy must fit the free space of `dest`'s
   filesystem and, on a tmpfs, leave the host enough RAM (tmpfs pages are RAM);
4. copy into a hidden sibling folder (`.NAME.staging-PID-…`), hashing every source file as it is
   read; re-read each copy and compare size and SHA-256; reused files are hard-linked in;
5. write `data.yaml` (pointing at the staged copy) and the manifest, then rename the folder into
   place. An interrupted copy therefore never sits at `dest`: it is a hidden folder that the next
   run removes.

Errors are `StagingError` with a message that says what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..keys import GIB
from .audit import is_on_tmpfs
from .layout import DatasetError, label_path_for, resolve

MANIFEST = ".sai-stage.json"
MANIFEST_VERSION = 1
# RAM a tmpfs stage must leave the host: the larger of these (dataloader workers, the model, the OS).
RAM_RESERVE_MIN_BYTES = 4 * 2**30
RAM_RESERVE_FRACTION = 0.10
_BUF = 1 << 20
_BIG = 16 << 20  # files up to this size are read in one call
_PARALLEL_MEAN_BYTES = 256 << 10  # copy with threads when files average more than this


class StagingError(RuntimeError):
    """Staging cannot go ahead or did not complete; the message says why and what to do."""


class StagingCapacityError(StagingError):
    """The target has no room for the dataset (free space, or the RAM a tmpfs would take)."""


@dataclass
class StageResult:
    data_yaml: Path  # the staged data.yaml (planned path on a dry run)
    dest: Path
    files: int  # files in the staged dataset
    bytes: int
    copied_files: int  # copied this time (planned, on a dry run)
    copied_bytes: int
    reused_files: int  # already staged and unchanged
    seconds: float
    dry_run: bool = False
    on_tmpfs: bool = False

    @property
    def up_to_date(self) -> bool:
        return self.copied_files == 0 and self.files == self.reused_files

    @property
    def mib_per_s(self) -> float:
        return self.copied_bytes / 2**20 / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "data_yaml": str(self.data_yaml), "dest": str(self.dest), "files": self.files, "bytes": self.bytes,
            "copied_files": self.copied_files, "copied_bytes": self.copied_bytes,
            "reused_files": self.reused_files, "seconds": round(self.seconds, 3), "dry_run": self.dry_run,
            "up_to_date": self.up_to_date, "on_tmpfs": self.on_tmpfs, "mib_per_s": round(self.mib_per_s, 1),
        }


# --- capacity (shared with preflight's shm_capacity) --------------------------------------------

def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def fs_free_bytes(path: str | Path) -> int:
    st = os.statvfs(_existing_ancestor(Path(path)))
    return st.f_bavail * st.f_frsize


def ram_reserve_bytes(total_ram: int) -> int:
    return int(max(RAM_RESERVE_MIN_BYTES, RAM_RESERVE_FRACTION * total_ram))


def capacity_problem(
    need_bytes: int, dest: str | Path, *, free_bytes: int | None = None, on_tmpfs: bool | None = None,
    ram_available: int | None = None, ram_total: int | None = None,
) -> str | None:
    """Why `need_bytes` more cannot go to `dest` (None when they fit). Figures may be passed in (tests, preflight)."""
    dest = Path(dest)
    free = fs_free_bytes(dest) if free_bytes is None else free_bytes
    if need_bytes > free:
        return (
            f"{need_bytes / GIB:.2f} GiB to copy but only {free / GIB:.2f} GiB free on "
            f"{_existing_ancestor(dest)}"
        )
    tmpfs = is_on_tmpfs(_existing_ancestor(dest)) if on_tmpfs is None else on_tmpfs
    if tmpfs:
        if ram_available is None or ram_total is None:
            import psutil

            vm = psutil.virtual_memory()
            ram_available = vm.available if ram_available is None else ram_available
            ram_total = vm.total if ram_total is None else ram_total
        reserve = ram_reserve_bytes(ram_total)
        if need_bytes > ram_available - reserve:
            return (
                f"{need_bytes / GIB:.2f} GiB into a tmpfs would leave the host "
                f"{(ram_available - need_bytes) / GIB:.2f} GiB of RAM (available {ram_available / GIB:.2f} "
                f"of {ram_total / GIB:.2f} GiB); keep at least {reserve / GIB:.2f} GiB for workers and the model"
            )
    return None


# --- planning -------------------------------------------------------------------------------

@dataclass
class _Plan:
    base: Path  # common source folder of every file
    files: dict[str, tuple[str, int, int]]  # rel -> (source path, size, mtime_ns)
    data_doc: dict  # the staged data.yaml (path filled at write time)
    split_lists: dict[str, list[str]]  # split -> rels, for splits written as .txt lists


def _plan(data_yaml: Path, dest: Path) -> _Plan:
    try:
        layout = resolve(data_yaml)
    except DatasetError as e:
        raise StagingError(str(e)) from None
    images = [os.path.abspath(i) for i in layout.all_images]
    if not images:
        raise StagingError(f"{data_yaml} lists no images; nothing to stage")
    files: dict[str, tuple[str, int, int]] = {}
    stats: list[tuple[str, os.stat_result]] = []
    for img in images:
        try:
            stats.append((img, os.stat(img)))
        except OSError as e:
            raise StagingError(f"cannot read {img}: {e.strerror}; fix or remove it from the dataset") from None
        lbl = label_path_for(img)
        try:
            stats.append((lbl, os.stat(lbl)))
        except FileNotFoundError:
            pass  # a background image: no label file
        except OSError as e:
            raise StagingError(f"cannot read {lbl}: {e.strerror}; fix or remove it") from None
    dirs = {os.path.dirname(src) for src, _ in stats}
    base = Path(os.path.commonpath([os.path.abspath(layout.root), *dirs]))
    dest_abs = Path(os.path.abspath(dest))
    if dest_abs == base or base in dest_abs.parents or dest_abs in base.parents:
        raise StagingError(f"--dest {dest} overlaps the dataset at {base}; stage into a separate folder")
    prefix = str(base).rstrip(os.sep) + os.sep
    for src, st in stats:
        rel = src[len(prefix):] if src.startswith(prefix) else os.path.relpath(src, base)
        files[rel] = (src, st.st_size, st.st_mtime_ns)

    raw = yaml.safe_load(layout.yaml_path.read_text()) or {}
    doc = {k: v for k, v in raw.items() if k not in ("path", "train", "val", "test", "download")}
    split_lists: dict[str, list[str]] = {}
    entries: dict[str, object] = {}
    for split, imgs in layout.splits.items():
        entry = raw.get(split)
        listed = entry if isinstance(entry, list) else [entry]
        mapped = []
        for e in listed:
            p = Path(str(e)).expanduser()
            p = Path(os.path.abspath(p if p.is_absolute() else layout.root / p))
            if p.is_dir() and (p == base or base in p.parents):
                mapped.append(os.path.relpath(p, base))
            else:
                mapped = None
                break
        if mapped:
            entries[split] = mapped if isinstance(entry, list) else mapped[0]
        else:  # a .txt list or a folder outside the common base: write the staged list
            split_lists[split] = [os.path.relpath(os.path.abspath(i), base) for i in imgs]
            entries[split] = f"{split}.txt"
    out = {"path": None, **{k: entries[k] for k in ("train", "val", "test") if k in entries}, **doc}
    return _Plan(base=base, files=files, data_doc=out, split_lists=split_lists)


def _read_manifest(dest: Path) -> dict | None:
    try:
        m = json.loads((dest / MANIFEST).read_text())
        return m if m.get("version") == MANIFEST_VERSION and isinstance(m.get("files"), dict) else None
    except (OSError, ValueError, AttributeError):
        return None


def _yaml_text(plan: _Plan, dest: Path) -> str:
    doc = dict(plan.data_doc)
    doc["path"] = str(dest.absolute())
    return yaml.safe_dump(doc, sort_keys=False)


def _clean_stale(dest: Path) -> None:
    """Remove hidden work folders left by a killed stage into `dest`."""
    parent = dest.absolute().parent
    if not parent.is_dir():
        return
    for p in parent.iterdir():
        for tag in (".staging-", ".old-"):
            prefix = f".{dest.name}{tag}"
            if p.name.startswith(prefix):
                pid = p.name[len(prefix):].split("-", 1)[0]
                if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
                    continue  # another stage is at work right now
                shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# --- copying --------------------------------------------------------------------------------

def _copy_verified(src: str, dst: str, size: int, mtime_ns: int) -> str:
    """Copy src -> dst hashing the bytes read; re-read dst and compare size and SHA-256; return the digest.

    Plain fds and whole-file reads for small files: with tens of thousands of label files and
    thumbnails, per-call overhead is the cost, not bytes.
    """
    h = hashlib.sha256()
    fi = os.open(src, os.O_RDONLY)
    try:
        fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            while True:
                chunk = os.read(fi, max(_BUF, size + 1) if size <= _BIG else _BUF)
                if not chunk:
                    break
                h.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fo, view):]
        finally:
            os.close(fo)
        st = os.fstat(fi)
    finally:
        os.close(fi)
    digest = h.hexdigest()
    if st.st_size != size or st.st_mtime_ns != mtime_ns:
        raise StagingError(f"{src} changed while it was being copied; stop whatever writes the dataset and rerun")
    v = hashlib.sha256()
    n = 0
    fd = os.open(dst, os.O_RDONLY)
    try:
        while chunk := os.read(fd, max(_BUF, size + 1) if size <= _BIG else _BUF):
            v.update(chunk)
            n += len(chunk)
    finally:
        os.close(fd)
    if n != size:
        raise StagingError(f"copy of {src} has {n} bytes, the source {size}; the target may be full")
    if v.hexdigest() != digest:
        raise StagingError(f"copy of {src} does not match its checksum; the target is failing, do not train from it")
    return digest


def _progress(enabled: bool, total_bytes: int):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    return Progress(
        TextColumn("[bold]staging"), BarColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn(),
        TextColumn("{task.fields[files]} files"), TimeRemainingColumn(), console=Console(stderr=True),
        transient=False,
    )


def _reusable(plan: _Plan, dest: Path, manifest: dict | None) -> dict[str, str]:
    """rel -> sha256 of staged copies the manifest vouches for (same size and mtime as the source now)."""
    old = (manifest or {}).get("files", {})
    reuse: dict[str, str] = {}
    for rel, (_, size, mtime) in plan.files.items():
        rec = old.get(rel)
        if rec and rec[0] == size and rec[1] == mtime:
            try:
                if os.stat(os.path.join(dest, rel)).st_size == size:
                    reuse[rel] = rec[2]
            except OSError:
                pass
    return reuse


def _link_reused(work: Path, dest: Path, reuse: dict[str, str], digests: dict[str, str]) -> None:
    """Unchanged files: hard links into the new tree (no bytes copied)."""
    for rel, sha in reuse.items():
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(dest / rel, target)
        except OSError:
            shutil.copy2(dest / rel, target)
        digests[rel] = sha


def _copy_all(plan: _Plan, to_copy: list[str], work: Path, need: int, digests: dict[str, str], progress: bool,
              workers: int | None, on_file: Callable[[str], None] | None) -> None:
    """Copy and verify `to_copy` into `work`, in batches, with a progress bar; digests land in `digests`."""
    work_s = str(work)
    bar = _progress(progress, need)
    lock = threading.Lock()
    task = None
    done = [0]

    def batch(rels: list[str]) -> None:
        got = []
        for rel in rels:
            src, size, mtime = plan.files[rel]
            got.append((rel, _copy_verified(src, os.path.join(work_s, rel), size, mtime), size))
            if on_file is not None:
                on_file(rel)
        with lock:
            for rel, sha, _ in got:
                digests[rel] = sha
            done[0] += len(got)
            if bar is not None:
                bar.update(task, advance=sum(g[2] for g in got), files=f"{done[0]}/{len(to_copy)}")

    for d in sorted({os.path.dirname(r) for r in to_copy}):
        (work / d).mkdir(parents=True, exist_ok=True)
    # Batches of files per task: per-file tasks cost more in thread hand-offs than small copies do.
    step = max(1, min(256, len(to_copy) // 64 or 1))
    batches = [to_copy[i : i + step] for i in range(0, len(to_copy), step)]
    if workers is None:  # small files are syscall-bound and serialise on the GIL; big ones hash/copy in parallel
        mean = need / max(1, len(to_copy))
        workers = 1 if mean < _PARALLEL_MEAN_BYTES else min(8, 2 * (os.cpu_count() or 1))
    try:
        if bar is not None:
            bar.start()
            task = bar.add_task("copy", total=need, files=f"0/{len(to_copy)}")
        if workers <= 1:
            for b in batches:
                batch(b)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(batch, b) for b in batches]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        if bar is not None:
            bar.stop()


def _write_index(work: Path, plan: _Plan, data_yaml: Path, yaml_text: str, digests: dict[str, str]) -> None:
    """The split lists, the new data.yaml and the manifest that makes the next run idempotent."""
    for split, rels in plan.split_lists.items():
        (work / f"{split}.txt").write_text("".join(f"./{r}\n" for r in rels))
    (work / "data.yaml").write_text(yaml_text)
    (work / MANIFEST).write_text(json.dumps({
        "version": MANIFEST_VERSION, "source": str(data_yaml.absolute()), "base": str(plan.base),
        "data_yaml": yaml_text,
        "files": {rel: [plan.files[rel][1], plan.files[rel][2], digests[rel]] for rel in plan.files},
    }))


def _swap_into_place(work: Path, dest: Path) -> None:
    """The old stage (if any) steps aside first, so `dest` only ever names a complete tree."""
    retired = None
    if dest.exists():
        retired = dest.absolute().parent / f".{dest.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if any(dest.iterdir()):
            os.rename(dest, retired)
        else:
            dest.rmdir()
            retired = None
    try:
        os.rename(work, dest)
    except OSError:
        if retired is not None:
            os.rename(retired, dest)  # put the previous stage back
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def stage(
    data_yaml: str | Path, dest: str | Path, dry_run: bool = False, progress: bool = True, *,
    workers: int | None = None, _on_file: Callable[[str], None] | None = None,
) -> StageResult:
    """Copy the dataset of `data_yaml` into `dest` (verified, atomic, idempotent); see the module doc.

    `_on_file(rel)` runs after each verified copy (tests use it to interrupt a stage mid-copy).
    """
    t0 = time.perf_counter()
    data_yaml, dest = Path(data_yaml).expanduser(), Path(dest).expanduser()
    plan = _plan(data_yaml, dest)
    yaml_text = _yaml_text(plan, dest)
    total_bytes = sum(size for _, size, _ in plan.files.values())

    if dest.exists() and not dest.is_dir():
        raise StagingError(f"--dest {dest} exists and is not a folder")
    manifest = _read_manifest(dest) if dest.is_dir() else None
    if dest.is_dir() and manifest is None and any(dest.iterdir()):
        raise StagingError(
            f"--dest {dest} already holds files that are not a staged dataset; choose an empty or new folder"
        )
    reuse = _reusable(plan, dest, manifest)
    to_copy = [rel for rel in plan.files if rel not in reuse]
    need = sum(plan.files[rel][1] for rel in to_copy)
    on_tmpfs = is_on_tmpfs(_existing_ancestor(dest))
    unchanged = (
        not to_copy and set((manifest or {}).get("files", {})) == set(plan.files) and manifest is not None
        and manifest.get("data_yaml") == yaml_text and (dest / "data.yaml").is_file()
        and (dest / "data.yaml").read_text() == yaml_text
    )

    def result(copied_files: int, copied_bytes: int, dry: bool) -> StageResult:
        return StageResult(
            data_yaml=dest / "data.yaml", dest=dest, files=len(plan.files), bytes=total_bytes,
            copied_files=copied_files, copied_bytes=copied_bytes, reused_files=len(reuse),
            seconds=time.perf_counter() - t0, dry_run=dry, on_tmpfs=on_tmpfs,
        )

    if unchanged:
        return result(0, 0, dry_run)
    problem = capacity_problem(need, dest, on_tmpfs=on_tmpfs)
    if problem:
        raise StagingCapacityError(f"not enough room to stage {data_yaml}: {problem}")
    if dry_run:
        return result(len(to_copy), need, True)

    _clean_stale(dest)
    dest.absolute().parent.mkdir(parents=True, exist_ok=True)
    work = dest.absolute().parent / f".{dest.name}.staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        digests: dict[str, str] = {}
        _link_reused(work, dest, reuse, digests)
        _copy_all(plan, to_copy, work, need, digests, progress, workers, _on_file)
        _write_index(work, plan, data_yaml, yaml_text, digests)
        _swap_into_place(work, dest)
    except BaseException as e:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(e, OSError):
            raise StagingError(f"staging into {dest} failed: {e}; {dest} was left as it was before") from e
        raise
    return result(len(to_copy), need, False)
