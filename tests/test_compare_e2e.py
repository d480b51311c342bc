"""compare-runs end to end on a real sqlite MLflow store, through the real MlflowClient and the CLI.

Every scenario logs runs the way a tracked run does (contract tags, summary/* at step 0, series
with steps and wall-clock timestamps) via log_batch_chunked, then runs the command.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.entities import Metric, RunTag

from sai_mlflow import keys as K
from sai_mlflow.cli import cli
from sai_mlflow.cli.compare import compare_runs
from sai_mlflow.tracking.batching import log_batch_chunked
from sai_mlflow.tracking.store import get_or_create_experiment

SEED = Path(__file__).resolve().parent.parent / "configs" / "history" / "seed_2024-08.yaml"
EXP = "e2e"
T0 = 1_724_000_000.0  # a fixed wall clock (s)

BASE_TAGS = {K.TAG_MODEL: "yolov8n.yaml", K.TAG_IMGSZ: "640", K.TAG_GPU: "NVIDIA H200",
             K.TAG_DATASET_DIGEST: "d1", K.TAG_CACHE_MODE: "none", K.TAG_DATA_ON_TMPFS: "false",
             K.TAG_RUN_KIND: "train", K.TAG_MEMORY_SOURCE: "nvml", K.TAG_STAGE: "1"}


def log_run(client, name, batch=32, effective=None, tags=None, summary=None, map50=None, memory=None,
            status="FINISHED", exp=EXP, start=T0, step_s=None):
    """A run as the trainer would leave it. summary: overrides of a plain healthy summary;
    memory: list of (seconds since start, GiB); map50: per-epoch values from epoch 1."""
    exp_id = get_or_create_experiment(client, exp)
    run = client.create_run(exp_id, start_time=int(start * 1000), run_name=name)
    rid = run.info.run_id
    eff = effective or batch
    t = {**BASE_TAGS, K.TAG_BATCH_SIZE: str(batch), K.TAG_BATCH_SIZE_EFFECTIVE: str(eff), **(tags or {})}
    s = {K.SUMMARY_STEP_S_STEADY: 0.5, K.SUMMARY_IMAGES_PER_S: eff / 0.5, K.SUMMARY_DATA_WAIT_FRACTION: 0.01,
         K.SUMMARY_PEAK_GIB: 40.0, K.SUMMARY_TOTAL_GIB: 140.0, K.SUMMARY_PEAK_FRACTION: 40 / 140,
         K.SUMMARY_BEST_MAP50: 0.5, K.SUMMARY_ETA_FULL_S: 3600.0, K.SUMMARY_EPOCHS_COMPLETED: 5,
         K.SUMMARY_EPOCHS_PLANNED: 10, K.SUMMARY_WARMUP_BATCHES: 3}
    s.update(summary or {})
    end_ms = int((start + 3600) * 1000)
    ms = [Metric(k, float(v), end_ms, 0) for k, v in s.items() if v is not None]
    for i, v in enumerate(map50 or [], start=1):
        ms.append(Metric(K.VAL_MAP50, v, int((start + i * 60) * 1000), i))
    for i, (ts, g) in enumerate(memory or []):
        ms.append(Metric(K.MEMORY_USED_GIB, g, int((start + ts) * 1000), i))
    for i, v in enumerate(step_s or []):
        ms.append(Metric(K.BATCH_STEP_S, v, int((start + i) * 1000), i))
    log_batch_chunked(client, rid, metrics=ms, tags=[RunTag(k, v) for k, v in t.items() if v is not None])
    if status != "RUNNING":
        client.set_terminated(rid, status, end_time=end_ms)
    return rid


def flat_memory(gib=40.0, hours=1.0, every_s=30.0, leak_per_h=0.0):
    n = int(hours * 3600 / every_s)
    return [(i * every_s, gib + leak_per_h * i * every_s / 3600) for i in range(n)]


def run_cli(uri, *args):
    r = CliRunner().invoke(compare_runs, ["--tracking-uri", uri, *args])
    return r


def judge(uri, *args):
    r = run_cli(uri, "--format", "json", *args)
    assert r.exit_code in (0, 3), r.output
    return r.exit_code, json.loads(r.stdout)


def by_name(obj):
    return {x["run_name"]: x for x in obj["runs"]}


def reason(run, code):
    return next(x for x in run["reasons"] if x["code"] == code)


def codes(run, severity=None):
    return [x["code"] for x in run["reasons"] if severity is None or x["severity"] == severity]


# --- the seed case -------------------------------------------------------------------------------

def test_seed_reproduces_the_96_decision(sqlite_uri, client):
    r = CliRunner().invoke(cli, ["import-history", str(SEED), "--tracking-uri", sqlite_uri])
    assert r.exit_code == 0, r.output
    code, obj = judge(sqlite_uri, "--experiment", "sai-net-stage1")
    assert code == 0
    runs = by_name(obj)
    assert set(obj) == {"policy", "recommended", "suggested_batch", "suggested_batch_per_device", "runs",
                        "links"}  # links, suggested_batch_per_device: additions
    assert set(obj["links"]["runs"]) == {x["run_id"] for x in obj["runs"]}
    assert obj["links"]["recommended"] == obj["links"]["runs"][runs["b96"]["run_id"]]
    assert obj["links"]["compare"].startswith("http://127.0.0.1:5000/#/compare-runs?runs=")
    assert all(u.endswith("workflowType=machine_learning") for u in obj["links"]["runs"].values())
    assert runs["b96"]["verdict"] == "recommended"
    assert obj["recommended"] == {"run_id": runs["b96"]["run_id"], "batch_size": 96}
    assert runs["b128"]["verdict"] == "rejected"
    assert {"memory_over_limit", "map_degradation"} <= set(codes(runs["b128"], "reject"))
    assert runs["b128-cache-ram"]["verdict"] == "rejected"
    assert "double_cache" in codes(runs["b128-cache-ram"], "reject")
    assert obj["suggested_batch"] == obj["suggested_batch_per_device"] == 116
    assert runs["b128"]["peak_fraction"] == pytest.approx(0.986, abs=1e-3)
    assert runs["b128"]["best_mAP50"] == pytest.approx(0.467)
    assert runs["b96"]["best_mAP50"] is None  # no mAP yet: never invented
    assert "map_degradation" in codes(runs["b96"], "info")
    assert obj["policy"]["max_memory_fraction"] == 0.9


# --- one scenario per verdict and per reason --------------------------------------------------

def test_recommended_acceptable_and_mAP_tie_break(sqlite_uri, client):
    log_run(client, "slow", summary={K.SUMMARY_ETA_FULL_S: 4000.0})
    log_run(client, "fast-low", summary={K.SUMMARY_ETA_FULL_S: 3000.0, K.SUMMARY_BEST_MAP50: 0.40})
    log_run(client, "fast-high", summary={K.SUMMARY_ETA_FULL_S: 3000.0, K.SUMMARY_BEST_MAP50: 0.45})
    code, obj = judge(sqlite_uri, "--experiment", EXP)
    runs = by_name(obj)
    assert code == 0
    assert runs["fast-high"]["verdict"] == "recommended"
    assert runs["fast-low"]["verdict"] == "acceptable"
    assert runs["slow"]["verdict"] == "acceptable"


def test_images_per_s_ranks_when_no_projected_time(sqlite_uri, client):
    log_run(client, "a", summary={K.SUMMARY_ETA_FULL_S: None, K.SUMMARY_IMAGES_PER_S: 50.0})
    log_run(client, "b", summary={K.SUMMARY_ETA_FULL_S: None, K.SUMMARY_IMAGES_PER_S: 70.0})
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    assert by_name(obj)["b"]["verdict"] == "recommended"


def test_memory_over_limit(sqlite_uri, client):
    log_run(client, "big", batch=64, summary={K.SUMMARY_PEAK_GIB: 130.0, K.SUMMARY_PEAK_FRACTION: 130 / 140,
                                             K.SUMMARY_ETA_FULL_S: 1000.0})
    log_run(client, "small", batch=32)
    code, obj = judge(sqlite_uri, "--experiment", EXP)
    big = by_name(obj)["big"]
    assert big["verdict"] == "rejected" and codes(big, "reject") == ["memory_over_limit"]
    assert "92.9 %" in reason(big, "memory_over_limit")["message"]
    assert by_name(obj)["small"]["verdict"] == "recommended"
    # the fit over (32, 40) and (64, 130): 2.8125 GiB/image, limit 126 -> 62
    assert obj["suggested_batch"] == 62


def test_map_degradation(sqlite_uri, client):
    log_run(client, "drop", map50=[0.50, 0.49, 0.46, 0.47, 0.46])
    log_run(client, "steady", map50=[0.50, 0.51, 0.52, 0.52, 0.53], summary={K.SUMMARY_ETA_FULL_S: 5000.0})
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    runs = by_name(obj)
    assert codes(runs["drop"], "reject") == ["map_degradation"]
    assert "fell 3.7 points" in reason(runs["drop"], "map_degradation")["message"]
    assert runs["steady"]["verdict"] == "recommended"


def test_map_degradation_not_judged_before_the_late_window(sqlite_uri, client):
    log_run(client, "young", map50=[0.5, 0.3])
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    young = by_name(obj)["young"]
    assert young["verdict"] == "recommended"
    msg = next(x for x in young["reasons"] if x["code"] == "map_degradation")
    assert msg["severity"] == "info" and "not judged" in msg["message"] and "epoch 2" in msg["message"]


def test_double_cache(sqlite_uri, client):
    log_run(client, "dc", tags={K.TAG_CACHE_MODE: "ram", K.TAG_DATA_ON_TMPFS: "true"},
            summary={K.SUMMARY_ETA_FULL_S: 100.0})
    log_run(client, "disk-not-tmpfs", tags={K.TAG_CACHE_MODE: "disk", K.TAG_DATA_ON_TMPFS: "false"})
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    runs = by_name(obj)
    assert codes(runs["dc"], "reject") == ["double_cache"]
    assert runs["disk-not-tmpfs"]["verdict"] == "recommended"


def test_memory_leak(sqlite_uri, client):
    log_run(client, "leaky", memory=flat_memory(leak_per_h=3.0), summary={K.SUMMARY_ETA_FULL_S: 100.0})
    log_run(client, "tight", memory=flat_memory(leak_per_h=0.2))
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    runs = by_name(obj)
    assert codes(runs["leaky"], "reject") == ["memory_leak"]
    assert "3.00 GiB/h" in reason(runs["leaky"], "memory_leak")["message"]
    assert runs["tight"]["verdict"] == "recommended"
    assert "memory_leak" not in codes(runs["tight"])
    # a stricter flag turns the small growth into a leak too -> nothing acceptable, exit 3
    code, obj = judge(sqlite_uri, "--experiment", EXP, "--max-leak-gib-per-hour", "0.1")
    assert code == 3 and obj["recommended"] is None


def test_short_memory_series_is_not_judged_for_leaks(sqlite_uri, client):
    log_run(client, "short", memory=[(i, 1.0 + i * 0.01) for i in range(60)])  # 1 min of fast growth
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    r = by_name(obj)["short"]
    leak = next(x for x in r["reasons"] if x["code"] == "memory_leak")
    assert leak["severity"] == "info" and "not judged" in leak["message"]
    assert r["verdict"] == "recommended"


def test_incomplete_failed_and_missing_summary(sqlite_uri, client):
    log_run(client, "failed", status="FAILED", summary={K.SUMMARY_ETA_FULL_S: 10.0})
    log_run(client, "nosummary", summary={K.SUMMARY_ETA_FULL_S: None, K.SUMMARY_IMAGES_PER_S: None})
    log_run(client, "ok")
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    runs = by_name(obj)
    assert (codes(runs["failed"], "reject") == ["incomplete"]
            and "FAILED" in reason(runs["failed"], "incomplete")["message"])
    assert codes(runs["nosummary"], "reject") == ["incomplete"]
    assert runs["ok"]["verdict"] == "recommended"


def test_data_bound_and_batch_changed_warn_but_do_not_reject(sqlite_uri, client):
    log_run(client, "starved", summary={K.SUMMARY_DATA_WAIT_FRACTION: 0.6, K.SUMMARY_ETA_FULL_S: 3000.0})
    log_run(client, "halved", batch=64, effective=32)
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    runs = by_name(obj)
    assert codes(runs["starved"], "warn") == ["data_bound"]
    assert runs["starved"]["verdict"] == "recommended"
    assert codes(runs["halved"], "warn") == ["batch_changed"]
    assert runs["halved"]["verdict"] == "acceptable"


def test_too_slow(sqlite_uri, client):
    log_run(client, "fast", summary={K.SUMMARY_ETA_FULL_S: 1000.0})
    log_run(client, "slow", summary={K.SUMMARY_ETA_FULL_S: 1600.0})
    log_run(client, "ok", summary={K.SUMMARY_ETA_FULL_S: 1400.0})
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    runs = by_name(obj)
    assert codes(runs["slow"], "warn") == ["too_slow"] and runs["slow"]["verdict"] == "acceptable"
    assert "too_slow" not in codes(runs["ok"])


def test_not_comparable_grouping(sqlite_uri, client):
    a = log_run(client, "cpu-run", tags={K.TAG_GPU: "cpu"}, summary={K.SUMMARY_ETA_FULL_S: 10.0})
    log_run(client, "h200-a")
    log_run(client, "h200-b", tags={K.TAG_DATASET_DIGEST: "d1"})
    log_run(client, "other-model", tags={K.TAG_MODEL: "yolov8s.yaml"})
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    runs = by_name(obj)
    assert runs["cpu-run"]["verdict"] == "not_comparable"
    assert runs["cpu-run"]["reasons"] == [{"code": "not_comparable", "severity": "exclude",
                                           "message": "differs from the group compared: gpu cpu ≠ NVIDIA H200"}]
    assert runs["other-model"]["verdict"] == "not_comparable"
    assert {runs["h200-a"]["verdict"], runs["h200-b"]["verdict"]} == {"recommended", "acceptable"}
    # a tie of one-run groups: the group of the first run listed wins
    _, obj = judge(sqlite_uri, a, runs["other-model"]["run_id"])
    assert by_name(obj)["cpu-run"]["verdict"] == "recommended"
    assert by_name(obj)["other-model"]["verdict"] == "not_comparable"


def test_running_run_is_judged_on_what_it_has(sqlite_uri, client):
    log_run(client, "live", status="RUNNING", summary={K.SUMMARY_ETA_FULL_S: 1000.0})
    log_run(client, "fresh", status="RUNNING", summary={K.SUMMARY_ETA_FULL_S: None, K.SUMMARY_IMAGES_PER_S: None})
    log_run(client, "done")
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    runs = by_name(obj)
    assert runs["live"]["verdict"] == "recommended"
    note = next(x for x in runs["live"]["reasons"] if x["code"] == "incomplete")
    assert note["severity"] == "info" and "RUNNING" in note["message"] and "5 of 10" in note["message"]
    assert runs["fresh"]["verdict"] == "rejected" and codes(runs["fresh"], "reject") == ["incomplete"]


def test_run_without_memory_data(sqlite_uri, client):
    log_run(client, "nomem", tags={K.TAG_MEMORY_SOURCE: None},
            summary={K.SUMMARY_PEAK_GIB: None, K.SUMMARY_TOTAL_GIB: None, K.SUMMARY_PEAK_FRACTION: None})
    log_run(client, "mem", batch=64, summary={K.SUMMARY_PEAK_GIB: 80.0, K.SUMMARY_ETA_FULL_S: 5000.0})
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    r = by_name(obj)["nomem"]
    assert r["verdict"] == "recommended" and r["peak_gib"] is None and r["peak_fraction"] is None
    over = next(x for x in r["reasons"] if x["code"] == "memory_over_limit")
    assert over["severity"] == "info" and "no peak memory" in over["message"]
    assert obj["suggested_batch"] is None  # one batch size with memory: no fit


def test_filter_string_and_probe_runs(sqlite_uri, client):
    log_run(client, "s1", tags={K.TAG_STAGE: "1"})
    log_run(client, "s2", tags={K.TAG_STAGE: "2"}, summary={K.SUMMARY_ETA_FULL_S: 1.0})
    log_run(client, "probe", tags={K.TAG_RUN_KIND: "probe"}, summary={K.SUMMARY_ETA_FULL_S: 0.5})
    _, obj = judge(sqlite_uri, "--experiment", EXP, "--filter", "tags.stage = '1'")
    assert [x["run_name"] for x in obj["runs"]] == ["s1"]
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    assert "probe" not in by_name(obj)


def test_probe_runs_are_evidence_for_the_fit_never_candidates(sqlite_uri, client):
    """A probe is faster by construction (a few batches): it must never be recommended, but its
    (batch, peak) joins the memory fit, so one training plus two probes give a suggested batch."""
    log_run(client, "b96", batch=96, summary={K.SUMMARY_PEAK_GIB: 105.0, K.SUMMARY_PEAK_FRACTION: 0.75})
    probe = {K.TAG_RUN_KIND: "probe"}
    log_run(client, "probe-b32", batch=32, tags=probe, summary={K.SUMMARY_PEAK_GIB: 37.2, K.SUMMARY_ETA_FULL_S: 1.0})
    log_run(client, "probe-b64", batch=64, tags=probe, summary={K.SUMMARY_PEAK_GIB: 72.8, K.SUMMARY_ETA_FULL_S: 1.0})
    log_run(client, "session", tags={K.TAG_RUN_KIND: "probe_session"})
    code, obj = judge(sqlite_uri, "--experiment", EXP)
    assert code == 0 and list(by_name(obj)) == ["b96"] and obj["recommended"]["batch_size"] == 96
    assert sorted(e["batch_size"] for e in obj["evidence"]) == [32, 64]
    assert obj["suggested_batch"] == 115  # fit over (32, 37.2) (64, 72.8) (96, 105) under 0.9 x 140 GiB
    table = run_cli(sqlite_uri, "--experiment", EXP, "--width", "200")
    assert "Evidence (probe runs" in table.output
    only = run_cli(sqlite_uri, obj["evidence"][0]["run_id"])
    assert only.exit_code == 2 and "only probe runs" in only.output


def test_tag_runs_writes_verdicts_back(sqlite_uri, client):
    bad = log_run(client, "bad", tags={K.TAG_CACHE_MODE: "ram", K.TAG_DATA_ON_TMPFS: "true"})
    good = log_run(client, "good")
    r = run_cli(sqlite_uri, "--experiment", EXP, "--tag-runs", "--format", "json")
    assert r.exit_code == 0
    assert client.get_run(bad).data.tags[K.TAG_VERDICT] == "rejected"
    assert client.get_run(bad).data.tags[K.TAG_REASONS] == "double_cache"
    assert client.get_run(good).data.tags[K.TAG_VERDICT] == "recommended"
    hits = client.search_runs([client.get_experiment_by_name(EXP).experiment_id],
                              filter_string=f"tags.`{K.TAG_VERDICT}` = 'rejected'")
    assert [h.info.run_id for h in hits] == [bad]
    # the one-line verdict is the run's description; what it said before stays below, a re-run replaces it
    client.set_tag(good, K.TAG_DESCRIPTION, "notes from the person who trained it")
    assert run_cli(sqlite_uri, "--experiment", EXP, "--tag-runs").exit_code == 0
    desc = client.get_run(good).data.tags[K.TAG_DESCRIPTION]
    assert desc.startswith("**compare-runs verdict:** Recommended: ")
    assert desc.endswith("\n\nnotes from the person who trained it") and desc.count("compare-runs verdict") == 1
    assert "caches images a second time" in client.get_run(bad).data.tags[K.TAG_DESCRIPTION]


def test_log_report_writes_a_decision_run_that_later_comparisons_leave_out(sqlite_uri, client):
    bad = log_run(client, "bad", tags={K.TAG_CACHE_MODE: "ram", K.TAG_DATA_ON_TMPFS: "true"})
    good = log_run(client, "good", memory=flat_memory(), map50=[0.4, 0.5], step_s=[3.0] + [0.5] * 50)
    r = run_cli(sqlite_uri, "--experiment", EXP, "--log-report", "--tag-runs", "--ui-url", "http://mlflow.example:8080/")
    assert r.exit_code == 0, r.output
    exp_id = client.get_experiment_by_name(EXP).experiment_id
    (dec,) = client.search_runs([exp_id], filter_string=f"tags.{K.TAG_RUN_KIND} = '{K.RUN_KIND_DECISION}'")
    assert dec.info.status == "FINISHED" and dec.info.run_name == "decision: batch 32 recommended"
    assert set(dec.data.tags[K.TAG_JUDGED_RUNS].split(",")) == {bad, good}
    assert dec.data.tags[K.TAG_RECOMMENDED_RUN] == good
    assert f"(#/experiments/{exp_id}/runs/{good}?workflowType=machine_learning)" \
        in dec.data.tags[K.TAG_DESCRIPTION]  # stored links are relative: any host, any port
    arts = {a.path for a in client.list_artifacts(dec.info.run_id)}
    assert arts == {K.ARTIFACT_DECISION_MD, K.ARTIFACT_DECISION_JSON, K.ARTIFACT_DECISION_PLOT}
    # the table's links, the judged runs' descriptions link the report
    report = f"http://mlflow.example:8080/#/experiments/{exp_id}/runs/{dec.info.run_id}?workflowType=machine_learning"
    assert "Open in MLflow:" in r.stdout and report in r.stdout
    compare_line = next(x for x in r.stdout.splitlines() if "compare the 2 judged runs" in x)
    assert compare_line.endswith("&workflowType=machine_learning")  # whole, never folded or cropped
    assert f"[Decision report]({report.split('/', 3)[3]})" in client.get_run(good).data.tags[K.TAG_DESCRIPTION]
    _, obj = judge(sqlite_uri, "--experiment", EXP)
    assert sorted(by_name(obj)) == ["bad", "good"]  # the decision run is not judged itself


def test_markdown_and_plot(sqlite_uri, client, tmp_path):
    log_run(client, "a", memory=flat_memory(), map50=[0.4, 0.5], step_s=[3.0] + [0.5] * 50)
    log_run(client, "b", batch=64, summary={K.SUMMARY_PEAK_GIB: 75.0, K.SUMMARY_ETA_FULL_S: 4000.0})
    png = tmp_path / "c.png"
    r = run_cli(sqlite_uri, "--experiment", EXP, "--format", "markdown", "--plot", str(png))
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("## compare-runs")
    assert "| **a** |" in r.stdout
    assert "**Open in MLflow:** [compare the 2 judged runs](http://127.0.0.1:5000/#/compare-runs?runs=" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- exit codes and bad input ------------------------------------------------------------------

def test_exit_3_when_nothing_is_acceptable(sqlite_uri, client):
    log_run(client, "x", status="KILLED")
    r = run_cli(sqlite_uri, "--experiment", EXP)
    assert r.exit_code == 3
    assert "No run is acceptable" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["0123456789abcdef0123456789abcdef"], "unknown run id"),
    (["--experiment", "nope"], "no experiment named 'nope'"),
    (["--experiment", "empty"], "has no runs"),
    (["--experiment", EXP, "--filter", "tags.stage === 1"], "bad --filter"),
    (["--experiment", EXP, "--max-memory-fraction", "1.5"], "--max-memory-fraction"),
    (["--experiment", EXP, "--format", "yaml"], "Invalid value"),
    (["abc", "--experiment", EXP], "not both"),
])
def test_exit_2_on_bad_input(sqlite_uri, client, args, needle):
    log_run(client, "x")
    get_or_create_experiment(client, "empty")
    r = run_cli(sqlite_uri, *args)
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


def test_exit_2_on_policy_typo(sqlite_uri, client, tmp_path):
    log_run(client, "x")
    pol = tmp_path / "p.yaml"
    pol.write_text("max_memory_fractoin: 0.8\n")
    r = run_cli(sqlite_uri, "--experiment", EXP, "--policy", str(pol))
    assert r.exit_code == 2
    assert "did you mean 'max_memory_fraction'" in r.output


def test_exit_2_on_malformed_history_file(sqlite_uri, tmp_path):
    bad = tmp_path / "h.yaml"
    bad.write_text("format: sai-history/1\nruns:\n  - name: x\n    start: 2024-08-01T00:00:00Z\n    batch: 0\n")
    r = CliRunner().invoke(cli, ["import-history", str(bad), "--tracking-uri", sqlite_uri])
    assert r.exit_code == 2 and "runs[0].batch" in r.output


def test_standalone_console_script_exit_codes(sqlite_uri, client, tmp_path):
    """The installed `compare-runs` entry point, as a subprocess: real exit codes, one clean message."""
    import shutil
    import subprocess
    import sys

    log_run(client, "x")
    exe = shutil.which("compare-runs", path=str(Path(sys.executable).parent))
    assert exe, "compare-runs console script not installed"
    ok = subprocess.run([exe, "--tracking-uri", sqlite_uri, "--experiment", EXP, "--format", "json"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["runs"][0]["run_name"] == "x"
    bad = subprocess.run([exe, "--tracking-uri", sqlite_uri, "ffffffffffffffffffffffffffffffff"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "unknown run id" in bad.stderr and "Traceback" not in bad.stderr


def test_many_small_runs_are_all_judged(sqlite_uri, client):
    """Twelve runs with series: each judged, the fastest recommended (how fast: benchmarks/compare_scale.py)."""
    for i in range(12):
        log_run(client, f"r{i}", memory=flat_memory(every_s=60), map50=[0.5] * 6,
                summary={K.SUMMARY_ETA_FULL_S: 3600.0 + i})
    code, obj = judge(sqlite_uri, "--experiment", EXP)
    runs = by_name(obj)
    assert code == 0 and sorted(runs) == sorted(f"r{i}" for i in range(12))
    assert runs["r0"]["verdict"] == "recommended"
    assert all(runs[f"r{i}"]["verdict"] == "acceptable" for i in range(1, 12))
    assert all(not codes(r, "reject") for r in runs.values())


def test_sql_fast_path_and_public_api_agree(sqlite_uri, client, monkeypatch):
    """Series come from a plain range scan on SQL stores and from MLflow's public API elsewhere:
    the same verdicts and messages either way."""
    from sai_mlflow.backend import read_sql

    log_run(client, "leaky", memory=flat_memory(leak_per_h=3.0), map50=[0.5, 0.5, 0.4, 0.4, 0.4])
    log_run(client, "fine", memory=flat_memory(), map50=[0.5, 0.5, 0.5, 0.5, 0.5],
            summary={K.SUMMARY_ETA_FULL_S: 5000.0})
    _, fast = judge(sqlite_uri, "--experiment", EXP)
    monkeypatch.setattr(read_sql, "sql_reader", lambda uri: None)  # MLflow's client reads instead
    _, slow = judge(sqlite_uri, "--experiment", EXP)
    assert fast == slow
    assert codes(by_name(fast)["leaky"], "reject") == ["map_degradation", "memory_leak"]
