"""The spool on disk: record framing, the reader, and one run's spool directory.

Layout (one directory per run, under one known root so `sai-mlflow sync` finds them all)::

    $SAI_MLFLOW_SPOOL_DIR            (else ./mlruns/spool, beside the embedded store)
      <run_id>/                      (an MLflow run id, or `local-<hex>` for a run started offline)
        meta.json                    tracking URI, experiment, run name, start time, tags (offline runs)
        spool.log                    append-only records: u32 length | u32 crc32 | JSON payload
        watermark                    byte offset up to which the store has acknowledged (atomic rename)
        mlflow_run_id                the run sync created for an offline (`local-`) run
        rejected.jsonl               items the store rejected for their content (kept; `sync --dry-run`)
        lock                         flock held by the live writer; a SIGKILL releases it. Holds `PID START`
                                     of the writer (writer.py), so sync tells a live writer from a dead one

Records (JSON, NaN/Infinity allowed; records.py types them, one class per kind, and lists the codes):
metrics, params, tags, an artifact, the model, the terminal status, and values set aside with a reason
(never uploaded). A torn last record (a crash mid-append) fails its length or crc check:
it is dropped when the spool is reopened and never read. Memory stays bounded: the backlog lives in
the file; the uploader reads at most one request (1000 metrics) at a time from the watermark.
"""

from __future__ import annotations

import fcntl
import json
import mmap
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
RECORD_START = b'{"t":'  # every payload begins so (encode() writes "t" first)


def spool_root(explicit: str | Path | None = None) -> Path:
    """The one known root: explicit, else $SAI_MLFLOW_SPOOL_DIR, else ./mlruns/spool."""
    return Path(explicit or os.environ.get(SPOOL_ENV) or Path("mlruns") / "spool").resolve()


def new_local_run_id() -> str:
    return LOCAL_PREFIX + uuid.uuid4().hex


def encode(record) -> bytes:
    """One framed record (a typed record from records.py, or its dict)."""
    if not isinstance(record, dict):
        record = record.to_dict()
    record = {"t": record["t"], **record}  # "t" first: the reader resynchronises on RECORD_START
    payload = json.dumps(record, separators=(",", ":"), allow_nan=True).encode()
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _record_at(buf, pos: int, limit: int) -> tuple[int, dict] | None:
    """The whole, checksummed record starting at `pos` (ending by `limit`), else None."""
    if pos + _HEADER.size > limit:
        return None
    n, crc = _HEADER.unpack_from(buf, pos)
    end = pos + _HEADER.size + n
    if n > MAX_RECORD or end > limit:
        return None
    payload = buf[pos + _HEADER.size:end]
    if zlib.crc32(payload) != crc:
        return None
    try:
        rec = json.loads(payload)
    except ValueError:
        return None
    return (end, rec) if isinstance(rec, dict) else None


def _next_record(buf, pos: int, limit: int) -> int | None:
    """Resynchronise: the offset of the next whole record after a bad one (every record starts `{"t":`)."""
    i = buf.find(RECORD_START, pos + _HEADER.size + 1, limit)
    while i != -1:
        if _record_at(buf, i - _HEADER.size, limit) is not None:
            return i - _HEADER.size
        i = buf.find(RECORD_START, i + 1, limit)
    return None


def read_records(path: Path, start: int = 0, end: int | None = None,
                 gaps: list[tuple[int, int]] | None = None) -> Iterator[tuple[int, dict]]:
    """(offset after the record, record) from `start` up to `end`.

    A bad record (failed length, crc or JSON) followed by a good one is skipped: reading resumes at the
    next whole record, and (offset, size) of the skipped bytes goes to `gaps`. A bad tail with no whole
    record after it is a torn last write: reading stops there. A record is never mis-read (crc32).
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        size = os.fstat(f.fileno()).st_size
        limit = size if end is None else min(end, size)
        if limit <= start:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            pos = start
            while pos < limit:
                got = _record_at(buf, pos, limit)
                if got is None:
                    nxt = _next_record(buf, pos, limit)
                    if nxt is None:
                        return  # a torn tail
                    if gaps is not None:
                        gaps.append((pos, nxt - pos))
                    pos = nxt
                    continue
                pos, rec = got
                yield pos, rec


def valid_end(path: Path, start: int = 0) -> int:
    """The end of the last whole record: what follows it is a torn tail."""
    end = start
    for end, _ in read_records(path, start):  # noqa: B007 (the last offset read is the answer)
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
        """Owner-only (0600) and without credentials: a tracking URI's `user:password@` is dropped (sync takes
        them from MLFLOW_TRACKING_USERNAME/PASSWORD or --tracking-uri again), other secrets redacted."""
        from ...redact import has_credentials, redact_tree, without_credentials

        meta = dict(meta)
        if has_credentials(str(meta.get("tracking_uri") or "")):
            meta["tracking_uri"] = without_credentials(meta["tracking_uri"])
            meta["uri_userinfo_removed"] = True
        tmp = self.dir / f"meta.json.tmp{os.getpid()}.{threading.get_ident()}"
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(json.dumps(redact_tree(meta), indent=1, default=str))
        os.replace(tmp, self.dir / "meta.json")

    def bound_run_id(self) -> str | None:
        """The MLflow run this spool uploads into: the one sync bound it to (a local id's run, or a copy in a
        store that lacked the run), else its own id; None for a local spool never synced."""
        try:
            bound = (self.dir / "mlflow_run_id").read_text().strip()
        except FileNotFoundError:
            bound = ""
        return bound or (None if self.local else self.run_id)

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
        from .writer import held, lock_record

        os.ftruncate(fd, 0)
        os.write(fd, lock_record().encode())  # `PID START`: sync asks whether that process runs (writer.py)
        self._lock_fd = fd
        held(self)  # a forked child drops its copy of this lock
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            try:
                os.close(self._lock_fd)
            finally:
                self._lock_fd = None

    def open_for_append(self) -> Spool:
        """Drop a torn tail (a crash mid-append) so new records never follow garbage."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.end = valid_end(self.log, min(self.watermark, self.size()))
        if self.size() != self.end:
            with open(self.log, "r+b") as f:
                f.truncate(self.end)
        self._f = open(self.log, "ab", buffering=0)
        return self

    def append(self, record) -> int:
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
    corrupt: list[tuple[int, int]] = field(default_factory=list)  # (byte offset, size) of skipped records


def summarize(spool: Spool) -> Pending:
    from .records import Artifact, Metrics, Params, SetAside, Status, Tags, decode

    p = Pending()
    wm = spool.watermark
    end = 0
    for end, raw in read_records(spool.log, 0, gaps=p.corrupt):
        rec = decode(raw)
        if isinstance(rec, Metrics):
            p.all_metrics += len(rec.points)
            if rec.points:
                p.last_ts_ms = max(p.last_ts_ms, max(int(x[2]) for x in rec.points))
        elif isinstance(rec, SetAside):
            p.set_aside.extend(rec.items)
        elif isinstance(rec, Status):
            p.status = rec.status
        if end <= wm:
            continue
        p.records += 1
        if isinstance(rec, Metrics):
            p.metrics += len(rec.points)
        elif isinstance(rec, Params):
            p.params += len(rec.items)
        elif isinstance(rec, Tags):
            p.tags += len(rec.items)
        elif isinstance(rec, Artifact):
            p.artifacts += 1
    p.bytes = max(0, end - wm)
    p.torn_tail_bytes = max(0, spool.size() - end)
    return p
