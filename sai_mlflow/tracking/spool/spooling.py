"""SpoolingSink: the publisher writes to the spool (fast, local); an uploader thread ships it to MLflow."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ... import keys as K
from ...backend import writer_for
from ..backoff import Backoff
from ..batching import MAX_METRICS, MAX_PARAMS, MAX_TAGS
from ..sink import Batch
from .format import KEEP_ENV, Spool, spool_root, summarize
from .records import Artifact, Metrics, Model, Params, SetAside, Status, Tags
from .upload import StoreRefused, upload_step
from .values import MAX_TAG_CHARS, _text, clean_batch

Reporter = Callable[[str], None]


class SpoolingSink:
    """Sink protocol: write() appends to the spool (fast, never waits on the network); a thread uploads.

    `client`: the tracking backend (backend/; an MLflow client is taken too); None means offline: nothing is
    uploaded in this process, `sai-mlflow sync` creates the run (from meta.json) and uploads later.
    """

    def __init__(self, client, run_id: str, root: str | Path | None = None, meta: dict | None = None,
                 report: Reporter = print, drain_timeout_s: float = 6.0, max_backoff_s: float = 2.0,
                 fsync: bool = False, upload_interval_s: float = 1.0) -> None:
        self.client = client
        self.run_id = run_id
        self.report = report
        self.drain_timeout_s = drain_timeout_s
        self.max_backoff_s = max_backoff_s
        self.fsync = fsync
        self.upload_interval_s = upload_interval_s  # the upload cadence; appends do not hurry it
        self.last_error = ""  # why the last upload failed (an outage, or the store refusing the run)
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
        self._backoff = Backoff(0.2, max_backoff_s, report,
                                "sai_mlflow: the tracking store failed ({error}); training continues, data is kept "
                                f"in {self.spool.dir}",
                                "sai_mlflow: the tracking store is back after {seconds} s; uploading the spool")
        self.uploaded_metrics = 0
        self.requests = 0
        self.failures = 0
        self.busy_s = 0.0  # time inside successful uploads (for the upload rate)
        self._idle = threading.Condition()
        self._up = writer_for(client, run_id) if client is not None else None
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
            tags[K.TAG_NOTE_INF_CLAMPED] = _text(
                "infinite values stored as ±1.8e308 for: " + ", ".join(sorted(self._noted_inf)), MAX_TAG_CHARS)
        new_keys = {k: v for k, v in c.mapped.items() if k not in self._noted_keys}
        if new_keys:
            self._noted_keys.update(new_keys)
            tags[K.TAG_NOTE_KEYS_MAPPED] = _text("; ".join(f"{k} -> {v}" for k, v in self._noted_keys.items()),
                                                 MAX_TAG_CHARS)
        records = []
        if c.set_aside:
            records.append(SetAside(c.set_aside))
            tags[K.TAG_NOTE_SET_ASIDE] = "some values were set aside (not numbers); see `sai-mlflow sync --dry-run`"
        p = list(c.params.items())
        for i in range(0, len(p), MAX_PARAMS):
            records.append(Params(dict(p[i:i + MAX_PARAMS])))
        g = list(tags.items())
        for i in range(0, len(g), MAX_TAGS):
            records.append(Tags(dict(g[i:i + MAX_TAGS])))
        for i in range(0, len(c.metrics), MAX_METRICS):
            records.append(Metrics(c.metrics[i:i + MAX_METRICS]))
        self._append(records)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self._append([Artifact(str(Path(path).resolve()), artifact_path)])

    def log_model(self, path: str, names, imgsz: int) -> None:
        """The run's model, logged by the uploader or by `sai-mlflow sync` (a run trained offline)."""
        names = {str(k): str(v) for k, v in (dict(enumerate(names)) if isinstance(names, list | tuple)
                                              else dict(names)).items()}
        self._append([Model(str(Path(path).resolve()), names, int(imgsz))])

    def terminate(self, status: str) -> None:
        """Record the status, then upload what is left within drain_timeout_s; never raises for the store."""
        if not self._status_written:
            self._append([Status(status, int(time.time() * 1000))])
            self._status_written = True
            if self.fsync:
                self.spool.sync_to_disk()
        done = self.wait_drained(self.drain_timeout_s) if self._up is not None else False
        self._stop = True
        self._stop_ev.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=0.5 if not done else 5.0)
        for path in self._up.missing if self._up is not None else []:
            self.report(f"sai_mlflow: artifact {path} no longer exists; not uploaded")
        if done and not (self._thread and self._thread.is_alive()):
            refused = self.spool.rejected()
            if refused:
                self.report(f"sai_mlflow: the store refused {len(refused)} item(s) for their content; they are kept "
                            f"in {self.spool.dir / 'rejected.jsonl'} (`sai-mlflow sync --dry-run` lists them)")
            if refused or os.environ.get(KEEP_ENV, "").lower() in ("1", "true", "yes"):
                self.spool.close()
            else:
                self.spool.remove()
            return
        self.spool.close()
        left = summarize(self.spool)
        where = ("offline" if self._up is None else
                 f"the tracking store did not take the run ({self.last_error})" if self.last_error else
                 "the tracking store is unreachable")
        self.report(f"sai_mlflow: {where}; run {self.run_id} kept {left.metrics} points and {left.records} "
                    f"records in {self.spool.dir} -- upload them with: sai-mlflow sync --run {self.run_id}")

    # --- helpers ---
    def _append(self, records: list) -> None:
        if not records:
            return
        with self._lock:
            for r in records:
                self.spool.append(r)

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
        wait = 0.0
        while not self._stop:
            if self._backoff.down:
                self._stop_ev.wait(wait)  # down: keep to the backoff, new appends do not hurry it
            else:
                self._wake.wait(self.upload_interval_s)
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
                error = str(e)[:300] if isinstance(e, StoreRefused) else f"{type(e).__name__}: {str(e)[:200]}"
                wait = self._backoff.failure(error, kind=error if isinstance(e, StoreRefused) else "outage")
                self.last_error = error
                continue
            self._backoff.success()
            self.last_error = ""
            with self._idle:
                self._idle.notify_all()
