"""compare-runs on the histories users really have: through a real `mlflow server`, runs logged by
Ultralytics' own MLflow callback, and series whose timestamps precede the run's start."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from helpers import Server
from mlflow.entities import Metric
from test_compare_e2e import EXP, T0, by_name, codes, flat_memory, judge, log_run, reason

from sai_mlflow import keys as K
from sai_mlflow.cli.compare import compare_runs
from sai_mlflow.compare.loader import MEMORY_POINTS
from sai_mlflow.tracking.batching import log_batch_chunked


def test_foreign_timestamps_before_the_start_are_judged_for_a_leak(sqlite_uri, client):
    """Memory samples written by another tool keep their own clock: here they end an hour before the run's
    recorded start. The leak is judged on the series' own span, and no negative span is ever printed."""
    leak = [(ts - 4 * 3600, g) for ts, g in flat_memory(hours=3.0, every_s=20.0, leak_per_h=3.0)]
    log_run(client, "imported-leaky", memory=leak, summary={K.SUMMARY_ETA_FULL_S: 100.0})
    log_run(client, "steady", memory=[(ts - 4 * 3600, g) for ts, g in flat_memory(hours=3.0, every_s=20.0)])
    code, obj = judge(sqlite_uri, "--experiment", EXP)
    runs = by_name(obj)
    assert codes(runs["imported-leaky"], "reject") == ["memory_leak"]
    assert "3.00 GiB/h over 1.5 h" in reason(runs["imported-leaky"], "memory_leak")["message"]
    assert runs["steady"]["verdict"] == "recommended" and code == 0
    table = CliRunner().invoke(compare_runs, ["--tracking-uri", sqlite_uri, "--experiment", EXP, "--width", "200"])
    assert table.exit_code == 0 and not re.search(r"-\d[\d.]* (s|min|h)\b", table.stdout), table.stdout


def test_a_series_stamped_at_one_instant_is_not_judged_and_prints_no_span(sqlite_uri, client):
    mem = [(0.0, 40 + i * 0.5) for i in range(100)]  # every sample at one timestamp
    log_run(client, "frozen-clock", memory=mem)
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    leak = reason(by_name(obj)["frozen-clock"], "memory_leak")
    assert leak["severity"] == "info" and "share one timestamp" in leak["message"]


@pytest.fixture
def served_store(tmp_path, client):
    """Runs whose series are long enough to be sampled (steady half > MEMORY_POINTS), one with gaps in
    its steps, all in a sqlite store that a real `mlflow server` also serves."""
    every = 15.0
    n = 4 * MEMORY_POINTS + 37  # odd on purpose: NTILE buckets of unequal size
    log_run(client, "leaky", memory=[(i * every, 40 + 2.5 * i * every / 3600 + (i % 7) * 0.01) for i in range(n)],
            map50=[0.5, 0.5, 0.44, 0.45, 0.44], summary={K.SUMMARY_ETA_FULL_S: 3000.0})
    log_run(client, "steady", memory=[(i * every, 60 + (i % 11) * 0.02) for i in range(n + 101)],
            map50=[0.5, 0.51, 0.52, 0.52, 0.53])
    gappy = log_run(client, "gappy", summary={K.SUMMARY_ETA_FULL_S: 3500.0})
    # steps with holes and a repeated step: the arithmetic shortcut does not hold, MLflow's sampler decides
    steps = [s for s in range(3 * n) if s % 3 != 1] + [10, 2000]
    ms = [Metric(K.MEMORY_USED_GIB, 50 + 1.2 * s * 5 / 3600, int((T0 + s * 5) * 1000) + (7 if s in (10, 2000) else 0),
                 s) for s in steps]
    log_batch_chunked(client, gappy, metrics=ms)
    store = tmp_path / "mlruns"
    server = Server(store)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def same_but_links(served: dict, direct: dict, server_uri: str) -> bool:
    """The same verdict JSON; only the printed links differ: a server serves its own UI, so they start there."""
    links = [served["links"]["compare"], *served["links"]["runs"].values()]
    assert all(u.startswith(server_uri + "/#/") for u in links), links
    strip = lambda d: {k: v for k, v in d.items() if k != "links"}
    return strip(served) == strip(direct)


@pytest.mark.slow  # a real mlflow server
def test_direct_and_server_paths_give_identical_json(served_store, sqlite_uri):
    code_d, direct = judge(sqlite_uri, "--experiment", EXP)
    code_s, served = judge(served_store.uri, "--experiment", EXP)
    assert code_d == code_s == 0
    assert same_but_links(served, direct, served_store.uri)
    runs = by_name(direct)
    assert codes(runs["leaky"], "reject") == ["map_degradation", "memory_leak"]
    assert "memory_leak" not in codes(runs["steady"])
    assert reason(runs["gappy"], "memory_leak")["severity"] == "reject"  # 1.2 GiB/h over 1.0

@pytest.mark.slow
def test_server_path_reads_each_series_once_through_the_bulk_endpoint(served_store):
    """The server's sampling endpoint, one request for the runs sharing a window; never the full
    histories (MLflow's RestStore would download every one, twice)."""
    from sai_mlflow.compare import loader
    from sai_mlflow.tracking.store import make_client

    client = make_client(served_store.uri)
    calls = []
    real = client.get_metric_history
    client.get_metric_history = lambda *a, **k: calls.append(a) or real(*a, **k)
    runs = loader.find_runs(client, experiment=EXP)
    ids = {r.run_name: r.run_id for r in runs}
    got = loader.fetch_series(client, K.MEMORY_USED_GIB, {rid: (10, 700) for rid in ids.values()}, 50)
    assert calls == []
    for name in ("leaky", "steady"):
        steps = [s for s, _, _ in got[ids[name]]]
        assert len(steps) == 50 and steps[0] == 10 and steps[-1] == 700


NATIVE_TRAIN = textwrap.dedent("""
    import sys
    from ultralytics import YOLO, settings

    settings.update(mlflow=True)  # Ultralytics' own MLflow callback, in this temporary config dir only
    data, project = sys.argv[1], sys.argv[2]
    for batch in (8, 16):
        YOLO("yolov8n.yaml").train(data=data, epochs=3, imgsz=64, batch=batch, workers=0, plots=False,
                                   device="cpu", project=project, name=f"b{batch}", amp=False, verbose=False)
""")

@pytest.mark.slow
def test_mlflow_callback_runs_are_judged_on_what_they_have(tmp_path, synthetic_data):
    """Real Ultralytics training with its own MLflow callback (the test's name carries `test_mlflow`,
    which Ultralytics requires of a callback running under pytest), in a temporary YOLO_CONFIG_DIR."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "yolo_cfg"), "MLFLOW_TRACKING_URI": uri,
           "MLFLOW_EXPERIMENT_NAME": "native", "YOLO_OFFLINE": "1"}
    (tmp_path / "mlruns").mkdir()
    p = subprocess.run([sys.executable, "-c", NATIVE_TRAIN, str(synthetic_data), str(tmp_path / "runs")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]

    from sai_mlflow.tracking.store import make_client

    client = make_client(uri)
    exp = client.get_experiment_by_name("native")
    before = {r.info.run_id: r.data.tags for r in client.search_runs([exp.experiment_id])}
    assert len(before) == 2 and all(K.TAG_RUN_KIND not in t for t in before.values())
    assert any(k.startswith("metrics/mAP50B") for r in client.search_runs([exp.experiment_id])
               for k in r.data.metrics)

    # a tiny CPU training's mAP is noise: the drop check is not what this test is about
    r = CliRunner().invoke(compare_runs, ["--tracking-uri", uri, "--experiment", "native", "--format", "json",
                                          "--max-map-drop", "1"])
    assert r.exit_code in (0, 3), r.output
    obj = json.loads(r.stdout)
    runs = by_name(obj)
    assert set(runs) == {"b8", "b16"}
    for name, batch in (("b8", 8), ("b16", 16)):
        x = runs[name]
        assert x["run_kind"] == "ultralytics" and x["batch_size"] == batch
        assert x["cache_mode"] == "none" and x["data_on_tmpfs"] in (True, False)  # data.yaml resolves here
        assert x["eta_full_s"] is not None and x["eta_full_s"] > 0  # 3 epochs x the median from results.csv
        assert x["best_mAP50"] is not None
        assert x["verdict"] in ("recommended", "acceptable")
        notes = {c["code"]: c for c in x["reasons"]}
        assert notes["memory_over_limit"]["severity"] == "info"  # memory: not judged
        assert notes["memory_leak"]["severity"] == "info"
    # mAP per 1-based epoch, the final best.pt validation (step 3) left out
    from sai_mlflow.compare.loader import load_records

    recs = {x.run_name: x for x in load_records(client, experiment="native")}
    assert sorted(recs["b8"].map50) == [1, 2, 3] and recs["b8"].epochs_completed == 3
    steps = sorted(m.step for m in client.get_metric_history(recs["b8"].run_id, "metrics/mAP50B"))
    assert steps == [0, 1, 2, 3]
    # read as they are: nothing written to them
    after = {r.info.run_id: r.data.tags for r in client.search_runs([exp.experiment_id])}
    assert after == before

    # promote takes their model from weights/best.pt (forced: memory and the effective batch are unknown,
    # and the gates count a missing figure as a failure)
    from sai_mlflow import promotion
    from sai_mlflow.compare.policy import load_policy

    out = promotion.promote(client, recs["b8"].run_id, "native-detector", "champion", load_policy(), force=True)
    assert out.action == "forced" and out.evaluation.model_uri == f"runs:/{recs['b8'].run_id}/weights/best.pt"
    mv = client.get_model_version("native-detector", out.version)
    assert mv.source.endswith("weights/best.pt") and mv.run_id == recs["b8"].run_id
    assert "memory_fraction" in out.evaluation.failed


PASSWORD = "s3cret-pw-for-test-only"


def auth_server(store) -> Server:
    """A real `mlflow server --app-name basic-auth` over `store`'s sqlite file."""
    return Server(store, app_name="basic-auth", admin_password=PASSWORD)

@pytest.mark.slow
def test_server_path_carries_the_clients_credentials(tmp_path, client, sqlite_uri, monkeypatch):
    """Through a basic-auth server, the bulk endpoint is asked with the credentials MLflow's client sends
    (MLFLOW_TRACKING_USERNAME/PASSWORD): the same JSON as direct, and the password never printed."""
    n = 2 * MEMORY_POINTS + 90
    log_run(client, "leaky", memory=[(i * 20.0, 40 + 3.0 * i * 20 / 3600) for i in range(n)],
            summary={K.SUMMARY_ETA_FULL_S: 100.0})
    log_run(client, "steady", memory=[(i * 20.0, 40.0) for i in range(n)])
    server = auth_server(tmp_path / "mlruns")
    server.start(timeout=180)
    try:
        _, direct = judge(sqlite_uri, "--experiment", EXP)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        r = CliRunner().invoke(compare_runs, ["--tracking-uri", server.uri, "--experiment", EXP, "--format", "json"])
        assert r.exit_code == 0, r.output
        assert same_but_links(json.loads(r.stdout), direct, server.uri)
        assert PASSWORD not in r.output
        assert codes(by_name(direct)["leaky"], "reject") == ["memory_leak"]
    finally:
        server.kill()
