"""import-history: a YAML history file -> replay runs with the keys a live run has, summaries via compute_summary."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import copy_store

from sai_mlflow import keys as K
from sai_mlflow.cli import cli
from sai_mlflow.importers import ImportFailed
from sai_mlflow.importers.history_file import import_history_file, parse
from sai_mlflow.telemetry.summary import SummaryInputs, compute_summary

SEED = Path(__file__).resolve().parent.parent / "configs" / "history" / "seed_2024-08.yaml"


@pytest.fixture
def seeded(seed_store, tmp_path):
    """A copy of the session's seed store (tests/conftest.py `seed_store`): the import results, the runs by name
    and a client on the copy."""
    from sai_mlflow.tracking.store import make_client

    folder, res = seed_store
    client = make_client(copy_store(folder, tmp_path / "seeded"))
    exp = client.get_experiment_by_name("sai-net-stage1")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    return res, runs, client


def test_seed_runs_carry_the_contract_keys(seeded):
    res, runs, _ = seeded
    assert [r.action for r in res] == ["imported"] * 3
    b128 = runs["b128"]
    tags = b128.data.tags
    for t in K.CONTRACT_TAGS:
        assert t in tags, t
    assert tags[K.TAG_RUN_KIND] == "replay" and tags[K.TAG_IMGSZ] == "1440" and tags[K.TAG_DATA_ON_TMPFS] == "true"
    assert b128.data.params["workers"] == "12" and b128.data.params["cache"] == "False"
    assert b128.data.params["env.gpu_total_gib"] == "140"
    assert runs["b128-cache-ram"].data.tags[K.TAG_CACHE_MODE] == "ram"
    m = b128.data.metrics
    for key in (K.BATCH_STEP_S, K.BATCH_DATA_WAIT_S, K.BATCH_COMPUTE_S, K.MEMORY_USED_GIB,
                K.MEMORY_WINDOW_PEAK_GIB, K.VAL_MAP50, K.EPOCH_TRAIN_PEAK_GIB, K.EPOCH_VAL_PEAK_GIB,
                K.EPOCH_STEP_S_MEDIAN, K.EPOCH_DURATION_S):
        assert key in m, key
    assert m[K.SUMMARY_WARMUP_BATCHES] == 30
    assert m[K.SUMMARY_STEP_S_STEADY] == pytest.approx(1.07, rel=0.01)
    assert m[K.SUMMARY_PEAK_GIB] == 138.0 and m[K.SUMMARY_PEAK_FRACTION] == pytest.approx(0.9857, abs=1e-4)
    assert m[K.SUMMARY_BATCHES_PER_EPOCH] == 293 and m[K.SUMMARY_EPOCHS_COMPLETED] == 5
    # the notes' 9.5 h is training only; with the measured validation the projection is ~10.4 h
    assert m[K.SUMMARY_ETA_FULL_S] / 3600 == pytest.approx(10.4, abs=0.1)
    assert b128.info.start_time == int(datetime(2024, 8, 24, 6, tzinfo=UTC).timestamp() * 1000)
    assert b128.info.status == "FINISHED"
    # what the notes do not give is not logged
    cache = runs["b128-cache-ram"].data.metrics
    assert K.MEMORY_USED_GIB not in cache and K.SUMMARY_PEAK_GIB not in cache and K.VAL_MAP50 not in cache
    assert K.TAG_MEMORY_SOURCE not in runs["b128-cache-ram"].data.tags
    assert K.SUMMARY_BEST_MAP50 not in runs["b96"].data.metrics


def test_summary_is_compute_summary_of_the_logged_series(seeded):
    _, runs, client = seeded
    r = runs["b128"]
    rid = r.info.run_id

    def series(key):
        return [m.value for m in sorted(client.get_metric_history(rid, key), key=lambda m: m.step)]

    vals = series(K.EPOCH_DURATION_S)
    step_s = series(K.BATCH_STEP_S)
    memory = sorted(client.get_metric_history(rid, K.MEMORY_USED_GIB), key=lambda m: m.step)
    expect = compute_summary(SummaryInputs(
        step_s=step_s, data_wait_s=series(K.BATCH_DATA_WAIT_S), batch_size_effective=128,
        peak_gib=max(series(K.MEMORY_USED_GIB)), total_gib=140.0, map50=series(K.VAL_MAP50),
        epochs_completed=5, epochs_planned=110, batches_per_epoch=293, val_s=[25.7] * 5,
        memory=[(m.timestamp, m.value) for m in memory]))
    got = {k: v for k, v in r.data.metrics.items() if k.startswith("summary/")}
    assert set(got) == set(expect)
    assert got[K.SUMMARY_MEMORY_SAMPLES] == len(memory)  # the steady-memory figures cover the whole series
    for k in expect:  # the store keeps timestamps in whole ms: the memory figures agree to that
        assert got[k] == pytest.approx(expect[k], rel=1e-6 if k.startswith("summary/memory_") else 1e-9), k
    assert len(vals) == 5 and len(step_s) == 1465


def test_memory_timeline_shape(seeded):
    _, runs, client = seeded
    hist = sorted(client.get_metric_history(runs["b128"].info.run_id, K.MEMORY_USED_GIB), key=lambda m: m.step)
    values = [m.value for m in hist]
    assert values[0] == 25.0 and 35.0 in values and values.count(135.0) > 100 and max(values) == 138.0
    ts = [m.timestamp for m in hist]
    assert ts == sorted(ts) and ts[1] - ts[0] == 10_000  # wall clock, 10 s apart


def test_import_is_idempotent(seeded):
    client = seeded[2]
    again = import_history_file(client, SEED)
    assert [r.action for r in again] == ["already imported"] * 3
    exp = client.get_experiment_by_name("sai-net-stage1")
    assert len(client.search_runs([exp.experiment_id])) == 3


def test_cli_import_then_experiment_override(sqlite_uri, client):
    r = CliRunner().invoke(cli, ["import-history", str(SEED), "--tracking-uri", sqlite_uri, "-e", "elsewhere"])
    assert r.exit_code == 0, r.output
    assert r.output.count("imported") == 3
    exp = client.get_experiment_by_name("elsewhere")
    assert len(client.search_runs([exp.experiment_id])) == 3


def test_measured_series_and_running_status(client, tmp_path):
    f = tmp_path / "h.yaml"
    f.write_text("""
format: sai-history/1
experiment: measured
runs:
  - name: m
    status: RUNNING
    start: 2024-01-01T00:00:00Z
    batch: 8
    batches_per_epoch: 4
    epochs_planned: 2
    speed: {step_s: [5.0, 1.0, 1.0, 1.0, 1.0, 1.0]}
    memory: {total_gib: 16, samples: [[0, 1.0], [5, 2.0], [9, 2.5]], source: rss}
    epochs: {val/mAP50: [0.1], val/mAP50-95: [0.05]}
    epochs_completed: 1
""")
    res = import_history_file(client, f)
    run = client.get_run(res[0].run_id)
    assert run.info.status == "RUNNING"
    assert run.data.tags[K.TAG_MEMORY_SOURCE] == "rss"
    assert run.data.metrics[K.SUMMARY_BEST_MAP50_95] == 0.05
    assert [m.value for m in client.get_metric_history(run.info.run_id, K.BATCH_STEP_S)][0] == 5.0
    assert K.BATCH_DATA_WAIT_S not in run.data.metrics  # not given -> not logged
    # measured series are not called generated; the memory reference lines follow the samples' steps
    assert K.TAG_GENERATED_SERIES not in run.data.tags
    steps = [m.step for m in client.get_metric_history(run.info.run_id, K.MEMORY_USED_GIB)]
    assert [m.step for m in client.get_metric_history(run.info.run_id, K.MEMORY_LIMIT_GIB)] == steps
    assert {m.value for m in client.get_metric_history(run.info.run_id, K.MEMORY_TOTAL_GIB)} == {16.0}


def test_a_replay_says_what_is_measured_and_what_is_generated(seeded):
    _, runs, client = seeded
    b128 = runs["b128"]
    desc = b128.data.tags[K.TAG_DESCRIPTION]
    lines = SEED.read_text().splitlines()
    step_line = next(i for i, x in enumerate(lines, 1) if "step_s: 1.07" in x)
    assert desc.startswith("**Replay**, not a live run: `seed_2024-08.yaml` lines ")
    assert f"- s/batch: 1.07 (line {step_line}: \"L43: 1.07 s/batch\")" in desc  # the file's line and its comment
    assert "first batch s: 10.0" in desc and "ordinary" in desc  # shapes the notes do not give say so
    generated = b128.data.tags[K.TAG_GENERATED_SERIES].split(",")
    assert K.BATCH_STEP_S in generated and K.MEMORY_USED_GIB in generated and K.VAL_MAP50 not in generated
    assert "**Generated**" in desc and f"`{K.BATCH_DATA_WAIT_S}`" in desc
    assert [a.path for a in client.list_artifacts(b128.info.run_id, K.ARTIFACT_HISTORY_DIR)] == \
        [f"{K.ARTIFACT_HISTORY_DIR}/{SEED.name}"]
    assert b128.data.tags["mlflow.user"] and b128.data.tags["mlflow.source.type"]


@pytest.mark.parametrize("text,needle", [
    ("a: [\n", "not valid YAML at line"),
    ("- 1\n", "expected a mapping"),
    ("format: sai-history/1\nruns: []\n", "no runs"),
    ("format: other/2\nruns: [{name: x}]\n", "format 'other/2'"),
    ("runs:\n  - {name: x, start: 2024-01-01, batch: 8, batchsize: 4}\n", "runs[0].batchsize: unknown key"),
    ("runs:\n  - {name: x, start: 2024-01-01, batch: 8, cache: memory}\n", "cache must be one of"),
    ("runs:\n  - {name: x, start: 2024-01-01, batch: 8, epochs: {mAP50: [0.1]}}\n", "unknown metric key 'mAP50'"),
    ("runs:\n  - {name: x, start: 2024-01-01, batch: 8, memory: {ramp: [[0, 1]], samples: [[0, 1]]}}\n",
     "exactly one of memory.ramp or memory.samples"),
    ("runs:\n  - {name: x, start: 2024-01-01, batch: 8}\n  - {name: x, start: 2024-01-01, batch: 8}\n", "unique"),
    ("runs:\n  - {name: x, batch: 8}\n", "runs[0].start"),
])
def test_malformed_files_say_where(tmp_path, text, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ImportFailed) as e:
        parse(f)
    assert needle in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ImportFailed, match="not found"):
        parse(tmp_path / "nope.yaml")


def test_records_of_the_seed(seeded):
    client = seeded[2]
    from sai_mlflow.compare.loader import load_records
    from sai_mlflow.compare.policy import Policy

    records = load_records(client, experiment="sai-net-stage1", policy=Policy(), progress=False)
    assert [r.run_name for r in records] == ["b128-cache-ram", "b128", "b96"]  # oldest first
    assert [r.peak_gib for r in records if r.run_name == "b128"] == [138.0]
    assert sum(r.peak_gib is None for r in records) == 1  # the cache=True run: memory not in the notes
    b128 = next(r for r in records if r.run_name == "b128")
    assert sorted(b128.map50) == [1, 2, 3, 4, 5]  # fetched: it reached the later window
    assert b128.memory_steady is None  # its summary's steady-memory figures cover its 172 samples: not fetched
    assert b128.memory_summary_samples == b128.memory_samples == 172
    b96 = next(r for r in records if r.run_name == "b96")
    assert b96.map50 is None  # it never reached the later window: not fetched
    assert b96.memory_steady is None and b96.memory_steady_span_s == pytest.approx(240.0)


def test_a_summary_that_does_not_cover_the_memory_series_is_not_used(seeded):
    """One sample logged after the summary (a run killed past its last epoch end, a resumed run's earlier
    session): the steady half is read from the series, and judged the same way."""
    _, runs, client = seeded
    from sai_mlflow.compare.decision import decide
    from sai_mlflow.compare.loader import load_records
    from sai_mlflow.compare.policy import Policy

    policy = Policy()
    before = decide(load_records(client, experiment="sai-net-stage1", policy=policy, progress=False), policy)
    b96 = runs["b96"].info.run_id
    hist = sorted(client.get_metric_history(b96, K.MEMORY_USED_GIB), key=lambda m: m.step)
    client.log_metric(b96, K.MEMORY_USED_GIB, hist[-1].value, timestamp=hist[-1].timestamp + 1000, step=len(hist))
    records = load_records(client, experiment="sai-net-stage1", policy=policy, progress=False)
    r = next(r for r in records if r.run_id == b96)
    assert r.memory_samples == len(hist) + 1 and r.memory_summary_samples == len(hist)
    assert r.memory_steady and r.memory_steady[-1][0] == (hist[-1].timestamp + 1000) / 1000.0  # fetched
    leak = decide(records, policy).by_id(b96).reason("memory_leak")
    assert leak.message == "not judged: steady-state memory covers 4.0 min (needs 10 min)"
    assert leak == before.by_id(b96).reason("memory_leak")
