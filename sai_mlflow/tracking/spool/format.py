"""The spool on disk: record framing, the reader, and one run's spool directory.

Layout (one directory per run, under one known root so `sai-mlflow sync` finds them all)::

    $SAI_MLFLOW_SPOOL_DIR            (else ./mlruns/spool, beside the embedded store)
      <run_id>/                      (an MLflow run id, or `local-<hex>` for a run started offline)
        meta.json                    tracking URI, experiment, run name, start time, tags (offline runs)
        spool.log                    append-only records: u32 length | u32 crc32 | JSON payload
        watermark                    byte offset up to which the store has acknowledged (atomic rename)
        mlflow_run_id                the run sync created for an offline (`local-`) run
        rejected.jsonl               items the store refused for good (shown by `sync --dry-run`)
        lock                         flock held by the live writer; a SIGKILL releases it

Records (JSON, NaN/Infinity allowed): `m` metrics [[key, value, ts_ms, step], ...] (<= 1000 per
record), `p` params, `g` tags (<= 100 each), `a` artifact, `s` terminal status, `x` values set aside
with a reason (never uploaded). A torn last record (a crash mid-append) fails its length or crc check:
it is dropped when the spool is reopened and never read. Memory stays bounded: the backlog lives in
the file; the uploader reads at most one request (1000 metrics) at a time from the watermark.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SPOOL_ENV = "SAI_MLFLOW_SPOOL_DIR"
KEEP_ENV = "SAI_MLFLOW_SPOOL_KEEP"
LOCAL_PREFIX = "local-"
MAX_RECORD = 64 << 20
_HEADER = struct.Struct("<II")


def spool_root(explicit: str | Path | None = None) -> Path:
    """The one known root: explicit, else $SAI_MLFLOW_SPOOL_DIR, else ./mlruns/spool."""
    return Path(explicit or os.environ.get(SPOOL_ENV) or Path("mlruns") / "spool").resolve()


def new_local_run_id() -> str:
    return LOCAL_PREFIX + uuid.uuid4().hex


def encode(record: dict) -> bytes:
    payload = json.dumps(record, separators=(",", ":"), allow_nan=True).encode()
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_records(path: Path, start: int = 0, end: int | None = None) -> Iterator[tuple[int, dict]]:
    """(offset after the record, record) from `start`; stops at the first torn/corrupt record or `end`."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        f.seek(start)
        pos = start
        while end is None or pos < end:
            head = f.read(_HEADER.size)
            if len(head) < _HEADER.size:
                return
            n, crc = _HEADER.unpack(head)
            if n > MAX_RECORD:
                return
            payload = f.read(n)
            if len(payload) < n or zlib.crc32(payload) != crc:
                return
            try:
                rec = json.loads(payload)
            except ValueError:
                return
            pos += _HEADER.size + n
            yield pos, rec


def valid_end(path: Path, start: int = 0) -> int:
    end = start
    for end, _ in read_records(path, start):
        pass
    return end


class Spool:
    """One run's spool directory: append records, read from the watermark, move the watermark."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.log = self.dir / "spool.log"
        self._lock_fd: int | None = None
        self._f = None
        self.end = 0  # bytes of whole records (what readers may read)

    # metadata
    @property
    def run_id(self) -> str:
        return self.dir.name

    @property
    def local(self) -> bool:
        return self.run_id.startswith(LOCAL_PREFIX)

    def meta(self) -> dict:
        try:
            return json.loads((self.dir / "meta.json").read_text())
        except Exception:
            return {}

    def write_meta(self, meta: dict) -> None:
        _atomic_write(self.dir / "meta.json", json.dumps(meta, indent=1, default=str))

    def bound_run_id(self) -> str | None:
        """The MLflow run this spool uploads into (itself, or the run sync created for a local id)."""
        if not self.local:
            return self.run_id
        try:
            return (self.dir / "mlflow_run_id").read_text().strip() or None
        except FileNotFoundError:
            return None

    def bind(self, mlflow_run_id: str) -> None:
        _atomic_write(self.dir / "mlflow_run_id", mlflow_run_id + "\n")

    # watermark
    @property
    def watermark(self) -> int:
        try:
            return int((self.dir / "watermark").read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def set_watermark(self, offset: int) -> None:
        _atomic_write(self.dir / "watermark", f"{offset}\n")

    # writer side
    def try_lock(self) -> bool:
        """Take the live-writer lock (flock; the kernel drops it when the process dies)."""
        if self._lock_fd is not None:
            return True
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            try:
                os.close(self._lock_fd)
            finally:
                self._lock_fd = None

    def open_for_append(self) -> "Spool":
        """Drop a torn tail (a crash mid-append) so new records never follow garbage."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.end = valid_end(self.log, min(self.watermark, self.size()))
        if self.size() != self.end:
            with open(self.log, "r+b") as f:
                f.truncate(self.end)
        self._f = open(self.log, "ab", buffering=0)
        return self

    def append(self, record: dict) -> int:
        data = encode(record)
        self._f.write(data)  # one write(2): in the page cache, so it survives SIGKILL of this process
        self.end += len(data)
        return self.end

    def sync_to_disk(self) -> None:
        if self._f is not None:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        self.unlock()

    # reader side
    def size(self) -> int:
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def records(self, start: int | None = None, end: int | None = None) -> Iterator[tuple[int, dict]]:
        return read_records(self.log, self.watermark if start is None else start, end)

    def rejected(self) -> list[dict]:
        try:
            return [json.loads(line) for line in (self.dir / "rejected.jsonl").read_text().splitlines() if line]
        except FileNotFoundError:
            return []

    def add_rejected(self, items: list[dict]) -> None:
        with open(self.dir / "rejected.jsonl", "a") as f:
            for it in items:
                f.write(json.dumps(it, default=str) + "\n")

    def remove(self) -> None:
        self.close()
        for p in self.dir.iterdir():
            p.unlink(missing_ok=True)
        self.dir.rmdir()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def list_spools(root: str | Path | None = None) -> list[Spool]:
    r = spool_root(root)
    if not r.is_dir():
        return []
    return [Spool(d) for d in sorted(r.iterdir()) if d.is_dir() and (d / "spool.log").exists()]


# --- what is pending -----------------------------------------------------------------------------
@dataclass
class Pending:
    metrics: int = 0
    params: int = 0
    tags: int = 0
    artifacts: int = 0
    status: str | None = None
    set_aside: list[list] = field(default_factory=list)
    last_ts_ms: int = 0
    records: int = 0
    bytes: int = 0
    torn_tail_bytes: int = 0
    all_metrics: int = 0  # the whole spool, acknowledged or not


def summarize(spool: Spool) -> Pending:
    p = Pending()
    wm = spool.watermark
    end = 0
    for end, rec in spool.records(0):
        t = rec.get("t")
        if t == "m":
            p.all_metrics += len(rec["p"])
            if rec["p"]:
                p.last_ts_ms = max(p.last_ts_ms, max(int(x[2]) for x in rec["p"]))
        if t == "x":
            p.set_aside.extend(rec["items"])
        if t == "s":
            p.status = rec["status"]
        if end <= wm:
            continue
        p.records += 1
        if t == "m":
            p.metrics += len(rec["p"])
        elif t == "p":
            p.params += len(rec["p"])
        elif t == "g":
            p.tags += len(rec["p"])
        elif t == "a":
            p.artifacts += 1
    p.bytes = max(0, end - wm)
    p.torn_tail_bytes = max(0, spool.size() - end)
    return p
