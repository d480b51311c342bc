"""Team scale against real PostgreSQL: a direct `postgresql://` URI, and the basic-auth `mlflow server` that
scripts/team_server.sh starts on its own cluster. Misconfigured stores are refused with exit 2 before
training; outages are spooled and synced; no password ever shows up in a param, tag, artifact, spool file
or anything printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import PG_PASSWORD
from helpers import ROOT, free_port, run_cli

pytestmark = pytest.mark.slow

BOB_PASSWORD = "b0b-Passw0rd-7c2e"


def tiny_train(tmp: Path, data: Path, *extra: str) -> list[str]:
    """The smallest real training: 8 images at imgsz 32, batch 4 (2 batches), 1 epoch."""
    return ["train", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"), "--set", f"data={data}",
            "--set", "epochs=1", "--set", "batch=4", "--set", "imgsz=32", "--set", f"project={tmp / 'runs'}",
            "--set", "tracking.publish_interval_s=1", "--set", "tracking.memory_interval_s=1", *extra]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from sai_mlflow.data.synthetic import SyntheticSpec, generate

    return generate(tmp_path_factory.mktemp("tiny"), SyntheticSpec(train=8, val=4, width=64, height=48))


class Outputs:
    """Everything the commands printed, for the leak check."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, proc):
        self.texts.append(proc.stdout + proc.stderr)
        return proc


def one_error_line(proc) -> str:
    """exit 2, one `Error:` line, no traceback."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out[-3000:]
    return errors[0]


def assert_nothing_leaked(secrets: list[str], client, texts: list[str], dirs: list[Path], tmp: Path) -> int:
    """Grep every param, tag, artifact (downloaded from the store), spool file and output; returns files read."""
    import mlflow

    found = []

    def scan(where: str, text: str) -> None:
        for s in secrets:
            if s in text:
                found.append(f"{where}: ...{text[max(0, text.find(s) - 80):text.find(s) + 20]!r}")

    for i, t in enumerate(texts):
        scan(f"output #{i}", t)
    n_files = 0
    dest = tmp / "leak-artifacts"
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], max_results=500):
            scan(f"run {run.info.run_id} params", json.dumps(run.data.params))
            scan(f"run {run.info.run_id} tags", json.dumps(run.data.tags))
            if client.list_artifacts(run.info.run_id):
                local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                                 tracking_uri=client.tracking_uri,
                                                                 dst_path=str(dest / run.info.run_id)))
                dirs.append(local)
    for mv in client.search_model_versions():
        scan(f"model version {mv.name} v{mv.version}", json.dumps(mv.tags) + str(mv.source))
    for d in dirs:
        for f in Path(d).rglob("*"):
            if f.is_file():
                n_files += 1
                scan(str(f), f.read_bytes().decode("latin-1"))
    assert not found, "\n".join(found)
    return n_files


def metric_steps(client, run_id: str, key: str = "batch/step_s") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


# --- a direct postgresql:// URI -------------------------------------------------------------------------

def test_misconfigured_database_uris_exit_2_before_any_work(pg, tmp_path, tiny_data):
    """Unknown scheme, missing driver, bad host, wrong password: one line naming the fix, exit 2, nothing trained."""
    good = pg.create_db("misconf")
    cases = {
        pg.uri("misconf", password="wrong-pw"): "password authentication failed",
        pg.uri("misconf", driver="postgresql+psycopg2"): "psycopg2",
        pg.uri("misconf", driver="postgres"): "unknown scheme",
        f"postgresql://sai:{PG_PASSWORD}@no-such-host.invalid:5432/x": "does not resolve",
    }
    procs = {uri: subprocess.Popen([sys.executable, "-m", "sai_mlflow.cli", *tiny_train(tmp_path, tiny_data),
                                    "--tracking-uri", uri], cwd=tmp_path, env={**os.environ, "YOLO_OFFLINE": "1",
                                    "YOLO_CONFIG_DIR": str(tmp_path / "ycfg")}, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for uri in cases}
    for uri, needle in cases.items():
        out, err = procs[uri].communicate(timeout=300)
        proc = subprocess.CompletedProcess([], procs[uri].returncode, out, err)
        line = one_error_line(proc)
        assert needle in line and "nothing was trained" in line, line
        assert PG_PASSWORD not in out + err and "wrong-pw" not in out + err
    assert not (tmp_path / "runs").exists()  # Ultralytics never started
    assert not (tmp_path / "mlruns" / "spool").exists()  # a misconfiguration is not an outage: nothing spooled
    from sai_mlflow.tracking.store import make_client

    assert make_client(good).search_runs(["0"]) == []


def test_postgres_uri_train_import_compare_promote_and_sync_after_a_restart(pg, tmp_path, tiny_data, monkeypatch):
    uri = pg.create_db("direct")
    out = Outputs()
    env = {"YOLO_CONFIG_DIR": str(tmp_path / "ycfg")}

    # train: the database keeps no artifacts -> one warning naming the fix
    tr = out.add(run_cli(*tiny_train(tmp_path, tiny_data), "--tracking-uri", uri, "--experiment", "direct",
                         cwd=tmp_path, env=env))
    assert tr.returncode == 0, tr.stderr[-3000:]
    text = " ".join((tr.stdout + tr.stderr).split())
    assert text.count("tracking.artifact_location") == 1 and "teammates cannot reach" in text
    from sai_mlflow.tracking.store import make_client

    client = make_client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("direct").experiment_id])
    assert run.info.status == "FINISHED" and metric_steps(client, run.info.run_id) == [0, 1]

    # import-history + compare-runs: the seed's verdict, read through the SQL fast path (no fallback)
    imp = out.add(run_cli("import-history", str(ROOT / "configs" / "history" / "seed_2024-08.yaml"),
                          "--experiment", "seed", "--tracking-uri", uri, cwd=tmp_path, env=env))
    assert imp.returncode == 0, imp.stderr[-3000:]
    cmp = out.add(run_cli("compare-runs", "--experiment", "seed", "--format", "json", "--tracking-uri", uri,
                          cwd=tmp_path, env=env))
    assert cmp.returncode == 0, cmp.stderr[-3000:]
    assert json.loads(cmp.stdout)["recommended"]["batch_size"] == 96

    from sai_mlflow.backend import read_mlflow, read_rest, read_sql
    from sai_mlflow.compare import loader
    from sai_mlflow.compare.policy import load_policy

    def no_fallback(*a, **k):
        raise AssertionError("compare-runs left the SQL fast path")

    sql_calls = []
    real = read_sql.SqlReader.series
    monkeypatch.setattr(read_rest.RestReader, "series", no_fallback)
    monkeypatch.setattr(read_mlflow.MlflowReader, "series", no_fallback)
    monkeypatch.setattr(read_sql.SqlReader, "series", lambda *a, **k: sql_calls.append(a[1]) or real(*a, **k))
    records = loader.load_records(uri, experiment="seed", policy=load_policy(None), progress=False)
    # the seed's summaries cover its memory series (summary/memory_*), so only mAP is read, through SQL
    assert len(records) == 3 and sql_calls == ["val/mAP50"]
    judged_from_summary = sorted(r.run_name for r in records if r.memory_growth_gib_per_h is not None)
    assert judged_from_summary == ["b128", "b96"] and not any(r.memory_steady for r in records)
    monkeypatch.undo()

    # promote the trained run
    pr = out.add(run_cli("promote", run.info.run_id, "--model", "team-det", "--tracking-uri", uri, "--width", "200",
                         cwd=tmp_path, env=env))
    assert pr.returncode == 0, pr.stdout[-3000:] + pr.stderr[-3000:]
    assert str(client.get_registered_model("team-det").aliases["champion"]) == "1"

    # the database goes down: training goes on, spooled; back up: sync uploads every batch step once
    pg.stop()
    try:
        off = out.add(run_cli(*tiny_train(tmp_path, tiny_data, "--set", "tracking.log_model=false",
                                          "--set", f"tracking.artifact_location={(tmp_path / 'shared-art').as_uri()}"),
                              "--tracking-uri", uri, "--experiment", "offline", cwd=tmp_path, env=env))
    finally:
        pg.start()
    assert off.returncode == 0, off.stderr[-3000:]
    assert "spooled locally as local-" in off.stdout + off.stderr
    meta = [json.loads(p.read_text()) for p in (tmp_path / "mlruns" / "spool").rglob("meta.json")]
    assert meta and all(m["tracking_uri"] == uri.replace(f":{PG_PASSWORD}@", "@") for m in meta)
    sy = out.add(run_cli("sync", cwd=tmp_path, env={**env, "MLFLOW_TRACKING_URI": uri}))
    assert sy.returncode == 0, sy.stdout + sy.stderr
    exp = client.get_experiment_by_name("offline")
    assert exp.artifact_location == (tmp_path / "shared-art").as_uri()
    (synced,) = client.search_runs([exp.experiment_id])
    assert synced.info.status == "FINISHED" and metric_steps(client, synced.info.run_id) == [0, 1]
    assert (tmp_path / "shared-art").is_dir()

    n = assert_nothing_leaked([PG_PASSWORD], client, out.texts,
                              [tmp_path / "mlruns", tmp_path / "runs"], tmp_path)
    assert n > 10


# --- the team server: basic auth, proxied artifacts, PostgreSQL -------------------------------------------

@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """scripts/team_server.sh start ... stop, in a folder the postgres user can enter."""
    home = Path(tempfile.mkdtemp(prefix="sai-team-"))
    os.chmod(home, 0o755)
    env = {**os.environ, "SAI_TEAM_DIR": str(home / "srv"), "SAI_TEAM_PORT": str(free_port()),
           "SAI_TEAM_PG_PORT": str(free_port()), "MLFLOW": str(Path(sys.executable).parent / "mlflow")}
    script = str(ROOT / "scripts" / "team_server.sh")
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", started.stdout, re.M))
        assert set(exports) == {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
        status = subprocess.run([script, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "mlflow server: up" in status.stdout, status.stdout + status.stderr
        secrets = dict(line.split("=", 1) for line in (home / "srv" / "secrets.env").read_text().split())
        from mlflow.server.auth.client import AuthServiceClient

        # this process (the tests' own MlflowClient) is the admin; commands get their credentials explicitly
        os.environ.update(MLFLOW_TRACKING_USERNAME="admin",
                          MLFLOW_TRACKING_PASSWORD=exports["MLFLOW_TRACKING_PASSWORD"])
        AuthServiceClient(exports["MLFLOW_TRACKING_URI"]).create_user("bob", BOB_PASSWORD)
        yield {"env": exports, "uri": exports["MLFLOW_TRACKING_URI"], "script": script, "script_env": env,
               "secrets": [secrets["PG_PASSWORD"], exports["MLFLOW_TRACKING_PASSWORD"], BOB_PASSWORD],
               "dir": home / "srv", "start_output": started.stdout}
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
        os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
        stopped = subprocess.run([script, "stop"], env=env, capture_output=True, text=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def admin_client(team):
    from mlflow.tracking import MlflowClient

    return MlflowClient(team["uri"])  # the team fixture put the admin's credentials in this process's environment


def test_wrong_or_missing_credentials_exit_2_for_every_command(team, tmp_path, tiny_data):
    uri = team["uri"]
    wrong = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "not-it",
             "YOLO_CONFIG_DIR": str(tmp_path / "ycfg")}
    commands = {
        "train": tiny_train(tmp_path, tiny_data, "--experiment", "refused"),
        "compare-runs": ["compare-runs", "--experiment", "refused"],
        "import-history": ["import-history", str(ROOT / "configs" / "history" / "seed_2024-08.yaml")],
        "promote": ["promote", "0" * 32, "--model", "m"],
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    procs = {name: subprocess.Popen([sys.executable, "-m", "sai_mlflow.cli", *args], cwd=tmp_path,
                                    env={**base, "YOLO_OFFLINE": "1", **wrong}, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, args in commands.items()}
    missing = subprocess.Popen([sys.executable, "-m", "sai_mlflow.cli", "compare-runs", "--tracking-uri", uri],
                               cwd=tmp_path, env={**base}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, p in procs.items():
        out, err = p.communicate(timeout=300)
        line = one_error_line(subprocess.CompletedProcess([], p.returncode, out, err))
        assert "HTTP 401" in line and "MLFLOW_TRACKING_PASSWORD" in line and "not-it" not in out + err, (name, line)
    out, err = missing.communicate(timeout=300)
    assert "HTTP 401, no user" in one_error_line(subprocess.CompletedProcess([], missing.returncode, out, err))
    assert not (tmp_path / "runs").exists()
    client = admin_client(team)
    assert client.get_experiment_by_name("refused") is None


def test_team_server_sixteen_trainings_compare_promote_permissions_sync_and_no_leak(team, tmp_path, tiny_data):
    """16 concurrent tiny trainings through basic auth on PostgreSQL, then the whole flow; nothing leaked."""
    uri, out = team["uri"], Outputs()
    creds = {**team["env"], "YOLO_CONFIG_DIR": str(tmp_path / "ycfg")}
    base = {**os.environ, "YOLO_OFFLINE": "1", "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}
    procs = []
    for i in range(16):
        # run 0 carries the model to promote (waited for: 17 trainings share 2 cores here); the others get a
        # closing flush long enough for 17-fold oversubscription (the 10 s default then leaves a run RUNNING
        # until `sync`, which is the spool working as designed, not what this test checks)
        extra = (["--set", "tracking.final_flush_timeout_s=300"] if i == 0
                 else ["--set", "tracking.log_model=false", "--set", "tracking.final_flush_timeout_s=120"])
        args = tiny_train(tmp_path, tiny_data, *extra, "--set", f"name=t{i}", "--experiment", "team16")
        procs.append(subprocess.Popen([sys.executable, "-m", "sai_mlflow.cli", *args], cwd=tmp_path,
                                      env={**base, **creds},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    # beside them, one training during an outage (nothing listens on its URI): spooled, synced below
    dead = f"http://127.0.0.1:{free_port()}"
    offline = subprocess.Popen([sys.executable, "-m", "sai_mlflow.cli", *tiny_train(
        tmp_path, tiny_data, "--set", "tracking.log_model=false", "--set", "name=offline", "--experiment", "team16"),
        "--tracking-uri", dead], cwd=tmp_path, env={**base, **creds}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    for p in [*procs, offline]:
        o, e = p.communicate(timeout=600)
        out.texts.append(o + e)
        assert p.returncode == 0, (o + e)[-3000:]
    assert "spooled locally as local-" in out.texts[-1]

    client = admin_client(team)
    exp = client.get_experiment_by_name("team16")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len(runs) == 16 and {r.info.status for r in runs} == {"FINISHED"}
    for r in runs:
        assert metric_steps(client, r.info.run_id) == [0, 1], r.info.run_name  # every batch step exactly once
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # proxied: teammates reach them

    env = {**creds}
    bad = out.add(run_cli("sync", "--tracking-uri", uri, cwd=tmp_path,
                          env={**env, "MLFLOW_TRACKING_PASSWORD": "not-it"}))
    assert "HTTP 401" in one_error_line(bad)  # refused, and the spool stays for the right login
    sy = out.add(run_cli("sync", "--tracking-uri", uri, cwd=tmp_path, env=env))
    assert sy.returncode == 0, sy.stdout + sy.stderr
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len(runs) == 17 and {r.info.status for r in runs} == {"FINISHED"}
    for r in runs:
        assert metric_steps(client, r.info.run_id) == [0, 1], r.info.run_name

    cmp = out.add(run_cli("compare-runs", "--experiment", "team16", "--format", "json", cwd=tmp_path, env=env))
    assert cmp.returncode in (0, 3), cmp.stderr[-3000:]
    assert len(json.loads(cmp.stdout)["runs"]) == 17

    t0 = next(r for r in runs if r.info.run_name == "t0")
    pr = out.add(run_cli("promote", t0.info.run_id, "--model", "team-det", "--width", "200", cwd=tmp_path, env=env))
    assert pr.returncode == 0, pr.stdout[-3000:] + pr.stderr[-3000:]

    # bob may read (default READ) but not register versions of admin's model nor move its aliases
    bob = {**env, "MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": BOB_PASSWORD}
    refused = out.add(run_cli("promote", t0.info.run_id, "--model", "team-det", "--alias", "staging", "--force",
                              cwd=tmp_path, env=bob))
    line = one_error_line(refused)
    assert "HTTP 403" in line and "user 'bob'" in line and "nothing was written" in line, line
    versions = client.search_model_versions("name = 'team-det'")
    assert [str(v.version) for v in versions] == ["1"]  # no version without its alias
    assert {k: str(v) for k, v in client.get_registered_model("team-det").aliases.items()} == {"champion": "1"}
    assert [m.name for m in client.search_registered_models()] == ["team-det"]  # no lock left behind
    # and bob may not train into admin's experiment: refused before training
    bob_train = out.add(run_cli(*tiny_train(tmp_path, tiny_data, "--set", "name=bob", "--experiment", "team16"),
                                cwd=tmp_path, env=bob))
    assert "HTTP 403" in one_error_line(bob_train)
    assert len(client.search_runs([exp.experiment_id], max_results=100)) == 17

    n = assert_nothing_leaked(team["secrets"], client, out.texts, [tmp_path / "mlruns", tmp_path / "runs"], tmp_path)
    assert n > 50
