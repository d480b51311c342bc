"""Tracking settings through the environment (the DDP hand-over) and where runs are logged."""

from __future__ import annotations

import os
import time

import pytest

from sai_mlflow.tracking.settings import TrackingSettings, environment
from sai_mlflow.tracking.store import artifact_root_for, make_client, probe, resolve_experiment, resolve_tracking_uri
from tests.helpers import free_port


def test_settings_survive_the_environment_round_trip(monkeypatch):
    s = TrackingSettings(tracking_uri="sqlite:////tmp/x.db", experiment="e", run_id="abc", stage="1",
                         memory_interval_s=0.25, log_model=False)
    with environment(s):
        back = TrackingSettings.from_env()
    assert back == s


def test_environment_restores_what_was_there(monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "outer")
    with environment(TrackingSettings(experiment="inner")):
        pass
    assert os.environ["MLFLOW_EXPERIMENT_NAME"] == "outer"


def test_where_runs_go(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////env.db")
    assert resolve_tracking_uri() == "sqlite:////env.db" and resolve_tracking_uri("http://h:1") == "http://h:1"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    assert resolve_experiment(None, "cfg") == "from-env" and resolve_experiment("cli", "cfg") == "cli"
    assert artifact_root_for(f"sqlite:///{tmp_path}/m/mlflow.db") == (tmp_path / "m" / "artifacts").as_uri()


def test_make_client_creates_the_embedded_store(tmp_path):
    client = make_client(f"sqlite:///{tmp_path}/new/mlflow.db")
    assert client.search_experiments() and (tmp_path / "new" / "mlflow.db").is_file()


def test_a_dead_server_is_refused_in_seconds():
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="unreachable"):
        probe(f"http://127.0.0.1:{free_port()}")
    assert time.monotonic() - t0 < 10
