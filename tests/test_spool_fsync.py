"""The spool's terminal record reaches the disk: `SpoolingSink(fsync=True)` calls fsync(2) on spool.log after
writing it (docs/durability.md), seen with strace on a real child that SIGKILLs itself right after."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT

from sai_mlflow.tracking.spool import list_spools, summarize

CHILD = """
import os, signal, sys
from sai_mlflow.tracking.sink import Batch
from sai_mlflow.tracking.spool import SpoolingSink
root, fsync = sys.argv[1], sys.argv[2] == "1"
sink = SpoolingSink(None, "f" * 32, root=root, report=lambda m: None, fsync=fsync, meta={"tracking_uri": "sqlite:///x"})
for i in range(5):
    sink.write(Batch(metrics=[("m", float(i), 1000 + i, i)]))
sink.terminate("FINISHED")
os.kill(os.getpid(), signal.SIGKILL)  # nothing after the terminal record gets a chance to run
"""


def _traced(tmp_path, fsync: bool) -> list[str]:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (scripts/test.sh installs it with apt-get)")
    trace = tmp_path / "strace.txt"
    proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat,write,fsync,fdatasync", "-s", "48",
                           "-o", str(trace), sys.executable, "-c", CHILD, str(tmp_path / "spool"),
                           "1" if fsync else "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    if "ptrace" in proc.stderr.lower() and "not permitted" in proc.stderr.lower():
        pytest.skip(f"strace may not trace here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == -9 or proc.returncode == 137, proc.stderr[-2000:]
    return trace.read_text().splitlines()


def _spool_log_calls(lines: list[str]) -> list[str]:
    """The write/fsync calls on the fd that spool.log was opened for writing on, in order."""
    fd = None
    calls = []
    for line in lines:
        m = re.search(r'openat\(.*spool\.log", O_WRONLY[^)]*\) = (\d+)', line)
        if m:
            fd = m.group(1)
            continue
        if fd is not None and re.search(rf"\b(write|fsync|fdatasync)\({fd}\b", line):
            calls.append("status" if '\\"t\\":\\"s\\"' in line or '"t":"s"' in line
                         else re.search(r"\b(write|fsync|fdatasync)\(", line).group(1))
    return calls


def test_terminal_record_is_fsynced_and_survives_a_kill_right_after(tmp_path):
    calls = _spool_log_calls(_traced(tmp_path, fsync=True))
    assert calls[:6] == ["write"] * 5 + ["status"]
    assert calls[6:7] in (["fsync"], ["fdatasync"]), calls  # the status record, then to disk, before anything else
    (sp,) = list_spools(tmp_path / "spool")
    got = summarize(sp)
    assert got.status == "FINISHED" and got.metrics == 5


def test_without_the_option_no_record_is_fsynced(tmp_path):
    calls = _spool_log_calls(_traced(tmp_path, fsync=False))
    assert calls == ["write"] * 5 + ["status"]  # the control: the fsync above is the option's, not a side effect
