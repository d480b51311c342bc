"""Nothing lost (issue 9, items 1-7): refused uploads stay pending, corruption is skipped, kills flush.

Real parts only: sqlite stores, a real `mlflow server --app-name basic-auth`, real byte flips in spool.log,
real signals and real CPU training.
"""

from __future__ import annotations

import os

import pytest
from helpers import Server, cli_in_process, fresh_sqlite_store, run_cli

from sai_mlflow.tracking.sink import Batch
from sai_mlflow.tracking.spool import Spool, SpoolingSink, list_spools, read_records, summarize

KEYS = [f"m{j}" for j in range(3)]


def _spool_for(tmp_path, run_id, uri, n=40, status="FINISHED"):
    """A spool left behind by a run whose store could not take it (written offline, as the sink does)."""
    sink = SpoolingSink(None, run_id, root=tmp_path / "spool", report=lambda m: None,
                        meta={"tracking_uri": uri, "experiment": "dur", "run_name": "r"})
    for i in range(n):
        sink.write(Batch(metrics=[(k, float(i), 1000 + i, i) for k in KEYS], params={"lr0": "0.01"} if i == 0 else {}))
    sink.terminate(status)
    return Spool(sink.spool.dir)


def _steps(client, run_id):
    return {k: sorted(m.step for m in client.get_metric_history(run_id, k)) for k in KEYS}


def _sync(tmp_path, *args):
    return run_cli("sync", "--spool-dir", str(tmp_path / "spool"), *args, cwd=tmp_path, timeout=300)


def _sync_here(tmp_path, *args):
    """`sync` in this process (no second MLflow import): for the tests whose point is what sync does, not a kill."""
    return cli_in_process("sync", "--spool-dir", str(tmp_path / "spool"), *args, cwd=tmp_path)


# --- item 1: a store that lacks the run --------------------------------------------------------------
def test_sync_to_a_store_that_lacks_the_run_creates_it_there_with_everything(tmp_path, empty_mlflow_db):
    from sai_mlflow.tracking.store import get_or_create_experiment, make_client

    a = make_client(fresh_sqlite_store(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}", empty_mlflow_db))
    run_id = a.create_run(get_or_create_experiment(a, "dur")).info.run_id
    sp = _spool_for(tmp_path, run_id, a.tracking_uri)
    # another store (or one restored from an older backup)
    b_uri = fresh_sqlite_store(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}", empty_mlflow_db)
    r = _sync_here(tmp_path, "--tracking-uri", b_uri)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "created: the store had no run for it" in r.stdout
    b = make_client(b_uri)
    (run,) = b.search_runs([e.experiment_id for e in b.search_experiments()])
    assert run.info.status == "FINISHED" and run.data.tags["sai.local_run_id"] == run_id
    assert _steps(b, run.info.run_id) == {k: list(range(40)) for k in KEYS}
    assert run.data.params["lr0"] == "0.01"
    assert not sp.dir.exists()
    assert _sync_here(tmp_path, "--tracking-uri", b_uri).returncode == 0  # nothing left, nothing doubled
    assert len(b.search_runs([run.info.experiment_id])) == 1


def test_sync_to_a_deleted_run_keeps_everything_pending_and_says_why(tmp_path, empty_mlflow_db):
    from sai_mlflow.tracking.store import get_or_create_experiment, make_client

    uri = fresh_sqlite_store(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", empty_mlflow_db)
    c = make_client(uri)
    run_id = c.create_run(get_or_create_experiment(c, "dur")).info.run_id
    sp = _spool_for(tmp_path, run_id, uri)
    c.delete_run(run_id)  # deleted in the UI
    r = _sync_here(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "is deleted in the store" in r.stderr and "mlflow runs restore" in r.stderr
    assert "uploaded" not in r.stdout
    assert sp.dir.exists() and summarize(sp).metrics == 3 * 40 and not sp.rejected()
    c.restore_run(run_id)
    r = _sync_here(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _steps(c, run_id) == {k: list(range(40)) for k in KEYS}
    assert c.get_run(run_id).info.status == "FINISHED" and not sp.dir.exists()


def test_content_rejections_are_set_aside_and_stay_on_disk(tmp_path, empty_mlflow_db):
    """A param that changed value is refused for its content: the rest goes up, the refusal stays listed."""
    from sai_mlflow.tracking.store import get_or_create_experiment, make_client

    uri = fresh_sqlite_store(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", empty_mlflow_db)
    c = make_client(uri)
    run_id = c.create_run(get_or_create_experiment(c, "dur")).info.run_id
    c.log_param(run_id, "lr0", "0.5")
    sp = _spool_for(tmp_path, run_id, uri)  # spools lr0=0.01: MLflow refuses a changed param
    r = _sync_here(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "refused by the store for their content" in r.stderr and "delete it once read" in r.stderr
    assert _steps(c, run_id) == {k: list(range(40)) for k in KEYS}
    assert c.get_run(run_id).info.status == "FINISHED"
    assert [x["param"] for x in sp.rejected()] == ["lr0"]
    assert "refused by the store" in _sync_here(tmp_path, "--dry-run").stdout


# --- item 2: credentials that stop working mid-run ----------------------------------------------------
@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("auth"), app_name="basic-auth", admin_password="first-Password-9a!")
    srv.start()
    yield srv
    srv.kill()


def _as_admin(server, method, path, body):
    import requests

    r = requests.request(method, server.uri + path, json=body, auth=("admin", server.admin_password), timeout=30)
    assert r.status_code == 200, r.text


@pytest.mark.slow
def test_credentials_rotated_mid_run_lose_nothing(auth_server, tmp_path, monkeypatch):
    from sai_mlflow.tracking.store import get_or_create_experiment, make_client

    _as_admin(auth_server, "POST", "/api/2.0/mlflow/users/create",
              {"username": "trainer", "password": "old-Password-9a!"})
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "trainer")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "old-Password-9a!")
    client = make_client(auth_server.uri)
    run_id = client.create_run(get_or_create_experiment(client, "auth")).info.run_id
    messages: list[str] = []
    sink = SpoolingSink(client, run_id, root=tmp_path / "spool", report=messages.append, drain_timeout_s=3,
                        meta={"tracking_uri": auth_server.uri},
                        upload_interval_s=0.2)
    for i in range(20):
        sink.write(Batch(metrics=[(k, float(i), 1000 + i, i) for k in KEYS]))
    assert sink.wait_drained(30)
    _as_admin(auth_server, "PATCH", "/api/2.0/mlflow/users/update-password",  # rotated mid-run
              {"username": "trainer", "password": "new-Password-9a!"})
    for i in range(20, 60):
        sink.write(Batch(metrics=[(k, float(i), 1000 + i, i) for k in KEYS]))
    sink.terminate("FINISHED")
    out = "\n".join(messages)
    assert "refused the credentials (HTTP 401)" in out and "sai-mlflow sync --run" in out, out
    (sp,) = list_spools(tmp_path / "spool")
    assert not sp.rejected() and summarize(sp).metrics == 3 * 40
    bad = _sync(tmp_path)  # still the old password: a misconfiguration (exit 2), nothing moves, the reason is said
    assert bad.returncode == 2 and "HTTP 401" in bad.stderr, bad.stdout + bad.stderr
    assert sp.dir.exists() and summarize(sp).metrics == 3 * 40
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "new-Password-9a!")
    good = _sync(tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    client = make_client(auth_server.uri)
    assert _steps(client, run_id) == {k: list(range(60)) for k in KEYS}
    assert client.get_run(run_id).info.status == "FINISHED"
    assert not sp.dir.exists()


# --- item 3: one corrupt record in the middle ---------------------------------------------------------
@pytest.mark.parametrize("damage", ["flip one payload byte", "eight zero bytes over a header"])
def test_a_corrupt_record_in_the_middle_costs_only_itself(tmp_path, damage, empty_mlflow_db):
    from sai_mlflow.tracking.store import get_or_create_experiment, make_client

    uri = fresh_sqlite_store(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", empty_mlflow_db)
    c = make_client(uri)
    run_id = c.create_run(get_or_create_experiment(c, "dur")).info.run_id
    sp = _spool_for(tmp_path, run_id, uri)
    data = bytearray(sp.log.read_bytes())
    offsets = [0]
    offsets += [end for end, _ in read_records(sp.log)]
    victim = offsets[len(offsets) // 2]  # a metrics record in the middle
    if damage.startswith("flip"):
        data[victim + 20] ^= 0xFF
    else:
        data[victim:victim + 8] = bytes(8)
    sp.log.write_bytes(bytes(data))
    size = offsets[len(offsets) // 2 + 1] - victim
    dry = _sync_here(tmp_path, "--dry-run")
    assert f"corrupt record: {size} bytes at byte offset {victim}" in dry.stdout, dry.stdout
    assert "torn" not in dry.stdout and "final status: FINISHED" in dry.stdout
    r = _sync_here(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{size} bytes at byte offset {victim}" in r.stderr
    lost = len(offsets) // 2 - 1  # records: params, then one metrics record per step, then the status
    assert _steps(c, run_id) == {k: [i for i in range(40) if i != lost] for k in KEYS}  # only the bad one is lost
    assert c.get_run(run_id).info.status == "FINISHED"  # not KILLED: the status record after it was read
    assert sp.dir.exists()  # kept for the user to look at


# --- items 6 and 7: kills -----------------------------------------------------------------------------
KILL_SCRIPT = """
import json, os, signal, sys, time
from sai_mlflow import keys as K
from sai_mlflow.tracking.spool import read_records, spool_root
from sai_mlflow.trainer import TrackedDetectionTrainer
data, project, out = sys.argv[1:4]
t = TrackedDetectionTrainer(overrides=dict(model="yolov8n.yaml", data=data, epochs=10, batch=8, imgsz=64,
    device="cpu", workers=0, plots=False, amp=False, val=False, project=project))
checks, done = [], [0]
def probe(trainer):
    done[0] += 1
    if done[0] in (3, 7, 10):
        # training holds still here (no batch, no epoch end, no close): the publisher alone must spool every batch
        # that ended; how soon is a benchmark's business (benchmarks/spool_cadence.py), the deadline only ends a hang
        log = spool_root() / trainer.sai_tracker.run_id / "spool.log"
        deadline = time.monotonic() + 120
        while True:
            steps = {p[3] for _, r in read_records(log) if r["t"] == "m" for p in r["p"] if p[0] == K.BATCH_STEP_S} \
                if log.exists() else set()
            if len(steps) >= done[0] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        checks.append([done[0], len(steps)])
        open(out, "w").write(json.dumps(checks))
        if done[0] == 10:
            os.kill(os.getpid(), signal.SIGKILL)
t.add_callback("on_train_batch_end", probe)
t.train()
"""


@pytest.mark.slow
def test_sigkill_loses_only_what_was_not_yet_spooled(tmp_path, synthetic_data):
    """Default publish interval (5 s): the spool takes every ended batch on its own cadence, and a SIGKILL then
    loses none of them (`sync` uploads exactly those)."""
    import json
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {**os.environ, "YOLO_OFFLINE": "1", "MLFLOW_TRACKING_URI": uri,
           "SAI_MLFLOW_SPOOL_DIR": str(tmp_path / "spool"),
           "SAI_MLFLOW_LOG_MODEL": "0", "SAI_MLFLOW_PUBLISH_INTERVAL_S": "5"}
    env.pop("SAI_MLFLOW_MEMORY_INTERVAL_S", None)
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(synthetic_data), str(tmp_path / "runs"),
                           str(tmp_path / "checks.json")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -9, proc.stderr[-3000:]
    checks = json.loads((tmp_path / "checks.json").read_text())
    assert checks == [[3, 3], [7, 7], [10, 10]]  # [batches done, batches in the spool] at each moment
    r = _sync(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    from mlflow.tracking import MlflowClient

    from sai_mlflow import keys as K

    c = MlflowClient(uri)
    (run,) = c.search_runs([e.experiment_id for e in c.search_experiments()])
    assert run.info.status == "KILLED"
    assert sorted(m.step for m in c.get_metric_history(run.info.run_id, K.BATCH_STEP_S)) == list(range(10))


def _only_run(uri):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    (run,) = c.search_runs([e.experiment_id for e in c.search_experiments()])
    return c, run


SIGNAL_AT_BATCH = 6  # 4 batches per epoch (32 images, batch 8): the 2nd batch of epoch 2
SIGNALLED_TRAIN = """
import os, signal, sys
from sai_mlflow import trainer as tr
from sai_mlflow.cli import main
sig, at = getattr(signal, sys.argv[1]), int(sys.argv[2])
tracked_end, done = tr.HOOKS["on_train_batch_end"], [0]
def end_then_signal(trainer):  # the project's own hook, then the signal once the batch is counted
    tracked_end(trainer)
    done[0] += 1
    if done[0] == at:
        os.kill(os.getpid(), sig)  # as `timeout`, `docker stop`, SLURM (SIGTERM) or a closed terminal (SIGHUP) do
tr.HOOKS["on_train_batch_end"] = end_then_signal
sys.argv = ["sai-mlflow", *sys.argv[3:]]
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [("SIGTERM", 128 + 15), ("SIGHUP", 128 + 1)])
def test_train_stopped_by_a_signal_exits_128_plus_it_and_loses_no_batch(tmp_path, synthetic_data, sig, code):
    """`train` flushes every batch that ran, closes the run KILLED, and exits 143 (SIGTERM) or 129 (SIGHUP)."""
    import subprocess
    import sys

    from helpers import smoke_args

    from sai_mlflow import keys as K

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    cmd = [sys.executable, "-c", SIGNALLED_TRAIN, sig, str(SIGNAL_AT_BATCH), *smoke_args(tmp_path, synthetic_data),
           "--set", "epochs=50", "--set", "tracking.log_model=false", "--skip-preflight", "--tracking-uri", uri]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "YOLO_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == code, proc.stderr[-3000:]
    assert f"stopped by {sig}" in proc.stderr and "is marked KILLED" in proc.stderr, proc.stderr[-3000:]
    c, run = _only_run(uri)
    assert run.info.status == "KILLED"
    steps = sorted(m.step for m in c.get_metric_history(run.info.run_id, K.BATCH_STEP_S))
    assert steps == list(range(SIGNAL_AT_BATCH))  # every batch the process ran, once: none lost, none invented
    assert sorted(m.step for m in c.get_metric_history(run.info.run_id, K.EPOCH_DURATION_S)) == [1]
    assert not list_spools(tmp_path / "mlruns" / "spool")


# --- item 4: nowhere to record ------------------------------------------------------------------------
def test_unwritable_cwd_with_the_default_store_is_refused_before_training(tmp_path, synthetic_data):
    """`./mlruns` cannot be made (a file is in the way: unwritable even for root): preflight says so, train refuses."""
    from helpers import ROOT

    (tmp_path / "mlruns").write_text("not a folder")
    env = {"SAI_MLFLOW_SPOOL_DIR": "", "MLFLOW_TRACKING_URI": ""}
    pre = cli_in_process("preflight", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"), "--set",
                         f"data={synthetic_data}", cwd=tmp_path, env=env)
    assert pre.returncode == 1 and "tracking_unwritable" in pre.stdout, pre.stdout + pre.stderr
    args = [a for a in __import__("helpers").smoke_args(tmp_path, synthetic_data)]
    proc = cli_in_process(*args, cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "tracking_unwritable" in proc.stderr and "nothing was started" in proc.stderr
    assert "SAI_MLFLOW_SPOOL_DIR" in proc.stderr
    assert not (tmp_path / "runs").exists()


# --- item 5: offline, then resume ---------------------------------------------------------------------
OFFLINE_INTERRUPTED = """
import os, sys
from sai_mlflow.trainer import TrackedDetectionTrainer
data, project = sys.argv[1:3]
t = TrackedDetectionTrainer(overrides=dict(model="yolov8n.yaml", data=data, epochs=3, batch=8, imgsz=64,
    device="cpu", workers=0, plots=False, amp=False, project=project))
def stop(trainer):
    if trainer.epoch == 0:
        raise KeyboardInterrupt
t.add_callback("on_fit_epoch_end", stop)
t.train()
"""


@pytest.mark.slow
def test_a_run_started_offline_resumes_into_its_synced_run(tmp_path, synthetic_data):
    import subprocess
    import sys

    from helpers import ROOT
    from mlflow.tracking import MlflowClient

    from sai_mlflow import keys as K
    from sai_mlflow.model import find_run_model

    env = {**os.environ, "YOLO_OFFLINE": "1", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # nothing listens
           "SAI_MLFLOW_PUBLISH_INTERVAL_S": "1"}
    proc = subprocess.run([sys.executable, "-c", OFFLINE_INTERRUPTED, str(synthetic_data), str(tmp_path / "runs")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "spooled locally as local-" in proc.stdout + proc.stderr, proc.stderr[-3000:]
    run_file = tmp_path / "runs" / "train" / "weights" / K.RUN_ID_FILE
    local_id = run_file.read_text().strip()
    assert local_id.startswith("local-")
    good = f"sqlite:///{tmp_path / 'good' / 'mlflow.db'}"
    sync = cli_in_process("sync", "--tracking-uri", good, cwd=tmp_path)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    client = MlflowClient(good)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "KILLED" and run_file.read_text().strip() == run.info.run_id  # the file follows
    proc = run_cli("train", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"), "--resume",
                   str(tmp_path / "runs" / "train" / "weights" / "last.pt"), "--tracking-uri", good,
                   cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_id for r in runs] == [run.info.run_id]  # the same run continued
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, K.VAL_MAP50)) == [1, 2, 3]
    steps = [m.step for m in sorted(client.get_metric_history(run.info.run_id, K.BATCH_STEP_S),
                                    key=lambda m: m.timestamp)]
    assert steps == sorted(set(steps))
    assert find_run_model(client, run).startswith("models:/")


def test_sync_of_a_run_without_a_spool_names_it_and_the_spool_root(tmp_path):
    r = cli_in_process("sync", "--run", "0123abcd", "--spool-dir", str(tmp_path / "spool"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("Error:") == 1, r.stderr
    assert f"no spool for run 0123abcd under {tmp_path / 'spool'}" in r.stderr
