"""The tracking backend's interface (backend/__init__.py says what it covers): the run a store returns,
the writer the spool replays into, and the backend itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class RunRef:
    """A run as the store has it: enough to attach to it, resume it and link to it."""

    run_id: str
    experiment_id: str
    status: str = "RUNNING"
    deleted: bool = False
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class RunWriter(Protocol):
    """What the spool replays into one run. Every call raises when the store refuses or cannot be reached;
    the caller (the spool's uploader) keeps the record pending and backs off."""

    run_id: str
    missing: list[str]  # artifact files gone from disk before they could be uploaded

    def log_batch(self, metrics: list, params: dict[str, str], tags: dict[str, str]) -> None: ...

    def log_artifact(self, path: str, artifact_path: str | None) -> None: ...

    def log_model(self, path: str, names: dict, imgsz: int) -> None: ...

    def terminate(self, status: str, end_ms: int | None) -> None: ...


class TrackingBackend(Protocol):
    uri: str
    client: object  # the store's own client, for what is not behind the seam yet

    def create_run(self, experiment: str, run_name: str | None, tags: dict[str, str],
                   artifact_location: str | None = None, start_ms: int | None = None) -> RunRef: ...

    def get_run(self, run_id: str) -> RunRef | None: ...  # None: no such run in this store

    def find_run(self, experiment: str, tag: str, value: str) -> str | None: ...

    def reopen(self, run_id: str) -> None: ...

    def next_steps(self, run_id: str, keys: tuple[str, ...]) -> tuple[int, ...]: ...

    def writer(self, run_id: str) -> RunWriter: ...

    def log_dataset(self, run_id: str, name: str, digest: str, source: str) -> None: ...

    def log_model(self, run_id: str, weights: str, names, imgsz: int, **details) -> str: ...

    def find_model(self, run_id: str) -> str: ...
