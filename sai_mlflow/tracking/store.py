"""Where runs are logged: the choice MLflow users expect, and the client for it.

`--tracking-uri`, else MLFLOW_TRACKING_URI, else the embedded default (sqlite under ./mlruns,
artifacts there too). Experiment: `--experiment`, else MLFLOW_EXPERIMENT_NAME, else the config's.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
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


def make_client(tracking_uri: str, create: bool = True):
    """An explicit MlflowClient (no fluent globals); creates ./mlruns for the embedded default.

    Any other store is checked first (`check_store`): a misconfiguration raises StoreConfigError with
    the fix, an outage ConnectionError in seconds, where MLflow's client would retry for minutes.
    `create=False` (commands that only read, or check before they run): a sqlite store that does not
    exist raises StoreMissing instead of being created, so a command that does not run creates nothing.
    """
    from mlflow.tracking import MlflowClient

    if not tracking_uri.startswith("sqlite:///"):
        check_store(tracking_uri)
        if "@" in tracking_uri:  # MLflow's client prints "View run at <URI>", user:password included
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        return MlflowClient(tracking_uri=tracking_uri)
    db = Path(tracking_uri[len("sqlite:///"):])
    if not create and not db.is_file():
        raise StoreMissing(f"no MLflow store at {tracking_uri} (nothing was logged there): run from the folder "
                           "that holds ./mlruns, or pass --tracking-uri (or MLFLOW_TRACKING_URI); nothing was created")
    if not _needs_init(db):  # an existing, current store is only opened: no lock, so a read-only one reads
        return MlflowClient(tracking_uri=tracking_uri)
    with _sqlite_init_lock(db):
        return MlflowClient(tracking_uri=tracking_uri)  # builds the store: creates or migrates the schema


def _needs_init(db: Path) -> bool:
    """True unless `db` is a sqlite store whose schema is MLflow's current one (read without writing)."""
    import sqlite3

    try:
        if db.stat().st_size == 0:
            return True
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            con.close()
    except (OSError, sqlite3.Error):
        return True
    try:
        from mlflow.store.db.utils import _get_latest_schema_revision

        return row is None or row[0] != _get_latest_schema_revision()
    except Exception:
        return True


@contextmanager
def _sqlite_init_lock(db: Path):
    """One process at a time creates or migrates a sqlite store.

    Eight processes opening a fresh store at once each ran MLflow's schema migration; all but one
    failed and the file was left half-migrated ("table _alembic_tmp_experiments already exists").
    A folder that cannot take the lock file (a read-only store) cannot be migrated from here either:
    MLflow then says what it needs.
    """
    import fcntl

    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = open(db.parent / f".{db.name}.init.lock", "a")
    except OSError:
        if not db.is_file():
            raise
        yield
        return
    with lock:
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


def check_store(tracking_uri: str, timeout_s: float = 3.0) -> None:
    """Refuse a misconfigured store before any work; tell an outage apart, in seconds.

    StoreConfigError (exit 2, never spooled): unknown scheme, missing driver, bad host name, refused
    login, HTTP 401/403, a server that is not MLflow (a wrong port or path). ConnectionError (an outage:
    `train` spools): connection refused, timeout, 5xx.
    """
    scheme = scheme_of(tracking_uri)
    if scheme in ("http", "https"):
        probe(tracking_uri, timeout_s)
        _check_http_login(tracking_uri, timeout_s)
    elif scheme in DB_SCHEMES:
        _check_database(tracking_uri, timeout_s)
    elif scheme not in OTHER_SCHEMES and scheme not in _mlflow_schemes():
        raise StoreConfigError(
            f"tracking URI {redact_text(tracking_uri)}: unknown scheme '{scheme}://'. Use postgresql://USER@HOST/DB, "
            "mysql+pymysql://…, sqlite:///PATH/mlflow.db or http(s)://SERVER (" + TEAM_HINT + ")")


def _mlflow_schemes() -> set[str]:
    try:  # the schemes MLflow itself has stores for (plugins included)
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        return {k.lower() for k in _tracking_store_registry._registry}
    except Exception:
        return set()


_DRIVER_FIX = {
    "postgresql": "pip install 'sai_mlflow[postgres]' (psycopg 3, what postgresql:// uses), or psycopg2-binary "
                  "for postgresql+psycopg2://",
    "mysql": "pip install pymysql and use mysql+pymysql://",
    "mssql": "pip install pyodbc",
}


def _check_database(uri: str, timeout_s: float) -> None:
    """One real connection with a short timeout (MLflow's own engine retries for ~100 s), classified."""
    import sqlalchemy as sa

    shown, scheme = redact_text(uri), scheme_of(uri)
    try:
        args = {"connect_timeout": max(1, int(timeout_s))} if scheme in ("postgresql", "mysql") else {}
        engine = sa.create_engine(uri, connect_args=args, poolclass=sa.pool.NullPool)
    except ImportError as e:
        raise StoreConfigError(f"tracking URI {shown}: the database driver is not installed ({e}): "
                               f"{_DRIVER_FIX.get(scheme, 'install the driver the URI names')}") from None
    except sa.exc.NoSuchModuleError:
        raise StoreConfigError(f"tracking URI {shown}: SQLAlchemy has no driver '{uri.split('://')[0]}': "
                               f"use {scheme}:// ({_DRIVER_FIX.get(scheme, '')})") from None
    except (sa.exc.ArgumentError, ValueError) as e:
        raise StoreConfigError(f"tracking URI {shown} is malformed ({redact_text(e)}): "
                               f"expected {scheme}://USER:PASSWORD@HOST:PORT/DATABASE") from None
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as e:
        raise _classify_db_error(shown, str(getattr(e, "orig", None) or e)) from None
    except Exception as e:
        raise ConnectionError(f"tracking database {shown} is unreachable ({redact_text(e)})") from None
    finally:
        engine.dispose()


_DB_CONFIG_ERRORS = (  # (substring of the driver's message, the fix)
    ("password authentication failed", "the database refused the login: check the user and password in the "
                                       "URI (or PGPASSWORD / ~/.pgpass)"),
    ("access denied for user", "the database refused the login: check the user and password in the URI"),
    ("login failed", "the database refused the login: check the user and password in the URI"),
    ("no pg_hba.conf entry", "the database does not accept this user from this host: add a pg_hba.conf line"),
    ("does not exist", "create it (createdb, or CREATE DATABASE / CREATE ROLE) or fix the name in the URI"),
    ("unknown database", "create it (CREATE DATABASE) or fix the name in the URI"),
    ("resolve host", "the host name does not resolve: fix the host in the URI"),
    ("could not translate host name", "the host name does not resolve: fix the host in the URI"),
    ("name or service not known", "the host name does not resolve: fix the host in the URI"),
    ("unknown mysql server host", "the host name does not resolve: fix the host in the URI"),
)


def _classify_db_error(shown: str, message: str) -> Exception:
    first = redact_text(message.strip().splitlines()[0] if message.strip() else message)
    low = message.lower()
    for needle, fix in _DB_CONFIG_ERRORS:
        if needle in low:
            return StoreConfigError(f"tracking database {shown}: {first.split('FATAL:')[-1].strip()}: {fix}")
    return ConnectionError(f"tracking database {shown} is unreachable ({first})")


def _check_http_login(uri: str, timeout_s: float) -> None:
    """One authenticated read, with MLflow's own credentials (MLFLOW_TRACKING_USERNAME/PASSWORD, token)."""
    from mlflow.tracking._tracking_service.utils import _get_store
    from mlflow.utils.rest_utils import http_request

    try:
        creds = _get_store(uri).get_host_creds()
        resp = http_request(creds, "/api/2.0/mlflow/experiments/search", "GET", max_retries=0,
                            backoff_factor=0, timeout=timeout_s, params={"max_results": 1})
    except Exception as e:
        raise ConnectionError(f"tracking server {redact_text(uri)} is unreachable ({redact_text(e)})") from None
    if resp.status_code in (401, 403):
        raise http_refusal(resp.status_code, uri)
    if resp.status_code < 500 and not _mlflow_answer(resp):
        raise not_mlflow(uri, resp)


def _mlflow_answer(resp) -> bool:
    """MLflow's REST API answers JSON: a result on 200, `{"error_code": …}` otherwise."""
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and (resp.status_code == 200 or "error_code" in body)


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


def get_or_create_experiment(client, name: str, artifact_location: str | None = None) -> str:
    """The experiment id for `name`, creating it when missing: artifacts at `artifact_location`, else beside
    a local store, else the server's default."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location
                                        or artifact_root_for(client.tracking_uri))
    except Exception:
        exp = client.get_experiment_by_name(name)  # another process created it first
        if exp is None:
            raise
        return exp.experiment_id
