"""Registry promotion and the pyfunc model, with real parts: one real CPU training (module fixture),
its weights logged as a pyfunc model, promotions through the real `promote` command into a real
sqlite store, the champion loaded in a fresh process and served by `mlflow models serve`.

Runs that must fail one gate each are made cheaply: the trained run's tags, summary and model are
copied into new runs through the real MlflowClient, with one tag or metric changed.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import free_port

from sai_mlflow import keys as K
from sai_mlflow import promotion
from sai_mlflow.cli import cli
from sai_mlflow.model.pyfunc import OUTPUT_COLUMNS

pytestmark = pytest.mark.slow  # one real training, promotions and a served model
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GATE_MODEL = "det-gates"


def _env(uri: str, **extra) -> dict:
    return {**os.environ, "YOLO_OFFLINE": "1", "MLFLOW_TRACKING_URI": uri,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


# --- the one real training ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(uri, client, trained run id, a val image path): a real CPU training whose best.pt is logged
    as a pyfunc model."""
    from sai_mlflow.data.synthetic import SyntheticSpec, generate
    from sai_mlflow.model import log_detector_model
    from sai_mlflow.tracking.store import make_client

    tmp = tmp_path_factory.mktemp("registry")
    data = generate(tmp / "data", SyntheticSpec(train=16, val=8, width=96, height=64))
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "sai_mlflow.cli", "train", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"),
         "--set", f"data={data}", "--set", "epochs=1", "--set", "batch=8", "--set", "imgsz=32",
         "--set", f"project={tmp / 'runs'}", "--set", "tracking.publish_interval_s=1", "--tracking-uri", uri],
        cwd=tmp, env=_env(uri), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    client = make_client(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    weights = next((tmp / "runs").rglob("best.pt"))
    model_uri = log_detector_model(client, run.info.run_id, weights, {0: "fire", 1: "smoke"}, 32)
    assert model_uri.startswith("models:/m-")
    return uri, client, run.info.run_id, next((data.parent / "images" / "val").glob("*.jpg"))


def promote_cli(uri, *args):
    return CliRunner().invoke(cli, ["promote", *args, "--tracking-uri", uri, "--width", "200"])


def clone_run(client, run_id: str, *, status="FINISHED", tags=None, metrics=None, drop=(), with_model=True) -> str:
    """A new run with `run_id`'s tags, summary metrics and model, `tags`/`metrics` overriding, `drop` removed."""
    import mlflow.artifacts
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, RunTag

    from sai_mlflow.model import find_run_model

    src = client.get_run(run_id)
    new_tags = {k: v for k, v in src.data.tags.items() if not k.startswith("mlflow.")}
    new_tags.update(tags or {})
    new_metrics = {k: v for k, v in src.data.metrics.items() if k.startswith("summary/")}
    new_metrics.update(metrics or {})
    for k in drop:
        new_tags.pop(k, None)
        new_metrics.pop(k, None)
    rid = client.create_run(src.info.experiment_id, run_name="clone").info.run_id
    now = int(time.time() * 1000)
    client.log_batch(rid, metrics=[Metric(k, float(v), now, 0) for k, v in new_metrics.items()],
                     tags=[RunTag(k, str(v)) for k, v in new_tags.items()])
    if with_model:
        src_model = client.get_logged_model(find_run_model(client, src).split("/", 1)[1])
        local = mlflow.artifacts.download_artifacts(artifact_uri=src_model.artifact_location,
                                                    tracking_uri=client.tracking_uri)
        lm = client.create_logged_model(src.info.experiment_id, name="model", source_run_id=rid)
        client.log_model_artifacts(lm.model_id, local)
        client.finalize_logged_model(lm.model_id, LoggedModelStatus.READY)
        client.log_outputs(rid, [LoggedModelOutput(lm.model_id, 0)])
    if status != "RUNNING":
        client.set_terminated(rid, status)
    return rid


def versions(client, name):
    return sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))


def alias_of(client, name, alias="champion"):
    try:
        return str(client.get_registered_model(name).aliases.get(alias))
    except Exception:
        return None


# --- trained run -> promoted -> loaded in a fresh process -> served ----------------------------------

@pytest.fixture(scope="module")
def champion(store):
    uri, client, run_id, _ = store
    dry = promote_cli(uri, run_id, "--model", "det-a", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would be promoted" in dry.output and versions(client, "det-a") == []
    res = promote_cli(uri, run_id, "--model", "det-a", "--alias", "champion")
    assert res.exit_code == 0, res.output
    for gate in promotion.GATES:
        assert gate in res.output
    return "models:/det-a@champion"


def test_promoted_version_carries_the_audit_trail(store, champion):
    uri, client, run_id, _ = store
    mv = client.get_model_version_by_alias("det-a", "champion")
    t = mv.tags
    assert mv.run_id == run_id
    assert t[promotion.TAG_PREVIOUS_VERSION] == "none" and t[promotion.TAG_ALIAS] == "champion"
    assert t[promotion.TAG_GATES] == "passed" and "@" in t[promotion.TAG_BY]
    assert set(t) == {promotion.TAG_ALIAS, promotion.TAG_PREVIOUS_VERSION, promotion.TAG_GATES, promotion.TAG_BY}
    # the gate table is readable markdown in the description, one row per gate, with the run linked
    desc = mv.description
    assert "| gate | value | threshold | result | note |" in desc and "previous holder: none" in desc
    for gate in promotion.GATES:
        assert f"| {gate} |" in desc
    assert "**FAIL**" not in desc and f"runs/{run_id}?workflowType=machine_learning" in desc
    # promoting the holder again writes nothing
    again = promote_cli(uri, run_id, "--model", "det-a")
    assert again.exit_code == 0 and "already holds" in again.output
    assert versions(client, "det-a") == [1]


def test_champion_loads_and_predicts_in_a_fresh_process(store, champion):
    uri, _, _, image = store
    code = (
        "import base64, json, sys, mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model({champion!r})\n"
        f"img = {str(image)!r}\n"
        "b64 = base64.b64encode(open(img, 'rb').read()).decode()\n"
        "df = pd.DataFrame({'image': [img, b64]})\n"
        "out = m.predict(df, params={'conf': 0.001})\n"
        "default = m.predict(df)\n"
        "print('RESULT ' + json.dumps({'columns': list(out.columns), 'rows': len(out),"
        " 'images': sorted(set(out.image_index.tolist())), 'dtypes': [str(d) for d in out.dtypes],"
        " 'names': sorted(set(out.class_name)), 'default_columns': list(default.columns),"
        " 'inputs': m.metadata.get_input_schema().input_names()}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_env(uri), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert got["columns"] == list(OUTPUT_COLUMNS) == got["default_columns"]
    assert got["inputs"] == ["image"]
    assert got["rows"] > 0 and got["images"] == [0, 1]  # the path and the base64 copy of the same image
    assert got["dtypes"][:2] == ["int64", "int64"] and all(d == "float64" for d in got["dtypes"][3:])
    assert set(got["names"]) <= {"fire", "smoke"}


def _post(url, payload, timeout=120):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_served_champion_answers_a_real_request(store, champion):
    uri, _, _, image = store
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", champion, "--env-manager", "local",
                             "-h", "127.0.0.1", "-p", str(port)], env=_env(uri),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                with urllib.request.urlopen(base + "/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() - t0 < 180, "server did not answer /ping within 180 s"
            time.sleep(0.5)
        print(f"\nserve: /ping answered after {time.monotonic() - t0:.1f} s")
        b64 = base64.b64encode(image.read_bytes()).decode()
        payload = {"dataframe_split": {"columns": ["image"], "data": [[b64]]}, "params": {"conf": 0.001}}
        status, body = _post(base + "/invocations", payload)
        assert status == 200, body
        t1 = time.monotonic()
        status, body = _post(base + "/invocations", payload)
        print(f"serve: warm request {1000 * (time.monotonic() - t1):.0f} ms")
        assert status == 200
        preds = body["predictions"]
        assert preds and set(preds[0]) == set(OUTPUT_COLUMNS)
        assert {p["image_index"] for p in preds} == {0}
        status, _ = _post(base + "/invocations", {"dataframe_split": {"columns": ["image"], "data": [["bm9wZQ=="]]}})
        assert status == 400  # base64 of b"nope": not an image
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


# --- each gate failing on its own ------------------------------------------------------------------

@pytest.fixture(scope="module")
def gated(store):
    """GATE_MODEL@champion held by a clone with best mAP50 0.5; returns (uri, client, holder run id)."""
    uri, client, run_id, _ = store
    holder = clone_run(client, run_id, metrics={K.SUMMARY_BEST_MAP50: 0.5})
    res = promote_cli(uri, holder, "--model", GATE_MODEL)
    assert res.exit_code == 0, res.output
    return uri, client, holder


GOOD = {K.SUMMARY_BEST_MAP50: 0.6}
CASES = {
    "run_finished": dict(status="RUNNING", metrics=GOOD),
    "comparator": dict(tags={K.TAG_CACHE_MODE: "ram", K.TAG_DATA_ON_TMPFS: "true"}, metrics=GOOD),
    "map_improvement": dict(metrics={K.SUMMARY_BEST_MAP50: 0.45}),
    "same_dataset": dict(tags={K.TAG_DATASET_DIGEST: "0123456789abcdef"}, metrics=GOOD),
    "batch_unchanged": dict(tags={K.TAG_BATCH_SIZE_EFFECTIVE: "4"}, metrics=GOOD),
    "memory_fraction": dict(drop=(K.SUMMARY_PEAK_FRACTION,), metrics=GOOD),
}


@pytest.mark.parametrize("gate", list(CASES))
def test_each_gate_fails_on_its_own_and_nothing_is_registered(gated, gate):
    from sai_mlflow.compare.policy import load_policy

    uri, client, holder = gated
    before = versions(client, GATE_MODEL), alias_of(client, GATE_MODEL)
    rid = clone_run(client, holder, **CASES[gate])
    ev = promotion.evaluate(client, rid, GATE_MODEL, "champion", load_policy())
    assert ev.failed == [gate], [(g.name, g.value, g.threshold, g.note) for g in ev.gates]
    res = promote_cli(uri, rid, "--model", GATE_MODEL)
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output and gate in res.output and "nothing was written" in res.output
    assert (versions(client, GATE_MODEL), alias_of(client, GATE_MODEL)) == before


def test_memory_over_the_limit_fails_the_gate_and_the_comparator(gated):
    from sai_mlflow.compare.policy import load_policy

    uri, client, holder = gated
    rid = clone_run(client, holder, metrics={**GOOD, K.SUMMARY_PEAK_FRACTION: 0.95})
    assert (promotion.evaluate(client, rid, GATE_MODEL, "champion", load_policy()).failed
            == ["comparator", "memory_fraction"])


def test_dataset_change_can_be_allowed_and_min_improvement_comes_from_the_policy(gated, tmp_path):
    uri, client, holder = gated
    rid = clone_run(client, holder, **CASES["same_dataset"])
    assert promote_cli(uri, rid, "--model", GATE_MODEL, "--dry-run", "--allow-dataset-change").exit_code == 0
    strict = tmp_path / "strict.yaml"
    strict.write_text("min_improvement: 0.2\n")
    better = clone_run(client, holder, metrics=GOOD)  # +0.1 over the holder
    assert promote_cli(uri, better, "--model", GATE_MODEL, "--dry-run").exit_code == 0
    res = promote_cli(uri, better, "--model", GATE_MODEL, "--dry-run", "--policy", str(strict))
    assert res.exit_code == 1 and "map_improvement" in res.output


def test_promote_force_and_rollback(gated):
    uri, client, holder = gated
    v_holder = alias_of(client, GATE_MODEL)
    good = clone_run(client, holder, metrics=GOOD)
    dry = promote_cli(uri, good, "--model", GATE_MODEL, "--dry-run")
    assert dry.exit_code == 0 and alias_of(client, GATE_MODEL) == v_holder
    res = promote_cli(uri, good, "--model", GATE_MODEL)
    assert res.exit_code == 0, res.output
    v_good = alias_of(client, GATE_MODEL)
    mv = client.get_model_version(GATE_MODEL, v_good)
    assert mv.tags[promotion.TAG_PREVIOUS_VERSION] == v_holder and f"run `{holder}`" in mv.description
    assert "best mAP50: candidate" in res.output and f"current holder v{v_holder}" in res.output
    assert f"#/models/{GATE_MODEL}/versions/{v_good}?workflowType=machine_learning" in res.output

    bad = clone_run(client, good, **CASES["batch_unchanged"])
    forced = promote_cli(uri, bad, "--model", GATE_MODEL, "--force")
    assert forced.exit_code == 0 and "FORCED" in forced.output
    v_forced = alias_of(client, GATE_MODEL)
    ft = client.get_model_version(GATE_MODEL, v_forced).tags
    assert ft[promotion.TAG_GATES] == "forced: batch_unchanged"
    assert "**Forced**" in client.get_model_version(GATE_MODEL, v_forced).description
    assert ft[promotion.TAG_PREVIOUS_VERSION] == v_good

    assert promote_cli(uri, "--model", GATE_MODEL, "--rollback", "--dry-run").exit_code == 0
    assert alias_of(client, GATE_MODEL) == v_forced
    back = promote_cli(uri, "--model", GATE_MODEL, "--rollback")
    assert back.exit_code == 0, back.output
    assert alias_of(client, GATE_MODEL) == v_good
    assert client.get_model_version(GATE_MODEL, v_good).tags[promotion.TAG_ROLLBACK_FROM] == v_forced
    assert promotion.TAG_ROLLED_BACK_TIME in client.get_model_version(GATE_MODEL, v_forced).tags
    assert promote_cli(uri, "--model", GATE_MODEL, "--rollback").exit_code == 0
    assert alias_of(client, GATE_MODEL) == v_holder
    # the first holder has no previous holder: nothing further to roll back to
    res = promote_cli(uri, "--model", GATE_MODEL, "--rollback")
    assert res.exit_code == 2 and "nothing to roll back" in res.output
    assert versions(client, GATE_MODEL)[-1] == int(v_forced)  # every version is kept


# --- bad input: exit 2 --------------------------------------------------------------------------------

def test_bad_input_exits_2(store, tmp_path):
    uri, client, run_id, _ = store
    bare = clone_run(client, run_id, with_model=False)
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("min_improvment: 0.1\n")
    cases = {
        "unknown run": (["0123456789abcdef0123456789abcdef", "--model", "det-x"], "unknown run"),
        "run without a model": ([bare, "--model", "det-x"], "has no logged model"),
        "unknown alias": (["--model", "det-a", "--alias", "nosuch", "--rollback"], "nothing holds"),
        "unknown model": (["--model", "no-such-model", "--rollback"], "nothing holds"),
        "no run id": (["--model", "det-x"], "RUN_ID"),
        "run id with rollback": ([run_id, "--model", "det-a", "--rollback"], "takes no RUN_ID"),
        "reserved alias": ([run_id, "--model", "det-x", "--alias", "v3"], "reserved"),
        "bad policy": ([run_id, "--model", "det-x", "--policy", str(bad_policy)], "did you mean"),
    }
    for what, (args, message) in cases.items():
        res = promote_cli(uri, *args)
        assert res.exit_code == 2, (what, res.output)
        assert message in res.output, (what, res.output)
    assert versions(client, "det-x") == []


# --- two processes racing for one alias ---------------------------------------------------------------

def test_two_racing_promotions_leave_one_holder_and_true_audit_trails(store):
    uri, client, run_id, _ = store
    a = clone_run(client, run_id, metrics={K.SUMMARY_BEST_MAP50: 0.5})
    b = clone_run(client, run_id, metrics={K.SUMMARY_BEST_MAP50: 0.5})
    env = _env(uri, **{promotion.RACE_PAUSE_ENV: "1.5"})  # widen the window between judging and moving the alias
    procs = [subprocess.Popen([sys.executable, "-m", "sai_mlflow.cli", "promote", rid, "--model", "det-race",
                               "--tracking-uri", uri], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for rid in (a, b)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    vs = {str(v.version): v for v in client.search_model_versions("name = 'det-race'")}
    assert len(vs) == 2
    holder = alias_of(client, "det-race")
    (other,) = set(vs) - {holder}
    # the holder was promoted second, over the other; the other was promoted first, over nothing
    assert vs[holder].tags[promotion.TAG_PREVIOUS_VERSION] == other
    assert f"run `{vs[other].run_id}`" in vs[holder].description
    assert vs[other].tags[promotion.TAG_PREVIOUS_VERSION] == "none"
    assert vs[holder].creation_timestamp >= vs[other].creation_timestamp
    assert {vs[holder].run_id, vs[other].run_id} == {a, b}
    assert not [m.name for m in client.search_registered_models() if promotion.LOCK_INFIX in m.name]


# --- issue 9, item 14: names and aliases are checked before any write -------------------------------------

@pytest.mark.parametrize("model, alias, says", [
    ("det-bad-alias", "my champion", "my champion"),
    ("det-long-alias", "a" * 300, "--alias"),
    ("a/b", "champion", "'a/b'"),
])
def test_bad_name_or_alias_writes_nothing_and_names_the_users_model(store, model, alias, says):
    uri, client, run_id, _ = store
    for dry in ((), ("--dry-run",)):
        res = promote_cli(uri, run_id, "--model", model, "--alias", alias, *dry)
        assert res.exit_code == 2, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
        assert says in res.output and promotion.LOCK_INFIX not in res.output, res.output
    names = [m.name for m in client.search_registered_models()]
    assert not any(n == model or n.startswith(model + promotion.LOCK_INFIX) for n in names), names
