"""Ships tracked data to a Sink from a background thread, in batches.

The training thread only hands over references (collectors that read append-only lists, and
small epoch-end dicts); every store call happens here. Two cadences: `write_interval_s` (≤ 0.5 s
for the spooling sink, so a SIGKILL loses at most the last second of points) for the collectors and
hand-overs, and `interval_s` (the publish window, 5 s) for `window_collectors` that summarise a
window, such as its memory peak. A failing store never raises into
training: the first failure is reported once, the data stays queued and is retried with
backoff, and recovery is reported once too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..redact import redact_mapping
from .backoff import Backoff
from .sink import Batch, Sink

Collector = Callable[[], Batch]
Reporter = Callable[[str], None]

MAX_BACKOFF_S = 60.0


def redacted(batch: Batch) -> Batch:
    if not (batch.params or batch.tags):
        return batch
    return Batch(metrics=batch.metrics, params=redact_mapping(batch.params or {}),
                 tags=redact_mapping(batch.tags or {}))


class Publisher:
    def __init__(self, sink: Sink, collectors: list[Collector], interval_s: float = 5.0,
                 report: Reporter = print, write_interval_s: float | None = None,
                 window_collectors: list[Collector] | None = None) -> None:
        self.sink = sink
        self.collectors = collectors
        self.window_collectors = window_collectors or []
        self.interval_s = interval_s
        self.write_interval_s = min(interval_s, write_interval_s or interval_s)
        self._next_window = time.monotonic() + interval_s
        self.report = report
        self.pending = Batch()          # gathered but not yet acknowledged by the sink
        self.artifacts: list[tuple[str, str | None]] = []
        self.status: str | None = None  # terminal status to set once everything is written
        self._queued = Batch()          # handed over by the training thread
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._cycles = 0
        self._stopping = False
        self._next_try = 0.0
        self._backoff = Backoff(1.0, MAX_BACKOFF_S, report,
                                "sai_mlflow: writing the run's data locally failed ({error}); training continues, "
                                "the data is kept in memory and retried",
                                "sai_mlflow: writing the run's data locally is back after {seconds} s")
        self._thread = threading.Thread(target=self._run, name="sai-publisher", daemon=True)

    # --- training-thread side: cheap hand-overs ---------------------------------------------
    def start(self) -> Publisher:
        self._thread.start()
        return self

    def put(self, batch: Batch) -> None:
        """Hand over params/tags/metrics; secrets in params and tags are hidden here, before any store or spool."""
        batch = redacted(batch)
        with self._lock:
            self._queued.extend(batch)

    def put_artifact(self, path: str, artifact_path: str | None = None) -> None:
        with self._lock:
            self.artifacts.append((path, artifact_path))

    def flush(self, timeout: float = 10.0) -> bool:
        """Ask for a publish now and wait (bounded) until one full cycle has run."""
        with self._idle:
            target = self._cycles + 2  # the cycle in flight may have gathered before our data arrived
            self._wake.set()
            return self._idle.wait_for(lambda: self._cycles >= target or not self._thread.is_alive(), timeout)

    def close(self, status: str | None, timeout: float = 10.0) -> bool:
        """Write everything, set the terminal status, stop. True when the store took it all in time."""
        self.status = status
        self._stopping = True
        self._next_try = 0.0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            self._wake.set()
            self._thread.join(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
        return not self.has_backlog()

    def has_backlog(self) -> bool:
        return bool(self.pending) or bool(self._queued) or bool(self.artifacts) or self.status is not None

    # --- publisher thread ---------------------------------------------------------------------
    def _gather(self) -> None:
        collectors = list(self.collectors)
        now = time.monotonic()
        if self.window_collectors and (now >= self._next_window or self._stopping):
            collectors += self.window_collectors
            self._next_window = now + self.interval_s
        for collect in collectors:
            try:
                self.pending.extend(collect())
            except Exception as e:  # a collector bug must not stop shipping the rest
                self.report(f"sai_mlflow: a collector failed ({e!r}); its data is skipped this cycle")
        with self._lock:
            queued, self._queued = self._queued, Batch()
        self.pending.extend(queued)

    def _ship(self) -> None:
        if time.monotonic() < self._next_try:
            return
        try:
            if self.pending:
                self.sink.write(self.pending)
                self.pending = Batch()
            while self.artifacts:
                self.sink.log_artifact(*self.artifacts[0])
                self.artifacts.pop(0)
            if self._stopping and self.status is not None:
                self.sink.terminate(self.status)
                self.status = None
        except Exception as e:
            self._next_try = time.monotonic() + self._backoff.failure(f"{type(e).__name__}: {str(e)[:200]}")
            return
        self._backoff.success()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.write_interval_s)
            self._wake.clear()
            self._gather()
            self._ship()
            with self._idle:
                self._cycles += 1
                self._idle.notify_all()
            if self._stopping and not self.has_backlog():
                return
            if self._stopping:
                time.sleep(min(0.2, max(0.0, self._next_try - time.monotonic())))
