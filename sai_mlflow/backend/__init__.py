"""The tracking backend seam: everything sai_mlflow asks of a tracking store, in one interface.

MLflow is the implementation (`mlflow_*.py` in this room, the only place that imports mlflow, with the
CLI's error boundary). The rest of the package speaks `TrackingBackend` and `RunWriter`:

- runs: create (a new run, or the run `sync` makes of a run trained offline), get (attach: DDP worker,
  `--resume`), find by tag, reopen, where a resumed run's series go on;
- writing: one run's `RunWriter` takes a batch (metrics, params, tags), an artifact, the model and the
  final status. The spool (tracking/spool/) is a backend-neutral write-ahead log replayed through it, by
  the live uploader and by `sai-mlflow sync` alike;
- the dataset a run trained on, and its model (`log_model`; found again by `find_model` for promote);
- reading runs for compare-runs: `read_*.py` files in this room (`read_api.py` is the reader interface;
  SQL, REST and the MLflow client behind it: the loader's fast paths);
- what the store offers (`capabilities`: an MLflow 2.x server has no logged models);
- the store itself: its client, opened safely, and the checks that tell a misconfiguration from an outage
  (`mlflow_store.py`; `tracking/store.py` is the one import for the commands); the run-context tags MLflow's
  fluent API would add (`source_tags`); plain records written by one-off writers (`log_records`: the importers,
  the verdict, the probe's projection; training goes through the spool and a `RunWriter`).

A second backend is one new room (docs/architecture.md): implement the protocols of interface.py and let
`backend_for` choose it by the URI's scheme.
"""

from __future__ import annotations

from .interface import RunRef, RunWriter, TrackingBackend

__all__ = ["RunRef", "RunWriter", "TrackingBackend", "backend_for", "http_status", "is_store_error", "log_records",
           "source_tags", "writer_for"]


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


def source_tags(tags: dict[str, str] | None = None) -> dict[str, str]:
    """`tags` plus the run-context tags (user, source, git commit) the store's own client would add; never raises."""
    from .mlflow_context import source_tags as with_context

    return with_context(tags)


def log_records(client, run_id: str, metrics=(), params: dict | None = None, tags: dict | None = None) -> int:
    """Plain records into one run through the store's client, in requests the store accepts (call count).
    metrics: (key, value, timestamp ms, step); params and tags: text by key."""
    from .mlflow_write import log_records as log

    return log(client, run_id, metrics, params, tags)
