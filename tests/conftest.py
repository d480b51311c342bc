"""Shared fixtures: real synthetic datasets and real MLflow stores in temp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


@pytest.fixture
def client(sqlite_uri):
    from sai_mlflow.tracking.store import make_client

    return make_client(sqlite_uri)


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
