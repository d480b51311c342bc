"""`sai-mlflow probe`: real CPU probes (fresh processes, the tracked trainer) into a real sqlite store."""

from __future__ import annotations

import json

import pytest
from helpers import ROOT, cli_in_process, run_cli

from sai_mlflow import keys as K

SMOKE = str(ROOT / "configs" / "cpu_smoke.yaml")


def probe_args(tmp, data, uri, *extra):
    return ["probe", "--config", SMOKE, "--set", f"data={data}", "--set", "imgsz=64",
            "--set", f"project={tmp / 'runs'}", "--tracking-uri", uri, *extra]


def runs_of(client, kind):
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps, filter_string=f"tags.{K.TAG_RUN_KIND} = '{kind}'",
                              order_by=["attributes.start_time ASC"])


@pytest.fixture(scope="module")
def session_4_8(tmp_path_factory, synthetic_data):
    """One `probe --batches 4,8 --format json` session, shared by the tests that read it."""
    from sai_mlflow.tracking.store import make_client

    tmp = tmp_path_factory.mktemp("probe48")
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    r = run_cli(*probe_args(tmp, synthetic_data, uri, "--batches", "4,8", "--format", "json"), cwd=tmp)
    return tmp, uri, make_client(uri), r


@pytest.mark.slow
def test_batches_make_one_parent_and_two_children(session_4_8):
    tmp, uri, client, r = session_4_8
    assert r.returncode == 0, r.stderr[-3000:]
    obj = json.loads(r.stdout)  # stdout is exactly the JSON object
    (parent,) = runs_of(client, "probe_session")
    children = runs_of(client, "probe")
    assert [c.data.tags[K.TAG_BATCH_SIZE] for c in children] == ["4", "8"]
    for c in children:
        assert c.data.tags[K.TAG_PARENT_RUN_ID] == parent.info.run_id
        assert c.info.status == "FINISHED" and c.data.tags[K.TAG_PROBE_OUTCOME] == "measured"
        m = c.data.metrics
        assert m[K.EPOCH_VAL_PEAK_GIB] > 0 and m[K.EPOCH_TRAIN_PEAK_GIB] > 0   # validation pass measured
        assert m[K.SUMMARY_EPOCHS_PLANNED] == 2                               # projected onto the config's run
        assert m[K.SUMMARY_BATCHES_PER_EPOCH] == 32 // int(c.data.tags[K.TAG_BATCH_SIZE])
        assert c.data.tags[K.TAG_MEMORY_SOURCE] == "rss" and c.data.tags[K.TAG_DATASET_DIGEST]
    # the JSON: compare-runs' object plus the probe's keys (docs/probe.md)
    assert set(obj) >= {"policy", "recommended", "suggested_batch", "runs", "session_run_id", "next_command",
                        "forecast"}
    assert obj["session_run_id"] == parent.info.run_id
    assert obj["recommended"]["batch_size"] in (4, 8)
    assert obj["next_command"].endswith(f"--set batch={obj['recommended']['batch_size']} --tracking-uri {uri}")
    assert obj["next_command"].startswith(f"sai-mlflow train --config {SMOKE}")
    fc = [x["batch_size"] for x in obj["forecast"]]
    assert 16 in fc and all(x["predicted_peak_gib"] > 0 for x in obj["forecast"])  # 2x the largest probed
    if obj["suggested_batch"]:
        assert obj["suggested_batch"] in fc
    assert all({"train_peak_gib", "val_peak_gib", "outcome"} <= set(x) for x in obj["runs"])
    # the result on the parent run: tags, report, JSON, plot
    t = client.get_run(parent.info.run_id).data.tags
    assert t[K.TAG_PROBE_BATCHES] == "4,8"
    assert t[K.TAG_PROBE_RECOMMENDED] == str(obj["recommended"]["batch_size"])
    assert t[K.TAG_PROBE_NEXT_COMMAND] == obj["next_command"]
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"probe_report.md", "probe.json", "probe_plot.png"} <= arts
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_probes_feed_preflight_and_stay_out_of_compare_verdicts(session_4_8):
    tmp, uri, client, r = session_4_8
    assert r.returncode == 0
    pf = run_cli("preflight", "--config", SMOKE, "--set", "imgsz=64", "--set", "batch=16",
                 "--tracking-uri", uri, "--format", "json", "--no-image-check", cwd=tmp)
    fc = next(f for f in json.loads(pf.stdout)["findings"] if f["code"] == "memory_forecast")
    assert "fit over 2 runs at batches [4, 8]" in fc["message"]
    cr = run_cli("compare-runs", "--experiment", "sai-smoke", "--tracking-uri", uri, cwd=tmp)
    assert cr.returncode == 2 and "only probe runs" in cr.stderr  # probes are never judged as trainings


@pytest.mark.slow
def test_auto_never_launches_a_probe_forecast_over_the_limit(tmp_path, synthetic_data, sqlite_uri, client,
                                                            session_4_8):
    """The limit is set at 1.4x the peak the 4,8 session measured: the proportional forecast of the
    doubled batch (2x) is over it, so --auto must not launch it."""
    _, _, first_client, first = session_4_8
    peaks = [c.data.metrics[K.SUMMARY_PEAK_GIB] for c in runs_of(first_client, "probe")]
    total = runs_of(first_client, "probe")[0].data.metrics[K.SUMMARY_TOTAL_GIB]
    limit = 1.4 * max(peaks)
    r = run_cli(*probe_args(tmp_path, synthetic_data, sqlite_uri, "--auto", "--start", "2", "--max-probes", "3",
                            "--max-memory-fraction", f"{limit / total:.6f}", "--format", "json"), cwd=tmp_path)
    assert r.returncode in (0, 3), r.stderr[-3000:]
    obj = json.loads(r.stdout)
    probes = runs_of(client, "probe")
    assert probes[0].data.tags[K.TAG_BATCH_SIZE] == "2"
    for p in probes[1:]:  # every probe after the first was launched on a forecast within the limit
        assert float(p.data.tags[K.TAG_PROBE_PREDICTED_PEAK]) <= limit * 1.0001
    assert "4" not in [p.data.tags[K.TAG_BATCH_SIZE] for p in probes]   # 2x2 forecast at ~2x the peak: refused
    assert "forecast" in obj["stop_reason"] or "probes made" in obj["stop_reason"]
    (parent,) = runs_of(client, "probe_session")
    assert parent.data.tags[K.TAG_PROBE_STOP_REASON] == obj["stop_reason"]


@pytest.mark.slow
def test_a_probe_over_the_limit_is_recorded_not_crashed(tmp_path, synthetic_data, sqlite_uri, client):
    r = run_cli(*probe_args(tmp_path, synthetic_data, sqlite_uri, "--auto", "--start", "2",
                            "--max-memory-fraction", "0.01"), cwd=tmp_path)
    assert r.returncode == 3, r.stderr[-3000:]   # nothing acceptable, as compare-runs says it
    (p,) = runs_of(client, "probe")
    assert p.info.status == "FINISHED" and p.data.tags[K.TAG_PROBE_OUTCOME] == "over_limit"
    assert "over the limit (measured)" in r.stderr and "memory_over_limit" in r.stdout
    assert "No probed batch is acceptable" in r.stdout and "Traceback" not in r.stderr


@pytest.mark.parametrize("extra, message", [
    (["--batches", "4,x"], "'x' is not a whole number"),
    (["--batches", "0,8"], "batch 0 must be at least 1"),
    (["--batches", "-4"], "must be at least 1"),
    (["--batches", "4", "--auto"], "one of them"),
    ([], "one of them"),
    (["--batches", "4", "--set", "batchh=4"], "did you mean 'batch'"),
])
def test_bad_input_exits_2_and_starts_no_probe(tmp_path, synthetic_data, sqlite_uri, extra, message):
    r = cli_in_process(*probe_args(tmp_path, synthetic_data, sqlite_uri, *extra), cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Error:" in r.stderr and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlruns").exists()


def test_a_config_failing_preflight_exits_1_and_starts_no_probe(tmp_path, synthetic_data, sqlite_uri):
    import yaml

    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad.yaml"  # a validation split with no images: preflight's dataset_split_empty error
    doc = yaml.safe_load(synthetic_data.read_text())
    bad.write_text(yaml.safe_dump({**doc, "path": str(synthetic_data.parent), "val": str(tmp_path / "empty")}))
    r = cli_in_process(*probe_args(tmp_path, bad, sqlite_uri, "--batches", "4"), cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "no probe was started" in r.stderr
    assert not (tmp_path / "runs").exists()
