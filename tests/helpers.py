"""Helpers shared by the tests that drive the real `sai-mlflow` command."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLFLOW = str(Path(sys.executable).parent / "mlflow")
SEED = ROOT / "configs" / "history" / "seed_2024-08.yaml"  # the seed's history: judged runs without training
EPOCHS, BATCH = 3, 8


def run_cli(*args, cwd, env=None, timeout=600, drop_env=()):
    """`sai-mlflow ARGS` in a child process; `drop_env`: variables the child must not inherit."""
    full_env = {k: v for k, v in {**os.environ, "YOLO_OFFLINE": "1", **(env or {})}.items() if k not in drop_env}
    return subprocess.run([sys.executable, "-m", "sai_mlflow.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# Ultralytics' own MLflow callback returns early when it sees pytest (PYTEST_CURRENT_TEST): a child that must
# behave as a user's process runs without it.
AS_A_USER = ("PYTEST_CURRENT_TEST",)


def smoke_args(tmp: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"),
            "--set", f"data={data}", "--set", f"epochs={EPOCHS}", "--set", f"batch={BATCH}",
            "--set", "imgsz=64", "--set", f"project={tmp / 'runs'}", "--set", "tracking.publish_interval_s=1",
            *extra]


def fresh_sqlite_store(uri: str, template: Path) -> str:
    """Put a copy of the empty template store at a sqlite URI's path (unless a store is there already)."""
    db = Path(uri[len("sqlite:///"):])
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, db)
    return uri



def copy_store(folder: Path, dest: Path) -> str:
    """A copy of a sqlite store's folder (database and artifacts) at `dest`; the copy's runs and experiments keep
    their artifacts in the copy. Returns its URI."""
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns(".*.init.lock"))
    con = sqlite3.connect(dest / "mlflow.db")
    try:
        with con:
            for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
                con.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                            (folder.resolve().as_uri() + "/", dest.resolve().as_uri() + "/"))
                left = con.execute(f"SELECT {column} FROM {table} WHERE {column} LIKE ?",
                                   (f"%{folder.resolve()}/%",)).fetchall()
                assert not left, left  # every artifact location of the copy is in the copy
    finally:
        con.close()
    return f"sqlite:///{dest / 'mlflow.db'}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real `mlflow server --workers 1` on loopback; `app_name="basic-auth"` for MLflow's auth app."""

    def __init__(self, workdir: Path, app_name: str | None = None, admin_password: str = "",
                 extra_args: tuple[str, ...] = (), env: dict | None = None) -> None:
        self.dir = workdir
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.app_name = app_name
        self.admin_password = admin_password
        self.extra_args, self.env = tuple(extra_args), dict(env or {})
        self.mlflow: list[str] = [MLFLOW]  # the `mlflow` command (another version: its venv's python -m mlflow)
        self.drop_env: tuple[str, ...] = ()

    def login_uri(self, user: str | None = "admin", password: str | None = None) -> str:
        """The server's URI with `user:password@` in it (MLflow's client accepts that form); None: no login."""
        pw = self.admin_password if password is None else password
        return self.uri.replace("http://", f"http://{user}:{pw}@") if user else self.uri

    def _auth_env(self) -> dict[str, str]:
        ini = self.dir / "auth.ini"
        ini.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{self.dir / 'auth.db'}\n"
                       f"admin_username = admin\nadmin_password = {self.admin_password}\n"
                       "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                       # as scripts/team_server.sh: a login checked once a minute, not its scrypt hash per request
                       # (a wrong password is never cached: it is checked, and refused, every time)
                       "auth_cache_ttl_seconds = 60\n")
        return {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-secret"}

    def start(self, timeout: float = 120) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
               **(self._auth_env() if self.app_name == "basic-auth" else {}), **self.env}
        for name in self.drop_env:
            env.pop(name, None)
        app = ["--app-name", self.app_name] if self.app_name else []
        self.proc = subprocess.Popen(
            [*self.mlflow, "server", *app, "--backend-store-uri", f"sqlite:///{self.dir / 'mlflow.db'}",
             "--default-artifact-root", str(self.dir / "artifacts"), "--workers", "1",
             "--host", "127.0.0.1", "--port", str(self.port), *self.extra_args],
            stdout=open(self.dir / "server.log", "ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("mlflow server did not start: " + (self.dir / "server.log").read_text()[-2000:])

    def kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None


class _CurrentStdout:
    """Writes to whatever `sys.stdout` is at the time of the write (a logging handler's stream)."""

    def write(self, text):
        return sys.stdout.write(text)

    def flush(self):
        sys.stdout.flush()


@contextlib.contextmanager
def isolated_globals():
    """What a command may change in its process, saved and put back: the environment, the working folder,
    MLflow's tracking/registry URI and active run, the servers' capabilities cached per URI. And Ultralytics' log
    handler, bound at import to the stdout of that time, follows the current stdout meanwhile: in a real
    `sai-mlflow` process Ultralytics is imported inside the command, so its lines go through the command's
    redacted stdout."""
    env, cwd = dict(os.environ), os.getcwd()
    tracking = sys.modules.get("mlflow.tracking._tracking_service.utils")
    registry = sys.modules.get("mlflow.tracking._model_registry.utils")
    uris = getattr(tracking, "_tracking_uri", None), getattr(registry, "_registry_uri", None)
    handlers = [h for h in logging.getLogger("ultralytics").handlers
                if isinstance(h, logging.StreamHandler) and h.name == "ultralytics.utils.set_logging"]
    streams = [h.setStream(_CurrentStdout()) for h in handlers]
    server_caps = sys.modules.get("sai_mlflow.backend.mlflow_server")  # a server's version, cached per URI
    caps = dict(server_caps._cache) if server_caps is not None else {}
    if server_caps is not None:
        server_caps._cache.clear()  # asked afresh, as a new process would (a port may serve another version now)
    try:
        yield
    finally:
        server_caps = sys.modules.get("sai_mlflow.backend.mlflow_server")
        if server_caps is not None:
            server_caps._cache.clear()
            server_caps._cache.update(caps)
        for h, stream in zip(handlers, streams):
            h.setStream(stream)
        fluent = sys.modules.get("mlflow.tracking.fluent")
        while fluent is not None and fluent.active_run() is not None:  # a run a failed command left open
            fluent.end_run("KILLED")
        if tracking is not None:
            tracking._tracking_uri = uris[0]
        if registry is not None:
            registry._registry_uri = uris[1]
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)


def cli_in_process(*args, cwd, env=None, timeout=None, drop_env=(), command=None):
    """`sai-mlflow ARGS` run in this process by click's CliRunner: the same command, exit code, stdout and stderr
    as `run_cli` (an exception that escapes prints its traceback to stderr, as Python would), without a new
    interpreter importing MLflow, Ultralytics and torch again (seconds of CPU each). For tests where the process
    boundary is not what is tested. `command`: another entry point (the standalone `compare-runs`); `timeout` is
    accepted for `run_cli`'s signature and not enforced. Returns a CompletedProcess like `run_cli`."""
    import traceback

    from click.testing import CliRunner

    if command is None:
        from sai_mlflow.cli import cli as command

    child_env = {"YOLO_OFFLINE": "1", **(env or {}), **{name: None for name in drop_env}}
    with isolated_globals():
        os.chdir(cwd)
        r = CliRunner().invoke(command, [str(a) for a in args], env=child_env)
    stderr = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*r.exc_info))
    return subprocess.CompletedProcess(list(args), r.exit_code, r.stdout, stderr)


def chromium() -> str:
    """Debian's chromium for the browser tests; installed here when absent (root, apt), so CI needs nothing else."""
    import shutil

    import pytest

    if not shutil.which("chromium") and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
                       shell=True, capture_output=True, timeout=1200)
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is missing and apt-get could not install it: `apt-get install -y chromium` as root")
    return path
