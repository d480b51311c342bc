"""The pure decision core: records + policy -> verdicts (no MLflow here; the e2e tests cover the store)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sai_mlflow.compare import decision as D
from sai_mlflow.compare.decision import RunRecord, decide, plan_fetch
from sai_mlflow.compare.policy import Policy
from sai_mlflow.telemetry.steady_memory import memory_slope_gib_per_hour

P = Policy()


def rec(run_id, **kw) -> RunRecord:
    base = dict(model="m", imgsz=640, dataset_digest="d", gpu="g", batch_size=32, batch_size_effective=32,
                cache_mode="none", data_on_tmpfs=False, step_s_steady=0.5, images_per_s=64.0,
                data_wait_fraction=0.01, peak_gib=40.0, total_gib=140.0, best_map50=0.5, eta_full_s=3600.0,
                epochs_completed=5, epochs_planned=10, run_name=run_id)
    base.update(kw)
    return RunRecord(run_id=run_id, **base)


def seed_records():
    return [
        rec("cache", batch_size=128, batch_size_effective=128, cache_mode="ram", data_on_tmpfs=True,
            step_s_steady=31.41, images_per_s=4.08, eta_full_s=110 * 293 * 31.41, peak_gib=None, total_gib=None,
            best_map50=None, epochs_completed=0, epochs_planned=110),
        rec("b128", batch_size=128, batch_size_effective=128, data_on_tmpfs=True, step_s_steady=1.07,
            images_per_s=119.6, eta_full_s=37313.0, peak_gib=138.0, peak_fraction=138 / 140, best_map50=0.467,
            map50={1: 0.467, 2: 0.445, 3: 0.422, 4: 0.427, 5: 0.425}, map50_last_epoch=5, epochs_planned=110),
        rec("b96", batch_size=96, batch_size_effective=96, data_on_tmpfs=True, step_s_steady=1.24,
            images_per_s=77.4, eta_full_s=53196.0, peak_gib=105.0, best_map50=None, epochs_completed=0,
            epochs_planned=110),
    ]


def test_decision_module_is_pure():
    tree = ast.parse(Path(D.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"mlflow", "torch", "pandas", "numpy", "os", "pathlib", "io", "rich", "yaml"}


def test_seed_case():
    d = decide(seed_records(), P)
    v = {x.run_id: x for x in d.verdicts}
    assert d.recommended.run_id == "b96" and d.exit_code == 0
    assert v["b128"].verdict == D.REJECTED
    assert v["b128"].codes(D.REJECT) == [D.MEMORY_OVER_LIMIT, D.MAP_DEGRADATION]
    assert "98.6 %" in v["b128"].reason(D.MEMORY_OVER_LIMIT).message
    assert "fell 4.2 points" in v["b128"].reason(D.MAP_DEGRADATION).message
    assert v["cache"].verdict == D.REJECTED and D.DOUBLE_CACHE in v["cache"].codes(D.REJECT)
    assert d.suggested_batch == 116
    assert d.limit_gib == pytest.approx(126.0)
    assert d.fit.predict(116) <= 126 < d.fit.predict(117)
    # b96's projected time is 1.43x b128's: under the 1.5x of max_slowdown, so no too_slow
    assert D.TOO_SLOW not in v["b96"].codes()
    # and with a stricter policy it carries the warning but stays recommended
    d2 = decide(seed_records(), Policy(max_slowdown=0.3))
    assert D.TOO_SLOW in d2.by_id("b96").codes(D.WARN) and d2.recommended.run_id == "b96"


def test_every_verdict_and_exit_code():
    d = decide([rec("a"), rec("b", eta_full_s=4000.0), rec("c", status="FAILED"), rec("x", gpu="other")], P)
    assert [v.verdict for v in d.verdicts] == [D.RECOMMENDED, D.ACCEPTABLE, D.REJECTED, D.NOT_COMPARABLE]
    assert d.exit_code == 0
    d = decide([rec("a", status="KILLED")], P)
    assert d.recommended is None and d.exit_code == 3


@pytest.mark.parametrize("kw,code,severity", [
    (dict(peak_gib=130.0, peak_fraction=130 / 140), D.MEMORY_OVER_LIMIT, D.REJECT),
    (dict(map50={1: 0.5, 3: 0.45, 4: 0.45, 5: 0.45}), D.MAP_DEGRADATION, D.REJECT),
    (dict(cache_mode="disk", data_on_tmpfs=True), D.DOUBLE_CACHE, D.REJECT),
    (dict(memory_samples=200,
          memory_steady=[(3600 + i * 36.0, 40 + 2.0 * i * 36 / 3600) for i in range(100)]), D.MEMORY_LEAK, D.REJECT),
    (dict(status="FAILED"), D.INCOMPLETE, D.REJECT),
    (dict(eta_full_s=None, images_per_s=None), D.INCOMPLETE, D.REJECT),
    (dict(data_wait_fraction=0.5), D.DATA_BOUND, D.WARN),
    (dict(batch_size=64, batch_size_effective=32), D.BATCH_CHANGED, D.WARN),
    (dict(eta_full_s=6000.0), D.TOO_SLOW, D.WARN),
    (dict(imgsz=1280), D.NOT_COMPARABLE_CODE, D.EXCLUDE),
])
def test_each_reason(kw, code, severity):
    d = decide([rec("ref"), rec("ref2"), rec("t", **kw)], P)
    v = d.by_id("t")
    assert v.reason(code, severity) is not None, v.reasons
    assert all(r.code in D.REASON_CODES and r.severity in D.SEVERITIES for r in v.reasons)


def test_missing_figures_are_never_invented():
    r = rec("bare", peak_gib=None, total_gib=None, data_wait_fraction=None, batch_size_effective=None,
            cache_mode=None, data_on_tmpfs=None, best_map50=None, eta_full_s=None)
    v = decide([r], P).verdicts[0]
    notes = {x.code for x in v.reasons if x.severity == D.INFO}
    assert notes == {D.MEMORY_OVER_LIMIT, D.MAP_DEGRADATION, D.DOUBLE_CACHE, D.MEMORY_LEAK, D.DATA_BOUND,
                     D.BATCH_CHANGED, D.TOO_SLOW}
    assert all(x.message.startswith("not judged: ") for x in v.reasons if x.severity == D.INFO)
    assert v.verdict == D.RECOMMENDED  # ranked by images_per_s; nothing judged is nothing rejected


def test_partial_late_window_is_said():
    d = decide([rec("a", map50={1: 0.5, 3: 0.4, 4: 0.41}, map50_last_epoch=4)], P)
    msg = d.verdicts[0].reason(D.MAP_DEGRADATION).message
    assert "only epochs 3–4 reached" in msg


def test_group_tie_goes_to_first_listed():
    d = decide([rec("x", gpu="A"), rec("y", gpu="B")], P)
    assert d.by_id("x").verdict == D.RECOMMENDED and d.by_id("y").verdict == D.NOT_COMPARABLE
    d = decide([rec("y", gpu="B"), rec("x", gpu="A")], P)
    assert d.by_id("y").verdict == D.RECOMMENDED
    # the largest group wins even when the first run is outside it
    d = decide([rec("x", gpu="A"), rec("y", gpu="B"), rec("z", gpu="B")], P)
    assert d.by_id("x").verdict == D.NOT_COMPARABLE


def test_plan_fetch_asks_only_what_reasons_need():
    rs = [rec("late", map50_last_epoch=5, memory_samples=1000),
          rec("early", map50_last_epoch=2, memory_samples=1000),
          rec("few", memory_samples=12),
          rec("nothing"),
          rec("other", gpu="x", map50_last_epoch=9, memory_samples=1000)]
    plan = plan_fetch(rs, P)
    # how long the samples last is read from the series once fetched, never from the run's start
    assert plan == {"late": {D.NEED_MAP50, D.NEED_MEMORY}, "early": {D.NEED_MEMORY}}


def test_memory_slope_ignores_validation_spikes():
    pts = [(i * 10.0, 138.0 if i % 30 in (27, 28, 29) else 135.0) for i in range(300)]
    pts[-3:] = [(t, 138.0) for t, _ in pts[-3:]]  # a validation phase right at the end
    assert abs(memory_slope_gib_per_hour(pts)) < 0.01
    growing = [(i * 10.0, 10 + 2.0 * i * 10 / 3600) for i in range(300)]
    assert memory_slope_gib_per_hour(growing) == pytest.approx(2.0, rel=0.02)


@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.floats(10, 1e5), st.booleans()),
                min_size=1, max_size=8))
def test_rule_invariants(specs):
    rs = [rec(f"r{i}", gpu=g, eta_full_s=eta, status="FAILED" if bad else "FINISHED")
          for i, (g, eta, bad) in enumerate(specs)]
    d = decide(rs, P)
    rec_ = [v for v in d.verdicts if v.verdict == D.RECOMMENDED]
    assert len(rec_) <= 1
    assert (d.exit_code == 0) == bool(rec_)
    group = [v for v in d.verdicts if v.verdict != D.NOT_COMPARABLE]
    assert len(group) >= max(sum(1 for s in specs if s[0] == g) for g in "ABC")
    if rec_:
        best = rec_[0].record.eta_full_s
        assert all(v.record.eta_full_s >= best for v in group if v.verdict == D.ACCEPTABLE)
    for v in group:
        assert (v.verdict == D.REJECTED) == any(r.severity == D.REJECT for r in v.reasons)


@pytest.mark.parametrize("gib_per_h,every_s", [(2.0, 36.0), (0.3, 36.0), (5.0, 2.0)])
def test_memory_leak_from_the_summary_is_the_verdict_read_from_the_series(gib_per_h, every_s):
    """A run whose summary covers its memory series needs no fetch and gets the very reason (severity and
    message) that the series read back by a store reader (200 points by MLflow's rule) would give."""
    from sai_mlflow import keys as K
    from sai_mlflow.compare.record import record_from_keys
    from sai_mlflow.telemetry.stats import sample_indices
    from sai_mlflow.telemetry.summary import SummaryInputs, compute_summary

    n = 1001
    samples = [(1.75e12 + i * every_s * 1000, 40 + gib_per_h * i * every_s / 3600 + (3.0 if i % 50 == 0 else 0.0))
               for i in range(n)]
    summary = compute_summary(SummaryInputs(memory=samples))
    half = samples[n // 2:]
    read = [(half[i][0] / 1000.0, half[i][1]) for i in sample_indices(len(half), 200)]
    by_summary = record_from_keys("a", {}, summary, memory_samples=n)
    by_series = record_from_keys("a", {}, {}, memory_samples=n, memory_steady=read)
    assert plan_fetch([by_summary], Policy()) == {} and plan_fetch([by_series], Policy()) == {"a": {K.MEMORY_USED_GIB}}
    from sai_mlflow.compare.reasons import check_memory_leak

    got = check_memory_leak(by_summary, Policy())
    assert got == check_memory_leak(by_series, Policy())
    assert (got is not None and got.severity == D.REJECT) == (gib_per_h > Policy().max_leak_gib_per_hour)
