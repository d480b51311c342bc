"""The MLflow store behind a tracking URI: its client, opened safely, and the checks that tell a
misconfiguration (exit 2) from an outage (spooled) in seconds. The URI itself is chosen in tracking/address.py.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import StoreConfigError
from ..redact import redact_text
from ..tracking.address import (
    DB_SCHEMES,
    OTHER_SCHEMES,
    TEAM_HINT,
    StoreMissing,
    artifact_root_for,
    http_refusal,
    not_mlflow,
    probe,
    scheme_of,
)

# A refused connection answers at once; this bounds a black-holed host or a server busy on its first request
# (a 4-worker server on a loaded 2-core box took over 3 s), so a slow answer is not called an outage.
STORE_CHECK_TIMEOUT_S = 10.0


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


def check_store(tracking_uri: str, timeout_s: float = STORE_CHECK_TIMEOUT_S) -> None:
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
