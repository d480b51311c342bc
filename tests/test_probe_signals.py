"""Stopping `sai-mlflow probe` stops everything it started (issue 17, item 1).

Real signals to a real `sai-mlflow probe` on tiny synthetic CPU data and a real sqlite store: SIGTERM
(`docker stop`, `kill`), SIGINT to the command's process group (a terminal's Ctrl-C), SIGHUP, and a
SIGKILL of the command. 3 s after the signal no probe process is left; after `sai-mlflow sync` no run
is RUNNING; the killed probe is never a result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, run_cli

from sai_mlflow import keys as K

SMOKE = str(ROOT / "configs" / "cpu_smoke.yaml")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(pid))
    return out


def _probe_children(parent: int) -> list[int]:
    """Live `python -m sai_mlflow.probe.child` processes whose parent is `parent`."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"sai_mlflow.probe.child" in cmd and _alive(int(pid)):
            out.append(int(pid))
    return out


def _training_probe(spool: Path, parent: int) -> int | None:
    """The PID of a probe process whose tracker writes its spool (it trains), else None."""
    for d in spool.glob("*/lock") if spool.is_dir() else []:
        try:
            pid = int(d.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if pid != parent and _alive(pid) and (d.parent / "spool.log").stat().st_size > 0:
            return pid
    return None


def _start_probe(tmp_path, data):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {**os.environ, "YOLO_OFFLINE": "1", "SAI_MLFLOW_SPOOL_DIR": str(tmp_path / "spool"),
           "MLFLOW_TRACKING_URI": "", "YOLO_CONFIG_DIR": str(tmp_path / "yolo")}
    argv = [sys.executable, "-m", "sai_mlflow.cli", "probe", "--config", SMOKE, "--set", f"data={data}",
            "--set", "imgsz=64", "--set", f"project={tmp_path / 'runs'}", "--tracking-uri", uri,
            "--batches", "2,4", "--probe-batches", "16"]
    log = open(tmp_path / "probe_cmd.log", "w")
    # its own session, as a shell job: a terminal's Ctrl-C goes to this process group
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    child = None
    while time.monotonic() < deadline and proc.poll() is None:
        child = _training_probe(tmp_path / "spool", proc.pid)
        if child:
            break
        time.sleep(0.2)
    assert child, (tmp_path / "probe_cmd.log").read_text()[-3000:]
    time.sleep(1.0)  # well inside its training
    return proc, child, uri, env


def _runs(uri):
    from sai_mlflow.tracking.store import make_client

    client = make_client(uri)
    return client, client.search_runs([e.experiment_id for e in client.search_experiments()])


def _after_sync(tmp_path, uri, env):
    r = run_cli("sync", cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    client, runs = _runs(uri)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    session = [r for r in runs if r.data.tags.get(K.TAG_RUN_KIND) == K.RUN_KIND_PROBE_SESSION]
    probes = [r for r in runs if r.data.tags.get(K.TAG_RUN_KIND) == K.RUN_KIND_PROBE]
    assert len(session) == 1 and session[0].info.status == "KILLED"
    assert len(probes) == 1 and probes[0].info.status == "KILLED"  # the next probe (batch 4) never started
    assert K.TAG_PROBE_RECOMMENDED not in session[0].data.tags       # no result, no fit, no verdict
    return client, session[0], probes[0]


@pytest.mark.slow
@pytest.mark.parametrize("sig, to_group", [(signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGHUP, False)])
def test_a_signal_stops_the_whole_probe_session(tmp_path, synthetic_data, sig, to_group):
    proc, child, uri, env = _start_probe(tmp_path, synthetic_data)
    group = _group_members(child)  # the probe's own process group (it and anything it started)
    try:
        if to_group:
            os.killpg(proc.pid, sig)  # Ctrl-C: the terminal signals the foreground group
        else:
            os.kill(proc.pid, sig)
        time.sleep(3.0)
        left = [p for p in [child, *group, *_probe_children(proc.pid)] if _alive(p)]
        assert left == [], f"probe processes still running 3 s after {sig.name}: {left}"
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = (tmp_path / "probe_cmd.log").read_text()
    assert rc == 128 + sig, out[-3000:]
    assert f"stopped by {sig.name}" in out and "Traceback" not in out
    client, session, probe = _after_sync(tmp_path, uri, env)
    assert probe.data.tags[K.TAG_PROBE_OUTCOME] == "killed"        # never a reference point
    assert not list((tmp_path / "runs").glob("probe-*/b*/data"))   # the data slices are cleaned
    assert not list((tmp_path / "spool").glob("*/spool.log"))      # the command closed both runs itself


@pytest.mark.slow
def test_a_sigkill_of_the_probe_command_takes_its_probe_along_and_sync_closes_the_runs(tmp_path, synthetic_data):
    proc, child, uri, env = _start_probe(tmp_path, synthetic_data)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3.0)
    assert not _alive(child), "the probe process outlived its SIGKILLed session"
    # the session is not there to close anything: sync does it from the spools, as after a training's SIGKILL
    deadline = time.monotonic() + 60  # the probe closes its own run through its spool as it stops
    while time.monotonic() < deadline and any(
            (d / "lock").exists() and _alive(int((d / "lock").read_text().split()[0] or 0))
            for d in (tmp_path / "spool").iterdir()):
        time.sleep(0.2)
    _after_sync(tmp_path, uri, env)
