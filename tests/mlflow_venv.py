"""A real MLflow server of another version, from its own virtualenv: created once with pip, cached between runs.

`server_python("2.22.5")` returns the venv's python (building it under ~/.cache/sai_mlflow/venvs/ on first use,
under a lock, so parallel test processes build it once); `VersionServer` runs `mlflow server` with it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import Server

CACHE = Path(os.environ.get("SAI_MLFLOW_VENV_CACHE") or Path.home() / ".cache" / "sai_mlflow" / "venvs")
EXTRA_PINS = {"2": ["sqlalchemy<2.1"]}  # MLflow 2.x fails at import with SQLAlchemy 2.1 (FIELD_NOTES)
READY = ".sai-ready"


def server_python(version: str) -> Path:
    venv = CACHE / f"mlflow-{version}"
    python = venv / "bin" / "python"
    if (venv / READY).exists():
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".mlflow-{version}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / READY).exists():
            shutil.rmtree(venv, ignore_errors=True)  # a build that died half-way
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pins = [f"mlflow=={version}", *EXTRA_PINS.get(version.split(".")[0], [])]
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
                           check=True, timeout=1800)
            (venv / READY).write_text(version + "\n")
    return python


class VersionServer(Server):
    """tests/helpers.Server, with `mlflow server` taken from another virtualenv's python."""

    def __init__(self, workdir: Path, python: Path) -> None:
        super().__init__(workdir)
        self.python = python
        self.mlflow = [str(python), "-m", "mlflow"]
        self.drop_env = ("PYTHONPATH",)  # the server imports its own MLflow, never this tree's packages

    def start(self, timeout: float = 180) -> None:
        super().start(timeout)
