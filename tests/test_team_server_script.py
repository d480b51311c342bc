"""scripts/team_server.sh never reports a server it did not start (issue 17, item 3).

A real `mlflow server` (no auth, another owner) holds the port: `start` refuses before creating anything,
`status` does not say "up", and `stop` without a start says so.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers import ROOT, free_port

SCRIPT = str(ROOT / "scripts" / "team_server.sh")


def _run(env, *args):
    return subprocess.run([SCRIPT, *args], env=env, capture_output=True, text=True, timeout=120)


def _env(tmp_path, port):
    return {**os.environ, "SAI_TEAM_DIR": str(tmp_path / "team"), "SAI_TEAM_PORT": str(port),
            "SAI_TEAM_PG_PORT": str(free_port())}


def test_stop_without_a_start_says_so_and_creates_nothing(tmp_path):
    r = _run(_env(tmp_path, free_port()), "stop")
    assert r.returncode == 0 and "nothing to stop: no team server was started" in r.stdout, r.stdout + r.stderr
    assert not (tmp_path / "team").exists()


@pytest.mark.slow
def test_a_port_held_by_another_mlflow_server_is_refused_and_never_up(tmp_path, plain_server):
    other = plain_server  # a plain MLflow server: no basic auth, no PostgreSQL, not ours
    env = _env(tmp_path, other.port)
    r = _run(env, "start")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"port {other.port} is already held by another server" in r.stderr and "nothing was started" in r.stderr
    assert "admin login" not in r.stdout and "MLFLOW_TRACKING_PASSWORD" not in r.stdout
    assert not (tmp_path / "team").exists()  # no secrets, no database cluster
    # a team folder whose server is not running while the foreign one answers on its port
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "secrets.env").write_text("PG_PASSWORD=x\nADMIN_PASSWORD=y\nFLASK_KEY=z\n")
    r = _run(env, "status")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "mlflow server: up" not in r.stdout and "not this script's" in r.stdout
    assert "admin login" not in r.stdout
    r = _run(env, "stop")
    assert "no mlflow server started by this script is running" in r.stdout, r.stdout + r.stderr
    assert other.proc.poll() is None  # the foreign server is left alone
