"""`ui`: how to look. MLflow's own UI on the resolved store, and the link that opens it in model-training mode.

MLflow 3.17's UI starts in GenAI mode (traces, no runs, no Model registry in the sidebar) unless the route carries
`?workflowType=machine_learning`; the entry link printed here carries it. MLflow itself is not changed: for a
local store this runs `mlflow ui` (one worker) until Ctrl-C; an http(s) tracking server already serves its UI,
so only its address is printed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import click

from .boundary import UsageError

MODE_HINT = ("it opens in model-training mode; the UI's own default is GenAI mode (no runs, no Model registry): "
             "click 'Model training' once there and this browser keeps it")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _wait_up(url: str, proc: subprocess.Popen, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return True
        except OSError:
            time.sleep(0.3)
    return False


@click.command("ui")
@click.option("--tracking-uri", default=None, help="else MLFLOW_TRACKING_URI, else sqlite under ./mlruns")
@click.option("--host", default="127.0.0.1", show_default=True, help="interface for a local UI")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="port for a local UI")
@click.option("--ui-url", default=None, help="a server's UI address, when it is not the tracking URI's")
def ui(tracking_uri, host, port, ui_url) -> None:
    """Open MLflow's UI on the runs: serve a local store (until Ctrl-C), or print a tracking server's address."""
    from ..redact import redact_text
    from ..tracking.store import make_client, resolve_tracking_uri
    from ..ui_links import experiments_url, server_base, ui_base

    uri = resolve_tracking_uri(tracking_uri)
    if server_base(uri):
        base = ui_base(ui_url, uri)
        click.echo(f"the tracking server serves the MLflow UI at {base}")
        click.echo(f"open: {experiments_url(base)}")
        click.echo(f"({MODE_HINT})")
        return
    make_client(uri, create=False)  # a store that is not there is named (nothing created), a wrong one refused
    if not _port_free(host, port):
        raise UsageError(f"--port {port}: something already listens on {host}:{port}; "
                         f"choose another, e.g. --port {port + 1}")
    base = f"http://{host}:{port}"
    cmd = [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": uri}  # not on the command line: a password stays out of `ps`
    click.echo(f"starting the MLflow UI on {redact_text(uri)} (Ctrl-C stops it)", err=True)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)  # own group: Ctrl-C or SIGTERM here stops it all
    old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if not _wait_up(base, proc, 180):
            raise UsageError(f"the MLflow UI did not start on {base} (exit code {proc.poll()}); see its messages above")
        click.echo(f"MLflow UI: {base}")
        click.echo(f"open: {experiments_url(base)}", color=False)
        click.echo(f"({MODE_HINT})")
        sys.stdout.flush()
        sys.exit(proc.wait())
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        _stop(proc)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop(proc: subprocess.Popen) -> None:
    """The UI and the server processes it started (one process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


COMMANDS = [ui]
