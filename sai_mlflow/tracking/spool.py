"""Write-ahead spool: every point, param, tag, artifact and status goes to a local log first.

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

Idempotence: a request the store took but whose answer was lost is sent again; MLflow's SQL stores
key a metric on (run, key, timestamp, step, value), so the resend adds nothing, and params/tags
with the same value are no-ops. `sync` therefore never duplicates a point.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import posixpath
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StoreConfigError
from ..keys import sanitize_key
from .batching import MAX_METRICS, MAX_PARAM_CHARS, MAX_PARAMS, MAX_TAGS
from .. import keys as K
from .sink import Batch

SPOOL_ENV = "SAI_MLFLOW_SPOOL_DIR"
KEEP_ENV = "SAI_MLFLOW_SPOOL_KEEP"
LOCAL_PREFIX = "local-"
LOCAL_ID_TAG = K.TAG_LOCAL_RUN_ID
KEY_NOTE_TAG = K.TAG_NOTE_KEYS_MAPPED
SET_ASIDE_TAG = K.TAG_NOTE_SET_ASIDE
INF_NOTE_TAG = K.TAG_NOTE_INF_CLAMPED
MAX_TAG_CHARS = 8000
MAX_RECORD = 64 << 20
_HEADER = struct.Struct("<II")
_INT64 = 2**63 - 1


def spool_root(explicit: str | Path | None = None) -> Path:
    """The one known root: explicit, else $SAI_MLFLOW_SPOOL_DIR, else ./mlruns/spool."""
    return Path(explicit or os.environ.get(SPOOL_ENV) or Path("mlruns") / "spool").resolve()


def new_local_run_id() -> str:
    return LOCAL_PREFIX + uuid.uuid4().hex


# --- cleaning: nothing here raises ---------------------------------------------------------------
def safe_key(key) -> str:
    """A key MLflow accepts: its character rule (keys.sanitize_key) and no path tricks (`a//b`, `/a`, `..`)."""
    try:
        k = sanitize_key(str(key))
    except Exception:
        k = "_"
    k = k.replace("\n", "_").replace("\r", "_")
    if posixpath.normpath(k) != k or k in (".", "..") or k.startswith(("/", "..")):
        parts = [p for p in k.split("/") if p not in ("", ".", "..")]
        k = "/".join(parts) or "_"
        if posixpath.normpath(k) != k or k.startswith(".."):
            k = k.replace("/", "_").replace("..", "_") or "_"
    return k[:250]


def _text(value, limit: int) -> str | None:
    try:
        text = str(value)
    except Exception:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Cleaned:
    metrics: list[list] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    set_aside: list[list] = field(default_factory=list)  # [kind, key, repr(value), reason]
    infinite: set[str] = field(default_factory=set)
    mapped: dict[str, str] = field(default_factory=dict)


def _repr(v) -> str:
    try:
        return repr(v)[:200]
    except Exception:
        return "<unrepresentable>"


def clean_batch(batch: Batch, now_ms: int | None = None) -> Cleaned:
    """Map keys, cut long texts, keep NaN/inf (noted), set aside what cannot be a metric. Never raises."""
    out = Cleaned()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms

    def key_of(k):
        sk = safe_key(k)
        if not isinstance(k, str) or sk != k:
            out.mapped[_repr(k) if not isinstance(k, str) else k[:100]] = sk
        return sk

    for point in list(getattr(batch, "metrics", None) or []):
        try:
            k, v, ts, step = point
        except Exception:
            out.set_aside.append(["metric", "?", _repr(point), "not a (key, value, ts, step) point"])
            continue
        key = key_of(k)
        if isinstance(v, bool) or v is None or isinstance(v, str | bytes):
            out.set_aside.append(["metric", key, _repr(v), "non-numeric value"])
            continue
        try:
            value = float(v)
        except Exception:
            out.set_aside.append(["metric", key, _repr(v), "non-numeric value"])
            continue
        try:
            ts_i = int(ts)
            if not 0 <= ts_i <= _INT64:
                ts_i = now_ms
        except Exception:
            ts_i = now_ms
        try:
            step_i = int(step)
        except Exception:
            out.set_aside.append(["metric", key, _repr(v), f"non-integer step {_repr(step)}"])
            continue
        if not -_INT64 - 1 <= step_i <= _INT64:
            out.set_aside.append(["metric", key, _repr(v), f"step {step_i} outside int64"])
            continue
        if math.isinf(value):
            out.infinite.add(key)
        out.metrics.append([key, value, ts_i, step_i])
    for src, dst, limit in ((getattr(batch, "params", None), out.params, MAX_PARAM_CHARS),
                            (getattr(batch, "tags", None), out.tags, MAX_TAG_CHARS)):
        try:
            items = list((src or {}).items())
        except Exception:
            items = []
        for k, v in items:
            text = _text(v, limit)
            if text is None:
                out.set_aside.append(["param" if dst is out.params else "tag", safe_key(k), "<str() failed>",
                                      "value cannot be turned into text"])
                continue
            dst[key_of(k)] = text
    return out


# --- the log file ----------------------------------------------------------------------------------
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


# --- uploading -----------------------------------------------------------------------------------
class Uploader:
    """Sends spool records to MLflow; over HTTP with no client-side retries (the caller backs off)."""

    def __init__(self, client, run_id: str, timeout_s: float = 10.0) -> None:
        self.client = client
        self.run_id = run_id
        self.timeout_s = timeout_s
        self.http = str(client.tracking_uri).startswith(("http://", "https://"))

    def _post(self, endpoint: str, body: dict) -> None:
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        creds = self.client._tracking_client.store.get_host_creds()
        resp = http_request(creds, endpoint, "POST", max_retries=0, backoff_factor=0,
                            timeout=self.timeout_s, json=body)
        verify_rest_response(resp, endpoint)

    def log_batch(self, metrics: list, params: dict, tags: dict) -> None:
        if self.http:
            self._post("/api/2.0/mlflow/runs/log-batch", {
                "run_id": self.run_id,
                "metrics": [{"key": k, "value": _json_float(v), "timestamp": ts, "step": s} for k, v, ts, s in metrics],
                "params": [{"key": k, "value": v} for k, v in params.items()],
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            })
            return
        from mlflow.entities import Metric, Param, RunTag

        self.client.log_batch(self.run_id, metrics=[Metric(k, v, ts, s) for k, v, ts, s in metrics],
                              params=[Param(k, v) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])

    def probe(self) -> None:
        from .store import probe

        probe(self.client.tracking_uri, timeout_s=min(3.0, self.timeout_s))

    def log_artifact(self, path: str, artifact_path: str | None) -> None:
        self.probe()  # the artifact client retries for minutes: only start when the server answers
        self.client.log_artifact(self.run_id, path, artifact_path)

    def terminate(self, status: str, end_ms: int | None) -> None:
        if self.http:
            body = {"run_id": self.run_id, "run_uuid": self.run_id, "status": status}
            if end_ms:
                body["end_time"] = int(end_ms)
            self._post("/api/2.0/mlflow/runs/update", body)
        else:
            self.client.set_terminated(self.run_id, status, end_time=end_ms)


def _json_float(v: float):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def is_permanent(e: BaseException) -> bool:
    """The store answered and refused (4xx): resending will not help. Anything else is transient."""
    try:
        from mlflow.exceptions import MlflowException
    except Exception:
        return False
    if not isinstance(e, MlflowException):
        return False
    try:
        code = e.get_http_status_code()
    except Exception:
        return False
    return 400 <= code < 500 and code not in (408, 429)


def upload_step(spool: Spool, up: Uploader, end: int | None = None) -> tuple[int, int]:
    """Send the next request's worth of records from the watermark. Returns (records, metrics) sent.

    Raises on a transient failure (watermark unchanged). Permanent refusals go to rejected.jsonl.
    """
    wm = spool.watermark
    metrics: list = []
    params: dict[str, str] = {}
    tags: dict[str, str] = {}
    new_wm = wm
    n = 0
    single = None
    for off, rec in spool.records(wm, end):
        t = rec.get("t")
        if t in ("a", "s"):
            if n == 0:
                single, new_wm, n = rec, off, 1
            break
        if t == "x":  # set aside: documented in the spool, never sent
            new_wm, n = off, n + 1
            continue
        m = rec["p"] if t == "m" else []
        p = rec["p"] if t == "p" else {}
        g = rec["p"] if t == "g" else {}
        if n and (len(metrics) + len(m) > MAX_METRICS or len(params) + len(p) > MAX_PARAMS
                  or len(tags) + len(g) > MAX_TAGS or set(p) & set(params)):
            break
        metrics.extend(m)
        params.update(p)
        tags.update(g)
        new_wm, n = off, n + 1
    if n == 0:
        return 0, 0
    try:
        if single is not None:
            if single["t"] == "a":
                if not Path(single["path"]).exists():
                    spool.add_rejected([{"artifact": single["path"], "reason": "file no longer exists"}])
                else:
                    up.log_artifact(single["path"], single.get("ap"))
            else:
                up.terminate(single["status"], single.get("end_ms"))
        elif metrics or params or tags:
            up.log_batch(metrics, params, tags)
    except Exception as e:
        if not is_permanent(e):
            raise
        _one_by_one(spool, up, metrics, params, tags, single, e)
    spool.set_watermark(new_wm)
    return n, len(metrics)


def _one_by_one(spool, up, metrics, params, tags, single, error) -> None:
    """A refused request: send item by item, keep the refused ones in rejected.jsonl (never block)."""
    if single is not None:
        spool.add_rejected([{**single, "reason": str(error)[:300]}])
        return
    bad = []
    for k, v, ts, s in metrics:
        try:
            up.log_batch([[k, v, ts, s]], {}, {})
        except Exception as e:
            if not is_permanent(e):
                raise
            bad.append({"metric": k, "value": repr(v), "step": s, "reason": str(e)[:300]})
    for kind, items in (("param", params), ("tag", tags)):
        for k, v in items.items():
            try:
                up.log_batch([], {k: v} if kind == "param" else {}, {k: v} if kind == "tag" else {})
            except Exception as e:
                if not is_permanent(e):
                    raise
                bad.append({kind: k, "value": v[:200], "reason": str(e)[:300]})
    if bad:
        spool.add_rejected(bad)


def drain(spool: Spool, up: Uploader, end: int | None = None, deadline: float | None = None) -> int:
    """Upload until the watermark reaches `end` (default: the valid end). Returns metrics sent."""
    sent = 0
    while deadline is None or time.monotonic() < deadline:
        n, m = upload_step(spool, up, end)
        if n == 0:
            break
        sent += m
    return sent


# --- the sink --------------------------------------------------------------------------------------
Reporter = Callable[[str], None]


class SpoolingSink:
    """Sink protocol: write() appends to the spool (fast, never waits on the network); a thread uploads.

    `client` None means offline: nothing is uploaded in this process; `sai-mlflow sync` creates the
    run (from meta.json) and uploads later.
    """

    def __init__(self, client, run_id: str, root: str | Path | None = None, meta: dict | None = None,
                 report: Reporter = print, drain_timeout_s: float = 6.0, max_backoff_s: float = 2.0,
                 fsync: bool = False) -> None:
        self.client = client
        self.run_id = run_id
        self.report = report
        self.drain_timeout_s = drain_timeout_s
        self.max_backoff_s = max_backoff_s
        self.fsync = fsync
        self.spool = Spool(spool_root(root) / run_id)
        self.spool.dir.mkdir(parents=True, exist_ok=True)
        if not self.spool.try_lock():
            raise RuntimeError(f"spool {self.spool.dir} is in use by another live process")
        if meta is not None or not (self.spool.dir / "meta.json").exists():
            self.spool.write_meta({"run_id": run_id, "created_ms": int(time.time() * 1000), **(meta or {})})
        self.spool.open_for_append()
        self._lock = threading.Lock()  # append vs. the uploader reading `end`
        self._noted_inf: set[str] = set()
        self._noted_keys: dict[str, str] = {}
        self._status_written = False
        self._wake = threading.Event()
        self._stop = False
        self._stop_ev = threading.Event()
        self._down_since: float | None = None
        self.uploaded_metrics = 0
        self.requests = 0
        self.failures = 0
        self.busy_s = 0.0  # time inside successful uploads (for the upload rate)
        self._idle = threading.Condition()
        self._up = Uploader(client, run_id) if client is not None else None
        self._thread = None
        if self._up is not None:
            self._thread = threading.Thread(target=self._run, name="sai-spool-upload", daemon=True)
            self._thread.start()

    # --- Sink protocol (publisher thread) ---
    def write(self, batch: Batch) -> None:
        c = clean_batch(batch)
        tags = dict(c.tags)
        new_inf = c.infinite - self._noted_inf
        if new_inf:
            self._noted_inf |= new_inf
            tags[INF_NOTE_TAG] = _text("infinite values stored as ±1.8e308 for: " + ", ".join(sorted(self._noted_inf)),
                                       MAX_TAG_CHARS)
        new_keys = {k: v for k, v in c.mapped.items() if k not in self._noted_keys}
        if new_keys:
            self._noted_keys.update(new_keys)
            tags[KEY_NOTE_TAG] = _text("; ".join(f"{k} -> {v}" for k, v in self._noted_keys.items()), MAX_TAG_CHARS)
        records = []
        if c.set_aside:
            records.append({"t": "x", "items": c.set_aside})
            tags[SET_ASIDE_TAG] = "some values were set aside (not numbers); see `sai-mlflow sync --dry-run`"
        p = list(c.params.items())
        for i in range(0, len(p), MAX_PARAMS):
            records.append({"t": "p", "p": dict(p[i:i + MAX_PARAMS])})
        g = list(tags.items())
        for i in range(0, len(g), MAX_TAGS):
            records.append({"t": "g", "p": dict(g[i:i + MAX_TAGS])})
        for i in range(0, len(c.metrics), MAX_METRICS):
            records.append({"t": "m", "p": c.metrics[i:i + MAX_METRICS]})
        self._append(records)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self._append([{"t": "a", "path": str(Path(path).resolve()), "ap": artifact_path}])

    def terminate(self, status: str) -> None:
        """Record the status, then upload what is left within drain_timeout_s; never raises for the store."""
        if not self._status_written:
            self._append([{"t": "s", "status": status, "end_ms": int(time.time() * 1000)}])
            self._status_written = True
            if self.fsync:
                self.spool.sync_to_disk()
        done = self.wait_drained(self.drain_timeout_s) if self._up is not None else False
        self._stop = True
        self._stop_ev.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=0.5 if not done else 5.0)
        if done and not (self._thread and self._thread.is_alive()):
            keep = os.environ.get(KEEP_ENV, "").lower() in ("1", "true", "yes")
            if keep:
                self.spool.close()
            else:
                self.spool.remove()
            return
        self.spool.close()
        left = summarize(self.spool)
        where = "offline" if self._up is None else "the tracking store is unreachable"
        self.report(f"sai_mlflow: {where}; run {self.run_id} kept {left.metrics} points and {left.records} "
                    f"records in {self.spool.dir} -- upload them with: sai-mlflow sync --run {self.run_id}")

    # --- helpers ---
    def _append(self, records: list[dict]) -> None:
        if not records:
            return
        with self._lock:
            for r in records:
                self.spool.append(r)
        self._wake.set()

    def pending(self) -> bool:
        return self.spool.watermark < self.spool.end

    def wait_drained(self, timeout: float) -> bool:
        """Wait (bounded) until the store has acknowledged everything spooled so far."""
        if self._thread is None:
            return not self.pending()
        deadline = time.monotonic() + timeout
        with self._idle:
            self._wake.set()
            return self._idle.wait_for(lambda: not self.pending() or not self._thread.is_alive(),
                                       max(0.0, deadline - time.monotonic())) and not self.pending()

    def _run(self) -> None:
        import random

        backoff = 0.2
        while not self._stop:
            if self._down_since is not None:
                self._stop_ev.wait(backoff)  # down: keep to the backoff, new appends do not hurry it
            else:
                self._wake.wait(1.0)
                self._wake.clear()
            if self._stop:
                break
            try:
                while not self._stop:
                    with self._lock:
                        end = self.spool.end
                    t = time.monotonic()
                    n, m = upload_step(self.spool, self._up, end)
                    if n == 0:
                        break
                    self.busy_s += time.monotonic() - t
                    self.requests += 1
                    self.uploaded_metrics += m
            except Exception as e:
                self.failures += 1
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    self.report(f"sai_mlflow: the tracking store failed ({type(e).__name__}: {str(e)[:200]}); "
                                f"training continues, data is spooled in {self.spool.dir}")
                backoff = min(backoff * 2, self.max_backoff_s) * random.uniform(0.75, 1.0)
                continue
            if self._down_since is not None:
                self.report(f"sai_mlflow: the tracking store is back after {time.monotonic() - self._down_since:.0f} s; "
                            "uploading the spool")
                self._down_since = None
            backoff = 0.2
            with self._idle:
                self._idle.notify_all()


# --- sync: upload what is still only local ---------------------------------------------------------
@dataclass
class SyncResult:
    spool_run_id: str
    run_id: str | None = None
    uploaded_metrics: int = 0
    status: str | None = None
    state: str = ""   # synced / live / dry-run / failed
    message: str = ""


def _ensure_run(client, spool: Spool, meta: dict) -> str:
    """The MLflow run for this spool; for an offline (`local-`) spool, found by tag or created once."""
    bound = spool.bound_run_id()
    if bound:
        return bound
    from .store import get_or_create_experiment, resolve_experiment

    exp_id = get_or_create_experiment(client, meta.get("experiment") or resolve_experiment(),
                                      meta.get("artifact_location") or None)
    found = client.search_runs([exp_id], filter_string=f"tags.`{LOCAL_ID_TAG}` = '{spool.run_id}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
    else:
        tags = {**(meta.get("tags") or {}), LOCAL_ID_TAG: spool.run_id}
        run = client.create_run(exp_id, start_time=meta.get("created_ms"), tags=tags,
                                run_name=meta.get("run_name") or None)
        run_id = run.info.run_id
    spool.bind(run_id)
    return run_id


def sync_spool(spool: Spool, tracking_uri: str | None = None, dry_run: bool = False) -> SyncResult:
    """Upload one spool from its watermark and set the status the run should end with."""
    res = SyncResult(spool.run_id, run_id=spool.bound_run_id())
    if not spool.try_lock():
        res.state, res.message = "live", "a live process is still writing this spool; left alone"
        return res
    try:
        pend = summarize(spool)
        res.status = pend.status or "KILLED"
        if dry_run:
            res.state = "dry-run"
            return res
        meta = spool.meta()
        from .store import make_client, resolve_tracking_uri, with_credentials

        # meta.json holds the URI without its password: MLFLOW_TRACKING_URI (or PGPASSWORD) supplies it
        uri = tracking_uri or with_credentials(meta.get("tracking_uri") or "") or resolve_tracking_uri()
        client = make_client(uri)
        res.run_id = _ensure_run(client, spool, meta)
        spool.open_for_append()  # drops a torn tail
        if pend.status is None:  # no terminal record: the process died (SIGKILL, OOM, power)
            end_ms = pend.last_ts_ms or int(spool.log.stat().st_mtime * 1000)
            spool.append({"t": "s", "status": "KILLED", "end_ms": end_ms, "by": "sync"})
        res.uploaded_metrics = drain(spool, Uploader(client, res.run_id))
        res.state = "synced"
        if spool.watermark >= spool.end and os.environ.get(KEEP_ENV, "").lower() not in ("1", "true", "yes"):
            spool.remove()
        return res
    except StoreConfigError:
        raise  # wrong URI, login or permission: the command says so and exits 2; the spool stays
    except Exception as e:
        from .store import redact_credentials

        res.state, res.message = "failed", f"{type(e).__name__}: {redact_credentials(e)[:300]}"
        return res
    finally:
        spool.close()
