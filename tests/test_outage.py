"""Real `mlflow server --workers 1` on loopback, killed and restarted under a logging publisher.

One server for the module (starting one costs ~20 s on 2 cores); each test leaves it running.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import ROOT, Server

from sai_mlflow.tracking.publisher import Publisher
from sai_mlflow.tracking.sink import Batch
from sai_mlflow.tracking.spool import Spool, SpoolingSink, list_spools, summarize, sync_spool

pytestmark = pytest.mark.slow
PY = sys.executable


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("server"))
    srv.start()
    yield srv
    srv.kill()


def _client(server):
    from sai_mlflow.tracking.store import make_client

    return make_client(server.uri)


def _new_run(server, name):
    from sai_mlflow.tracking.store import get_or_create_experiment

    c = _client(server)
    return c, c.create_run(get_or_create_experiment(c, "outage"), run_name=name).info.run_id


def _counts(client, run_id, keys):
    return {k: sorted(m.step for m in client.get_metric_history(run_id, k)) for k in keys}


KEYS = [f"m{j}" for j in range(5)]


def _until(cond, what, patience_s=300):
    """Wait for an event; the deadline only turns a hang into a failure (no load comes near it)."""
    deadline = time.monotonic() + patience_s
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def test_server_killed_and_restarted_every_point_exactly_once(server, tmp_path):
    client, run_id = _new_run(server, "outage")
    messages: list[str] = []
    sink = SpoolingSink(client, run_id, root=tmp_path / "spool", report=messages.append)
    pub = Publisher(sink, [], interval_s=0.05, report=messages.append).start()
    stop = threading.Event()
    sent = [0]

    def drive():  # ~50 batches/s x 5 metrics, like a fast training loop
        i = 0
        while not stop.is_set():
            pub.put(Batch(metrics=[(k, float(i), int(time.time() * 1000), i) for k in KEYS]))
            i += 1
            sent[0] = i
            time.sleep(0.02)

    t = threading.Thread(target=drive)
    t.start()
    _until(lambda: sent[0] >= 50, "50 batches before the outage")
    server.kill()
    at_kill = sent[0]
    _until(lambda: any("failed" in m for m in messages), "the outage noticed")
    _until(lambda: sent[0] >= at_kill + 50, "50 batches during the outage")
    server.start()
    _until(lambda: any("is back" in m for m in messages), "the store back")
    at_back = sent[0]
    _until(lambda: sent[0] >= at_back + 50, "50 batches after the outage")
    stop.set()
    t.join()
    assert pub.close("FINISHED", timeout=120)
    n = sent[0]
    assert _counts(client, run_id, KEYS) == {k: list(range(n)) for k in KEYS}  # all there, none twice
    assert client.get_run(run_id).info.status == "FINISHED"
    assert sum("failed" in m for m in messages) == 1 and sum("is back" in m for m in messages) == 1
    assert not sink.spool.dir.exists()


LOGGER = """
import sys, time
from sai_mlflow.tracking.publisher import Publisher
from sai_mlflow.tracking.sink import Batch
from sai_mlflow.tracking.spool import SpoolingSink
from mlflow.tracking import MlflowClient
uri, run_id, root, seconds = sys.argv[1:5]
say = lambda m: print(m, flush=True)
# a plain client: make_client would refuse a server that is already down, and this logger must start anyway
sink = SpoolingSink(MlflowClient(uri), run_id, root=root, meta={"tracking_uri": uri}, report=say)
pub = Publisher(sink, [], interval_s=0.05, report=say).start()
print("started", flush=True)
t0, i = time.monotonic(), 0
while time.monotonic() - t0 < float(seconds):
    pub.put(Batch(metrics=[(f"m{j}", float(i), int(time.time() * 1000), i) for j in range(5)]))
    i += 1
    time.sleep(0.02)
print("closing", i, flush=True)
pub.close("FINISHED", timeout=10)
"""


def _sync_cli(tmp_path, server, *args):
    return subprocess.run([PY, "-m", "sai_mlflow.cli", "sync", "--spool-dir", str(tmp_path / "spool"), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_exit_with_server_down_is_bounded_says_sync_once_then_sync_completes(server, tmp_path):
    client, run_id = _new_run(server, "down-at-exit")
    server.kill()
    proc = subprocess.Popen([PY, "-c", LOGGER, server.uri, run_id, str(tmp_path / "spool"), "1.0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    out = proc.communicate(timeout=300)[0]  # bounded: close(timeout=10) gives up on the store, the process ends
    assert proc.returncode == 0, out
    assert out.count("sai-mlflow sync") == 1, out
    n = int(out.split("closing ")[1].split()[0])
    dry = _sync_cli(tmp_path, server, "--run", run_id, "--dry-run")
    assert f"pending: {5 * n} points" in dry.stdout and "final status: FINISHED" in dry.stdout, dry.stdout
    server.start()
    for _ in range(2):  # idempotent: the second sync finds nothing
        r = _sync_cli(tmp_path, server)
        assert r.returncode == 0, r.stdout + r.stderr
    assert _counts(client, run_id, KEYS) == {k: list(range(n)) for k in KEYS}
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_at_a_random_moment_then_sync_matches_the_spool(server, tmp_path, seed):
    client, run_id = _new_run(server, f"sigkill-{seed}")
    proc = subprocess.Popen([PY, "-c", LOGGER, server.uri, run_id, str(tmp_path / "spool"), "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "started"
    _until(lambda: any(p.stat().st_size > 0 for p in (tmp_path / "spool").rglob("spool.log")), "a first spool write")
    time.sleep(random.Random(seed).uniform(0.3, 2.0))  # then a random moment (not an assertion)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (sp,) = list_spools(tmp_path / "spool")
    spooled = summarize(sp)
    assert spooled.status is None and spooled.all_metrics > 0
    res = sync_spool(Spool(sp.dir))
    assert res.state == "synced", res.message
    got = _counts(client, run_id, KEYS)
    per_key = spooled.all_metrics // 5
    assert got == {k: list(range(per_key)) for k in KEYS}  # every spooled point, once; a prefix, no gap
    assert client.get_run(run_id).info.status == "KILLED"


def test_a_server_that_lacks_the_run_keeps_everything_then_sync_creates_it(server, tmp_path):
    """A server restored from an older backup: the live run's id is unknown there (REST 404), nothing is set aside."""
    client = _client(server)
    ghost = "0" * 31 + "9"
    messages: list[str] = []
    sink = SpoolingSink(client, ghost, root=tmp_path / "spool", report=messages.append, drain_timeout_s=2,
                        upload_interval_s=0.1, meta={"tracking_uri": server.uri, "experiment": "outage"})
    for i in range(50):
        sink.write(Batch(metrics=[(k, float(i), 1000 + i, i) for k in KEYS]))
    sink.terminate("FINISHED")
    assert any("the store has no run" in m for m in messages), messages
    (sp,) = list_spools(tmp_path / "spool")
    assert not sp.rejected() and summarize(sp).metrics == 5 * 50
    res = sync_spool(Spool(sp.dir))
    assert res.state == "synced" and res.created, res.message
    assert _counts(client, res.run_id, KEYS) == {k: list(range(50)) for k in KEYS}
    assert client.get_run(res.run_id).data.tags["sai.local_run_id"] == ghost
    assert client.get_run(res.run_id).info.status == "FINISHED"
