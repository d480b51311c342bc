"""Where tracked data lands: one small protocol, an MLflow implementation and an in-memory one.

The publisher only sees `Sink`, so a durable local spool (write-ahead, replay with `sync`) can
wrap or replace `MlflowSink` without touching the trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from ..keys import sanitize_key
from .batching import MAX_PARAM_CHARS, log_batch_chunked

INF_NOTE_TAG = "sai.note.inf_clamped"

Point = tuple[str, float, int, int]  # (key, value, timestamp ms, step)


@dataclass
class Batch:
    metrics: list[Point] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.metrics or self.params or self.tags)

    def __len__(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags)

    def extend(self, other: "Batch") -> None:
        self.metrics.extend(other.metrics)
        self.params.update(other.params)
        self.tags.update(other.tags)


class Sink(Protocol):
    def write(self, batch: Batch) -> None: ...  # raises when the store refuses or cannot be reached

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None: ...

    def terminate(self, status: str) -> None: ...


def clean_param(value) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 1] + "…"


class MlflowSink:
    """Batched writes through an explicit MlflowClient and run id (no fluent globals)."""

    def __init__(self, client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self._noted_inf: set[str] = set()

    def write(self, batch: Batch) -> None:
        from mlflow.entities import Metric, Param, RunTag

        metrics, infinite = [], set()
        for k, v, ts, step in batch.metrics:
            key, value = sanitize_key(k), float(v)
            if math.isinf(value):
                infinite.add(key)  # SQL stores clamp to ±1.8e308: say so rather than let it pass unseen
            metrics.append(Metric(key, value, int(ts), int(step)))
        params = [Param(sanitize_key(k), clean_param(v)) for k, v in batch.params.items()]
        tags = [RunTag(sanitize_key(k), str(v)[:8000]) for k, v in batch.tags.items()]
        new_inf = infinite - self._noted_inf
        if new_inf:
            self._noted_inf |= new_inf
            tags.append(RunTag(INF_NOTE_TAG, "infinite values stored as ±1.8e308 for: " + ", ".join(sorted(self._noted_inf))))
        log_batch_chunked(self.client, self.run_id, metrics=metrics, params=params, tags=tags)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, path, artifact_path)

    def terminate(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


class MemorySink:
    """Keeps everything in lists: the fake that ships, for unit tests of the glue."""

    def __init__(self, fail: bool = False) -> None:
        self.metrics: list[Point] = []
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.artifacts: list[tuple[str, str | None]] = []
        self.status: str | None = None
        self.writes = 0
        self.fail = fail

    def write(self, batch: Batch) -> None:
        if self.fail:
            raise ConnectionError("memory sink set to fail")
        self.writes += 1
        self.metrics.extend(batch.metrics)
        self.params.update(batch.params)
        self.tags.update(batch.tags)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        if self.fail:
            raise ConnectionError("memory sink set to fail")
        self.artifacts.append((path, artifact_path))

    def terminate(self, status: str) -> None:
        if self.fail:
            raise ConnectionError("memory sink set to fail")
        self.status = status

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(step, v) for k, v, _, step in self.metrics if k == key]
