"""`sync` right after a SIGKILL: the writer's PID decides whether a live process still writes the spool, not
the flock alone (a child the writer started can hold it for seconds more) nor a file's age (issue 17, item 5)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import cli_in_process

WRITER = textwrap.dedent("""
    import os, subprocess, sys, time
    from sai_mlflow.tracking.sink import Batch
    from sai_mlflow.tracking.spool import SpoolingSink, new_local_run_id

    uri, how = sys.argv[1], sys.argv[2]
    sink = SpoolingSink(None, new_local_run_id(), meta={"tracking_uri": uri, "experiment": "pid", "run_name": "w"})
    sink.write(Batch(metrics=[("loss", float(i), 1_700_000_000_000 + i, i) for i in range(50)]))
    if how == "fork":       # a DataLoader worker: forked, it shares the writer's open files
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
    elif how == "pass_fd":  # any process handed the lock's descriptor
        subprocess.Popen(["sleep", "60"], pass_fds=[sink.spool._lock_fd])
    print(sink.spool.dir, flush=True)
    time.sleep(600)
""")


def _start_writer(tmp_path, uri, how):
    env = {**os.environ, "SAI_MLFLOW_SPOOL_DIR": str(tmp_path / "spool")}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, uri, how], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    line = proc.stdout.readline().strip()
    assert line, proc.stderr.read()[-2000:]
    return proc, env


def _holders(spool_dir) -> list[int]:
    """PIDs that have the spool's lock file open (the flock lives as long as one of them)."""
    lock = os.path.realpath(os.path.join(spool_dir, "lock"))
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == lock for fd in os.listdir(f"/proc/{pid}/fd")):
                pids.append(int(pid))
        except OSError:
            pass
    return pids


@pytest.mark.parametrize("how", ["fork", "pass_fd"])
def test_sync_right_after_a_sigkill_uploads_though_a_child_lingers(tmp_path, sqlite_uri, how):
    proc, env = _start_writer(tmp_path, sqlite_uri, how)
    spool_dir = next((tmp_path / "spool").iterdir())
    try:
        os.kill(proc.pid, signal.SIGKILL)  # only the writer; what it started lives on
        proc.wait()
        if how == "pass_fd":
            assert _holders(spool_dir), "the lingering child should still hold the lock's descriptor"
        r = cli_in_process("sync", cwd=tmp_path, env=env)  # the writer is another process; sync need not be
        assert r.returncode == 0, r.stderr[-2000:]
        assert "still writing" not in r.stdout and "status KILLED" in r.stdout, r.stdout
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the writer's group: the children it started
        except ProcessLookupError:
            pass
    from sai_mlflow.tracking.store import make_client

    runs = make_client(sqlite_uri).search_runs([make_client(sqlite_uri).get_experiment_by_name("pid").experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"] and len(
        make_client(sqlite_uri).get_metric_history(runs[0].info.run_id, "loss")) == 50


def test_sync_leaves_a_live_writer_alone_and_names_its_pid(tmp_path, sqlite_uri):
    proc, env = _start_writer(tmp_path, sqlite_uri, "none")
    try:
        r = cli_in_process("sync", cwd=tmp_path, env=env)
        assert r.returncode == 0 and f"a live process (pid {proc.pid}) is still writing" in r.stdout, r.stdout
        assert list((tmp_path / "spool").iterdir())  # the spool is untouched
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_record_of_a_dead_or_reused_pid_is_no_live_writer():
    from sai_mlflow.tracking.spool.writer import lock_record, process_start, writer_alive

    assert writer_alive(lock_record())                       # this process, with its own start time
    assert writer_alive(f"{os.getpid()}\n")                  # an older lock file: the PID alone
    assert not writer_alive(f"{os.getpid()} {int(process_start(os.getpid())) + 1}")  # the PID reused since
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not writer_alive(f"{child.pid} 1")                 # gone
    zombie = subprocess.Popen(["sleep", "0"])
    deadline = time.monotonic() + 10
    while process_start(zombie.pid) is not None and time.monotonic() < deadline:
        if open(f"/proc/{zombie.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.05)
    assert not writer_alive(lock_record(zombie.pid))          # killed, not yet reaped: writes nothing
    zombie.wait()
    assert not writer_alive("") and not writer_alive("garbage")
