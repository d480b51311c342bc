"""Where runs are logged, decided without touching the store: the choice MLflow users expect, and what a
store's refusal means in one line.

`--tracking-uri`, else MLFLOW_TRACKING_URI, else the embedded default (sqlite under ./mlruns,
artifacts there too). Experiment: `--experiment`, else MLFLOW_EXPERIMENT_NAME, else the config's.
The store's client and its checks are the backend's (backend/mlflow_store.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoreConfigError
from ..redact import redact_text, without_credentials

DEFAULT_EXPERIMENT = "sai-mlflow"
DB_SCHEMES = ("postgresql", "mysql", "mssql")  # sqlite is local: its errors are immediate
OTHER_SCHEMES = ("", "file", "sqlite", "http", "https", "databricks", "databricks-uc", "uc")
TEAM_HINT = "see docs/team.md, or start one with scripts/team_server.sh"


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


def with_credentials(uri: str) -> str:
    """A redacted URI (e.g. from a spool's meta.json) with its password back, when MLFLOW_TRACKING_URI is
    the same URI with one; otherwise as it is (libpq then reads PGPASSWORD or ~/.pgpass)."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    return env if env and env != uri and without_credentials(env) == uri else uri


def scheme_of(tracking_uri: str) -> str:
    """`postgresql+psycopg2://…` -> `postgresql`; a bare path -> ``."""
    head = tracking_uri.split("://", 1)[0] if "://" in tracking_uri else ""
    return head.split("+", 1)[0].lower()


class StoreMissing(StoreConfigError):
    """A reading command pointed at a sqlite store that does not exist: it is not created (exit 2)."""


def probe(tracking_uri: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds, not minutes, when an HTTP tracking server is down (MLflow's client retries ~4 min).

    Raises ConnectionError with the reason; a local store needs no probe (its errors are immediate).
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    parts = urlsplit(tracking_uri)  # no user:password@ in the health URL (and none in messages)
    tracking_uri = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            if r.status >= 500:
                raise ConnectionError(f"{url} answered HTTP {r.status}")
    except urllib.error.HTTPError as e:
        if e.code >= 500:
            raise ConnectionError(f"{url} answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ConnectionError(f"tracking server {tracking_uri} is unreachable ({getattr(e, 'reason', e)})") from None


def not_mlflow(uri: str, resp) -> StoreConfigError:
    """Something that is not an MLflow tracking server answered (a wrong port or path): one line, no page."""
    kind = (resp.headers.get("content-type") or "no content type").split(";")[0].strip()
    server = resp.headers.get("server")
    what = f"HTTP {resp.status_code}, {kind}" + (f", server '{redact_text(server)[:80]}'" if server else "")
    return StoreConfigError(
        f"tracking URI {redact_text(uri)}: what answered is not an MLflow tracking server (its REST API "
        f"/api/2.0/mlflow/experiments/search gave {what}): check the host, port and path ({TEAM_HINT})")


def http_refusal(status: int, uri: str, what: str = "") -> StoreConfigError:
    """401: who you are; 403: what you may not do. One line naming the fix."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or (urlsplit(uri).username if uri else None)
    server = f"the tracking server {redact_text(uri)}" if uri else "the tracking server"
    if status == 401:
        who = f"user '{user}'" if user else "no user"
        return StoreConfigError(
            f"{server} did not accept the login (HTTP 401, {who}): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of that server")
    return StoreConfigError(
        f"{server} refused {what or 'this'} to user '{user}' (HTTP 403, permission "
        "denied): ask its admin for the permission (docs/team.md, users and permissions)")


def config_error(error: BaseException, uri: str, what: str = "") -> StoreConfigError | None:
    """A StoreConfigError for an MLflow 401/403 met mid-command; None for anything else."""
    if isinstance(error, StoreConfigError):
        return error
    code = str(getattr(error, "error_code", ""))
    if code == "UNAUTHENTICATED":
        return http_refusal(401, uri, what)
    if code == "PERMISSION_DENIED":
        return http_refusal(403, uri, what)
    return None


def artifact_warning(tracking_uri: str, artifact_location: str | None) -> str | None:
    """A database URI whose experiment keeps artifacts on this machine's disk: no teammate can reach them."""
    if scheme_of(tracking_uri) not in DB_SCHEMES or not artifact_location:
        return None
    if scheme_of(artifact_location) not in ("", "file"):
        return None
    return (f"artifacts (weights, tables, plots) go to {artifact_location} on this machine, which teammates "
            "cannot reach: set tracking.artifact_location (e.g. s3://bucket/sai-mlflow) for new experiments, "
            f"or log through an mlflow server with --artifacts-destination ({TEAM_HINT})")


