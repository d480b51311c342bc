"""The live guard: the decision core's per-run checks on a training's own record, after each validation.

Real CPU training into a real sqlite store; the policy's memory limit is lowered so that a tiny
run's process memory (RSS) is over it.
"""

from __future__ import annotations

import csv

import pytest
from helpers import ROOT, cli_in_process, run_cli, smoke_args

from sai_mlflow import keys as K
from sai_mlflow.compare.memfit import fit_peak_memory
from sai_mlflow.compare.policy import load_policy
from sai_mlflow.importers.history_file import _tags, build, parse
from sai_mlflow.training.guard import Guard, GuardConfigError, parse_stop_on, replay


def _policy(tmp_path, fraction=0.01):
    p = tmp_path / "policy.yaml"
    p.write_text(f"max_memory_fraction: {fraction}\n")
    return p


def _only_run(client):
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    return runs[0]


def _epochs_in_results(tmp_path):
    (results,) = (tmp_path / "runs").rglob("results.csv")
    with results.open() as f:
        return len(list(csv.DictReader(f)))


@pytest.mark.slow
def test_stop_on_memory_over_limit_stops_after_epoch_1(tmp_path, synthetic_data, sqlite_uri, client):
    r = run_cli(*smoke_args(tmp_path, synthetic_data, "--set", "epochs=5",
                            "--set", "guard.stop_on=[memory_over_limit]",
                            "--policy", str(_policy(tmp_path)), "--tracking-uri", sqlite_uri), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run = _only_run(client)
    tags, m = run.data.tags, run.data.metrics
    assert run.info.status == "FINISHED"
    assert tags[K.TAG_STOPPED_BY] == "memory_over_limit"
    alert = tags[K.TAG_ALERT_PREFIX + "memory_over_limit"]
    assert "limit 1 %" in alert and "sai-mlflow probe --batches 4,6" in alert  # one run: no batch promised
    assert m[K.SUMMARY_EPOCHS_COMPLETED] == 1 and m[K.SUMMARY_EPOCHS_PLANNED] == 5
    assert _epochs_in_results(tmp_path) == 1
    assert list((tmp_path / "runs").rglob("last.pt"))
    out = r.stdout + r.stderr
    assert out.count("guard: batch 8: peaks at") == 1  # printed once


@pytest.mark.slow
def test_warn_only_leaves_training_untouched(tmp_path, synthetic_data, sqlite_uri, client):
    r = run_cli(*smoke_args(tmp_path, synthetic_data, "--policy", str(_policy(tmp_path)),
                            "--tracking-uri", sqlite_uri), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run = _only_run(client)
    assert K.TAG_ALERT_PREFIX + "memory_over_limit" in run.data.tags  # warned ...
    assert K.TAG_STOPPED_BY not in run.data.tags                       # ... and not stopped
    assert run.data.metrics[K.SUMMARY_EPOCHS_COMPLETED] == 3 and _epochs_in_results(tmp_path) == 3
    assert (r.stdout + r.stderr).count("guard: batch 8: peaks at") == 1  # once, not at every epoch


def test_stop_on_accepts_only_reject_level_codes():
    assert parse_stop_on(["memory_over_limit", "map_degradation", "memory_over_limit"]) == (
        "memory_over_limit", "map_degradation")
    with pytest.raises(GuardConfigError, match="never reject-level"):
        parse_stop_on(["data_bound"])
    with pytest.raises(GuardConfigError, match="did you mean 'memory_over_limit'"):
        parse_stop_on(["memory_over_limt"])


def test_bad_stop_on_or_policy_exits_2_before_training(tmp_path, synthetic_data, sqlite_uri):
    r = cli_in_process(*smoke_args(tmp_path, synthetic_data, "--set", "guard.stop_on=[too_slow]",
                            "--tracking-uri", sqlite_uri), cwd=tmp_path)
    assert r.returncode == 2 and "Error:" in r.stderr and "never reject-level" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_memory_fractoin: 0.5\n")
    r = cli_in_process(*smoke_args(tmp_path, synthetic_data, "--policy", str(bad), "--tracking-uri", sqlite_uri),
                cwd=tmp_path)
    assert r.returncode == 2 and "max_memory_fraction" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def _seed_b128():
    _, specs = parse(ROOT / "configs" / "history" / "seed_2024-08.yaml")
    spec = next(s for s in specs if s.name == "b128")
    timeline, _, _ = build(spec)
    return timeline.metrics, _tags(spec)


def test_seed_b128_replayed_through_the_guard():
    """docs/probe.md: with the H200 configs' stop_on, the guard stops b128 at the end of epoch 1."""
    metrics, tags = _seed_b128()
    stop_on = load_h200_stop_on()
    fired = [(ep, t, a) for ep, t, alerts in replay(metrics, tags, Guard(load_policy(), stop_on)) for a in alerts]
    first_ep, first_t, first = fired[0]
    assert (first_ep, first.reason.code, first.stop) == (1, "memory_over_limit", True)
    assert "98.6 % of 140 GiB" in first.line and "in validation" in first.line
    assert "one run cannot tell" in first.line and "--set batch=" not in first.line
    # with the b96 run as evidence, the fit (fixed part included) names the batch: the seed's 116
    fit = fit_peak_memory([(96, 105.0), (128, 138.0)])
    (_, _, with_fit), = [x for x in replay(metrics, tags, Guard(load_policy(), stop_on, memory_fit=fit)) if x[2]][:1]
    assert "largest safe batch 116" in with_fit[0].line and "restart with --set batch=116" in with_fit[0].line
    # mAP degradation is seen at epoch 3 (the later window's first epoch), without stopping
    later = [(ep, a.reason.code, a.stop) for ep, _, a in fired[1:]]
    assert later == [(3, "map_degradation", False)]
    # what the stop saves: epochs 2-5, which the seed trained before restarting at batch 96
    ends = {ep: t for ep, t, _ in replay(metrics, tags, Guard(load_policy(), []))}
    saved_h = (ends[5] - ends[1]) / 3600
    assert first_t == pytest.approx(363.6, abs=1)  # 6.06 min, the notes' one-epoch test
    assert saved_h == pytest.approx(0.377, abs=0.005)


def load_h200_stop_on():
    from sai_mlflow.config import load_config

    cfg = load_config(ROOT / "configs" / "h200_shm_stage1_b128.yaml", check_data=False)
    return cfg.guard.stop_on
