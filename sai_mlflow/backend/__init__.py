"""The tracking backend seam: everything sai_mlflow asks of a tracking store, in one interface.

MLflow is the implementation (`mlflow_*.py` in this room, the only place that imports mlflow, with the
CLI's error boundary). The rest of the package speaks `TrackingBackend` and `RunWriter`:

- runs: create (a new run, or the run `sync` makes of a run trained offline), get (attach: DDP worker,
  `--resume`), find by tag, reopen, where a resumed run's series go on;
- writing: one run's `RunWriter` takes a batch (metrics, params, tags), an artifact, the model and the
  final status. The spool (tracking/spool/) is a backend-neutral write-ahead log replayed through it, by
  the live uploader and by `sai-mlflow sync` alike;
- the dataset a run trained on, and its model (`log_model`; found again by `find_model` for promote);
- reading runs for compare-runs: `read_*.py` files in this room (the loader's fast paths);
- what the store offers (`capabilities`: an MLflow 2.x server has no logged models).

A second backend is one new room beside this one's files (docs/architecture.md): implement the
protocols below and register its URI schemes in `SCHEMES`.
"""

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


def backend_for(uri: str) -> TrackingBackend:
    """The backend for a tracking URI (today every URI is MLflow's). Checks the store first: a misconfigured
    one raises StoreConfigError (exit 2), an outage ConnectionError in seconds."""
    from .mlflow_backend import MlflowBackend

    return MlflowBackend(uri)


def writer_for(client, run_id: str) -> RunWriter:
    """The run writer for a backend, or for an MLflow client handed over directly (tests, older callers)."""
    if hasattr(client, "writer"):
        return client.writer(run_id)
    from .mlflow_write import RunWriter as MlflowRunWriter

    return MlflowRunWriter(client, run_id)


def http_status(error: BaseException) -> int | None:
    """The HTTP status a store's error stands for, else None (not the store's: an outage, a bug)."""
    from .mlflow_write import http_status as status

    return status(error)


def is_store_error(error: BaseException) -> bool:
    """The store answered with an error (as opposed to an outage or a bug in this process)."""
    from .mlflow_write import is_store_error as check

    return check(error)
