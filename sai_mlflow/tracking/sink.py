"""Where tracked data lands: one small protocol and an in-memory implementation for tests.

The publisher only sees `Sink`; the tracker plugs in the write-ahead `SpoolingSink` (tracking/spool/),
tests plug in `MemorySink`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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

    def extend(self, other: Batch) -> None:
        self.metrics.extend(other.metrics)
        self.params.update(other.params)
        self.tags.update(other.tags)


class Sink(Protocol):
    def write(self, batch: Batch) -> None: ...  # raises when the store refuses or cannot be reached

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None: ...

    def terminate(self, status: str) -> None: ...


class MemorySink:
    """Keeps everything in lists: the fake that ships, for unit tests of the glue."""

    def __init__(self, fail: bool = False) -> None:
        self.metrics: list[Point] = []
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.artifacts: list[tuple[str, str | None]] = []
        self.status: str | None = None
        self.fail = fail

    def write(self, batch: Batch) -> None:
        if self.fail:
            raise ConnectionError("memory sink set to fail")
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
