"""Shared fixtures: real synthetic datasets and real MLflow stores in temp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import SEED, fresh_sqlite_store

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the lent H200)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A small real fire/smoke dataset (data.yaml path); shared read-only across tests."""
    from sai_mlflow.data.synthetic import SyntheticSpec, generate

    return generate(tmp_path_factory.mktemp("synthetic"), SyntheticSpec(train=32, val=8, width=96, height=64))


@pytest.fixture
def sqlite_uri(tmp_path) -> str:
    """A fresh real sqlite MLflow store."""
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory) -> Path:
    """An empty MLflow sqlite store built once per session: its schema migration costs seconds on 2 cores.

    Copy it (`fresh_sqlite_store`); never write to it.
    """
    from sai_mlflow.tracking.store import make_client

    db = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    make_client(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture(scope="session")
def seed_store(tmp_path_factory, empty_mlflow_db):
    """The seed's history (experiment sai-net-stage1, 3 runs) imported once per session: (its folder, the import
    results). Thousands of points each; tests get their own copy (`copy_store`), never write here."""
    from sai_mlflow.importers.history_file import import_history_file
    from sai_mlflow.tracking.store import make_client

    folder = tmp_path_factory.mktemp("seed_store")
    uri = fresh_sqlite_store(f"sqlite:///{folder / 'mlflow.db'}", empty_mlflow_db)
    return folder, import_history_file(make_client(uri), SEED)


@pytest.fixture
def client(sqlite_uri, empty_mlflow_db):
    """A client on `sqlite_uri`, the store copied from the session's empty one (same schema, no migration)."""
    from sai_mlflow.tracking.store import make_client

    return make_client(fresh_sqlite_store(sqlite_uri, empty_mlflow_db))


PG_PASSWORD = "pgS3cret-4f1d9b"  # a real password: the team tests grep everything for it


@pytest.fixture(scope="session")
def pg():
    """A private PostgreSQL cluster on a free 127.0.0.1 port (binaries installed with apt when missing)."""
    from helpers import free_port
    from pg import PgCluster

    cluster = PgCluster(free_port(), PG_PASSWORD)
    cluster.init()
    cluster.start()
    yield cluster
    cluster.destroy()


def _up(srv):
    """`srv`, started if it is not running (first use, or a test left it down)."""
    if srv.proc is None or srv.proc.poll() is not None:
        srv.kill()
        srv.start()
    return srv


@pytest.fixture(scope="session")
def _session_server(tmp_path_factory):
    from helpers import Server

    srv = Server(tmp_path_factory.mktemp("plain_server"))
    yield srv
    srv.kill()


@pytest.fixture
def plain_server(_session_server):
    """A plain `mlflow server` (sqlite, no login) shared by the tests that only need "a server" (a start is seconds
    on 2 cores): each test writes in its own experiment and leaves the server running; started again if not."""
    return _up(_session_server)


@pytest.fixture(scope="module")
def module_plain_server(_session_server):
    """`plain_server` for a module-scoped fixture."""
    return _up(_session_server)
