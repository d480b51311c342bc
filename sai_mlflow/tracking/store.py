"""Where runs are logged: the choice MLflow users expect, and the client for it.

`--tracking-uri`, else MLFLOW_TRACKING_URI, else the embedded default (sqlite under ./mlruns,
artifacts there too). Experiment: `--experiment`, else MLFLOW_EXPERIMENT_NAME, else the config's.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

DEFAULT_EXPERIMENT = "sai-mlflow"


def default_tracking_uri(base: str | Path = "mlruns") -> str:
    db = Path(base).resolve() / "mlflow.db"
    return f"sqlite:///{db}"


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    return cli_value or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def resolve_experiment(cli_value: str | None = None, config_value: str | None = None) -> str:
    return cli_value or os.environ.get("MLFLOW_EXPERIMENT_NAME") or config_value or DEFAULT_EXPERIMENT


def artifact_root_for(tracking_uri: str) -> str | None:
    """For a local sqlite store, keep artifacts beside the database; others use the server's default."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / "artifacts").resolve().as_uri()
    return None


def make_client(tracking_uri: str):
    """An explicit MlflowClient (no fluent globals); creates ./mlruns for the embedded default.

    An HTTP server is probed first: when it is down this raises ConnectionError in seconds, where the
    client's first call would retry for ~4 minutes.
    """
    from mlflow.tracking import MlflowClient

    if not tracking_uri.startswith("sqlite:///"):
        probe(tracking_uri)
        if "@" in tracking_uri:  # MLflow's client prints "View run at <URI>", user:password included
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        return MlflowClient(tracking_uri=tracking_uri)
    with _sqlite_init_lock(Path(tracking_uri[len("sqlite:///"):])):
        return MlflowClient(tracking_uri=tracking_uri)  # builds the store: creates or migrates the schema


@contextmanager
def _sqlite_init_lock(db: Path):
    """One process at a time creates or migrates a sqlite store.

    Eight processes opening a fresh store at once each ran MLflow's schema migration; all but one
    failed and the file was left half-migrated ("table _alembic_tmp_experiments already exists").
    """
    import fcntl

    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.parent / f".{db.name}.init.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def probe(tracking_uri: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds, not minutes, when an HTTP tracking server is down (MLflow's client retries ~4 min).

    Raises ConnectionError with the reason; a local store needs no probe (its errors are immediate).
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    from ..redact import without_credentials

    shown = without_credentials(tracking_uri)  # /health needs no login; a `user:pw@` URI works as in MLflow's client
    url = shown.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            if r.status >= 500:
                raise ConnectionError(f"{url} answered HTTP {r.status}")
    except urllib.error.HTTPError as e:
        if e.code >= 500:
            raise ConnectionError(f"{url} answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ConnectionError(f"tracking server {shown} is unreachable ({getattr(e, 'reason', e)})") from None


def get_or_create_experiment(client, name: str) -> str:
    """The experiment id for `name`, creating it (artifacts beside a local store) when missing."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root_for(client.tracking_uri))
    except Exception:
        exp = client.get_experiment_by_name(name)  # another process created it first
        if exp is None:
            raise
        return exp.experiment_id
