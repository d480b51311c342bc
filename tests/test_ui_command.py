"""`sai-mlflow ui`: MLflow's own UI on the resolved store, and an entry link that opens it in model-training mode.

A real `sai-mlflow ui` (which runs `mlflow ui`) on a real sqlite store holding the seed's imported runs, opened
in headless Chromium (Debian's `chromium`, installed with apt-get when absent) through the printed link: the
sidebar shows the Model registry and the experiment is listed. The same UI opened without the link's
parameter is in MLflow's GenAI mode (no Model registry), which is why the link matters. For an http(s)
tracking URI nothing is started: the server's own address is printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, chromium, cli_in_process, free_port, fresh_sqlite_store, run_cli

SEED = ROOT / "configs" / "history" / "seed_2024-08.yaml"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_server_uri_prints_its_address_and_starts_nothing(tmp_path):
    proc = run_cli("ui", "--tracking-uri", "http://alice:pw-9f3@mlflow.team:5000/", cwd=tmp_path,
                   env={"SAI_MLFLOW_UI_URL": ""}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "open: http://mlflow.team:5000/#/experiments?workflowType=machine_learning" in proc.stdout
    assert "pw-9f3" not in proc.stdout + proc.stderr and not (tmp_path / "mlruns").exists()


def test_busy_port_is_refused(tmp_path, empty_mlflow_db):
    import socket

    uri = fresh_sqlite_store(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", empty_mlflow_db)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = cli_in_process("ui", "--port", str(port), "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("Error:") == 1 and f"--port {port}" in proc.stderr


def test_a_folder_without_a_store_is_named_and_nothing_is_created(tmp_path):
    proc = cli_in_process("ui", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    assert proc.returncode == 2 and proc.stderr.count("Error:") == 1, proc.stderr
    assert "no MLflow store at sqlite:///" in proc.stderr and list(tmp_path.iterdir()) == []


def dom_of(exe: str, url: str, profile: Path, ready) -> str:
    dom = ""
    for budget in (15000, 30000, 60000):
        dom = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}-{budget}", "--window-size=1600,1400",
                              f"--virtual-time-budget={budget}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=180).stdout
        if ready(dom):
            break
    return dom


@pytest.mark.slow
def test_ui_serves_the_store_and_the_entry_link_opens_model_training(tmp_path):
    exe = chromium()
    assert cli_in_process("import-history", str(SEED), cwd=tmp_path).returncode == 0  # ./mlruns, the default
    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "sai_mlflow.cli", "ui", "--port", str(port)], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        link = None
        deadline = time.monotonic() + 300
        while link is None and time.monotonic() < deadline:
            line = ui.stdout.readline()
            assert line or ui.poll() is None, "sai-mlflow ui ended before printing its link"
            if line.startswith("open: "):
                link = line.split(" ", 1)[1].strip()
        assert link == f"http://127.0.0.1:{port}/#/experiments?workflowType=machine_learning"
        dom = dom_of(exe, link, tmp_path / "p1", lambda d: "sai-net-stage1" in d)
        assert "sai-net-stage1" in dom and "Model registry" in dom  # model-training mode
        plain = dom_of(exe, link.split("?")[0], tmp_path / "p2", lambda d: "sai-net-stage1" in d)
        assert "sai-net-stage1" in plain and "Model registry" not in plain  # MLflow's own default: GenAI mode
    finally:
        os.killpg(ui.pid, signal.SIGTERM)  # sai-mlflow ui stops the mlflow processes it started
        ui.wait(60)
