"""Misconfigured stores refused before anything starts; a read-only store read again (issue 17, item 3).

Real parts: a real `python -m http.server` and a real `mlflow server` answering a wrong path at the
tracking URI; a real sqlite store behind a read-only mount (`unshare -m`, FIELD_NOTES' recipe).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers import ROOT, cli_in_process, free_port

from sai_mlflow import keys as K

SMOKE = str(ROOT / "configs" / "cpu_smoke.yaml")


@pytest.fixture
def plain_http(tmp_path):
    """A real HTTP server that is not MLflow (a directory listing), on a free loopback port."""
    port = free_port()
    (tmp_path / "site").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            cwd=tmp_path / "site", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def _refused(r, uri: str, what: str) -> None:
    assert r.returncode == 2, (r.stdout[-1500:], r.stderr[-1500:])
    errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, r.stderr[-2000:]
    assert uri in errors[0] and "not an MLflow tracking server" in errors[0] and what in errors[0]
    text = (r.stdout + r.stderr).lower()
    assert "<html" not in text and "<!doctype" not in text and "traceback" not in text


def _nothing_trained(tmp_path) -> None:
    assert not (tmp_path / "runs").exists()            # no training started
    assert not (tmp_path / "mlruns").exists()          # no spool, no local store


def _train(tmp_path, data, uri):
    return cli_in_process("train", "--config", SMOKE, "--set", f"data={data}", "--set", "imgsz=64", "--set", "epochs=1",
                          "--set", f"project={tmp_path / 'runs'}", "--tracking-uri", uri, cwd=tmp_path)


@pytest.mark.slow
def test_a_plain_http_server_is_refused_by_train_and_compare_runs(tmp_path, synthetic_data, plain_http):
    r = _train(tmp_path, synthetic_data, plain_http)
    _refused(r, plain_http, "SimpleHTTP")  # what answered: Python's http.server, HTTP 404, text/html
    assert "nothing was trained" in r.stderr
    _nothing_trained(tmp_path)
    r = cli_in_process("compare-runs", "--experiment", "x", "--tracking-uri", plain_http, cwd=tmp_path)
    _refused(r, plain_http, "HTTP 404")
    _nothing_trained(tmp_path)


@pytest.mark.slow
def test_a_wrong_path_on_a_real_mlflow_server_is_refused(tmp_path, synthetic_data, plain_server):
    wrong = plain_server.uri + "/not-mlflow"
    work = tmp_path / "w"
    work.mkdir()
    r = _train(work, synthetic_data, wrong)
    _refused(r, wrong, "HTTP 404")
    _nothing_trained(work)
    r = cli_in_process("compare-runs", "--experiment", "x", "--tracking-uri", wrong, cwd=work)
    _refused(r, wrong, "HTTP 404")
    # the right path on the same server is used as before (refusal only for what is not MLflow)
    r = cli_in_process("compare-runs", "--experiment", "nothing-here", "--tracking-uri", plain_server.uri, cwd=work)
    assert "not an MLflow tracking server" not in r.stderr, r.stderr[-2000:]
    _nothing_trained(work)


# --- a read-only store --------------------------------------------------------------------------
def _can_mount_read_only() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return r.returncode == 0


def _read_only(folder, argv: list[str], cwd) -> subprocess.CompletedProcess:
    """argv run with a read-only view of `folder` (root ignores file modes: a read-only mount instead)."""
    d = str(folder)
    script = f'mount --bind "{d}" "{d}" && mount -o remount,bind,ro "{d}" && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "YOLO_OFFLINE": "1"})


@pytest.mark.slow  # two new interpreters under a private mount namespace
@pytest.mark.skipif(not _can_mount_read_only(), reason="needs root and unshare -m for a read-only mount")
def test_a_read_only_store_is_read_by_compare_runs_and_preflight(tmp_path, synthetic_data):
    from sai_mlflow.tracking.store import make_client

    store = tmp_path / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = make_client(uri)
    exp = client.create_experiment("ro")
    for batch, peak in (("4", 1.5), ("8", 2.0)):
        run = client.create_run(exp, tags={K.TAG_BATCH_SIZE: batch, K.TAG_BATCH_SIZE_EFFECTIVE: batch,
                                           K.TAG_MODEL: "yolov8n.yaml", K.TAG_IMGSZ: "64", K.TAG_GPU: "cpu",
                                           K.TAG_RUN_KIND: "train"})
        for key, value in ((K.SUMMARY_PEAK_GIB, peak), (K.SUMMARY_TOTAL_GIB, 24.0), (K.SUMMARY_ETA_FULL_S, 60.0),
                           (K.SUMMARY_IMAGES_PER_S, 10.0)):
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id)
    (store / ".mlflow.db.init.lock").unlink()  # a shared store that never had our lock file
    before = sorted(p.name for p in store.iterdir())
    work = tmp_path / "w"
    work.mkdir()

    r = _read_only(store, [sys.executable, "-m", "sai_mlflow.cli", "compare-runs", "--experiment", "ro",
                           "--tracking-uri", uri, "--format", "json"], work)
    assert r.returncode in (0, 3), r.stderr[-2000:]  # judged: before, exit 2 "Permission denied … init.lock"
    assert len(json.loads(r.stdout)["runs"]) == 2
    assert "init.lock" not in r.stderr

    r = _read_only(store, [sys.executable, "-m", "sai_mlflow.cli", "preflight", "--config", SMOKE,
                           "--set", f"data={synthetic_data}", "--set", "imgsz=64", "--set", "batch=16",
                           "--experiment", "ro", "--tracking-uri", uri, "--format", "json", "--no-image-check"], work)
    findings = {f["code"]: f for f in json.loads(r.stdout)["findings"]}
    assert "fit over 2 runs at batches [4, 8]" in findings["memory_forecast"]["message"], r.stdout[-2000:]
    assert sorted(p.name for p in store.iterdir()) == before  # nothing written beside the store
