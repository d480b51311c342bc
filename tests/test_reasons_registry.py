"""One registry of reasons and one RunRecord factory (issue 18, steps 2 and 3).

The registry is what decision, guard, renderer and config validation read: an entry added there is
checked, phrased, fixed and accepted by `guard.stop_on` without another edit. The factory is what the
loader, the guard and the run report build records with: the same keys give the same record.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from test_compare_e2e import log_run

from sai_mlflow import keys as K
from sai_mlflow.compare import reasons as R
from sai_mlflow.compare import render
from sai_mlflow.compare.decision import decide
from sai_mlflow.compare.loader import record_from_run
from sai_mlflow.compare.policy import Policy
from sai_mlflow.compare.record import RunRecord, parse_bool, record_from_keys
from sai_mlflow.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
P = Policy()


def test_every_code_has_one_entry_with_a_known_severity():
    assert set(R.REASON_CODES) == {"memory_over_limit", "map_degradation", "double_cache", "memory_leak",
                                   "incomplete", "implausible", "data_bound", "batch_changed", "too_slow",
                                   "not_comparable"}
    for code, spec in R.REGISTRY.items():
        assert spec.code == code and spec.severity in R.SEVERITIES and spec.when
        assert not spec.stoppable or (spec.severity == R.REJECT and spec.fix is not None), code
    assert R.STOPPABLE == ("memory_over_limit", "map_degradation", "double_cache", "memory_leak")


def test_a_new_entry_is_checked_phrased_fixed_and_stoppable_without_another_edit(monkeypatch, tmp_path):
    def check_tiny_batch(r, policy):
        return R.Reason("tiny_batch", R.REJECT, "batch under 2") if r.batch and r.batch < 2 else None

    spec = R.ReasonSpec("tiny_batch", R.REJECT, "batch under 2", check_tiny_batch,
                        fix=lambda reason, r, policy, ctx: "; use --set batch=2",
                        phrase=lambda reason, r, policy: "trains one image at a time", stoppable=True)
    monkeypatch.setitem(R.REGISTRY, "tiny_batch", spec)
    monkeypatch.setattr(R, "STOPPABLE", R.STOPPABLE + ("tiny_batch",))
    r = record_from_keys("r1", {K.TAG_BATCH_SIZE: "1", K.TAG_BATCH_SIZE_EFFECTIVE: "1"},
                         {K.SUMMARY_ETA_FULL_S: 10.0}, run_name="one")
    d = decide([r], P)
    assert d.verdicts[0].verdict == "rejected" and d.verdicts[0].reason("tiny_batch") is not None
    assert "trains one image at a time" in render.verdict_paragraph(d)  # the renderer's phrase
    from sai_mlflow.training.guard import Guard

    (alert,) = [a for a in Guard(P, ["tiny_batch"]).judge(r) if a.reason.code == "tiny_batch"]
    assert alert.stop and alert.line.endswith("; use --set batch=2")  # the guard's fix and stop_on
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {data: d.yaml, model: yolov8n.yaml}\nguard: {stop_on: [tiny_batch]}\n")
    assert load_config(cfg, check_data=False).guard.stop_on == ["tiny_batch"]  # config validation


def test_config_refuses_codes_the_registry_cannot_stop_on(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {data: d.yaml, model: yolov8n.yaml}\nguard: {stop_on: [memory_over_limt]}\n")
    with pytest.raises(ConfigError, match="did you mean 'memory_over_limit'"):
        load_config(cfg, check_data=False)
    cfg.write_text("train: {data: d.yaml, model: yolov8n.yaml}\nguard: {stop_on: [too_slow]}\n")
    with pytest.raises(ConfigError, match="never reject-level"):
        load_config(cfg, check_data=False)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, function-local imports included, as absolute names."""
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg if node.level else ""
            mod = ".".join(p for p in (base, node.module or "") if p)
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_config_and_guard_import_each_other_no_more():
    config = _imports(ROOT / "sai_mlflow" / "config.py")
    guard = _imports(ROOT / "sai_mlflow" / "training" / "guard.py")
    assert "sai_mlflow.training.guard" not in config and "sai_mlflow.config" not in guard
    reasons = _imports(ROOT / "sai_mlflow" / "compare" / "reasons.py")
    higher = ("sai_mlflow.training.guard", "sai_mlflow.config", "sai_mlflow.compare.decision",
              "sai_mlflow.compare.render")
    assert not {m for m in reasons if m.startswith(higher)}


@pytest.mark.parametrize("text,want", [("true", True), ("True", True), ("1", True), ("false", False), ("no", False),
                                       (True, True), (False, False), ("maybe", None), (None, None)])
def test_data_on_tmpfs_is_parsed_one_way(text, want):
    assert parse_bool(text) is want
    r = record_from_keys("x", {} if text is None else {K.TAG_DATA_ON_TMPFS: text}, {})
    assert r.data_on_tmpfs is want
    assert (K.TAG_DATA_ON_TMPFS in r.unreadable) == (want is None and text is not None)


def test_every_summary_figure_is_read_from_its_contract_key():
    meta = {f.name: f.metadata for f in dataclasses.fields(RunRecord)}
    keys = {m["summary"] for m in meta.values() if "summary" in m}
    assert keys <= set(K.SUMMARY_KEYS) and len(keys) >= 11
    summary = {k: 0.5 for k in keys}
    r = record_from_keys("x", {}, summary)
    assert all(getattr(r, name) == 0.5 for name, m in meta.items() if "summary" in m)


def test_the_loader_builds_what_the_factory_builds(client):
    """A run in a real sqlite store, read back through the loader: the factory's record from its keys."""
    rid = log_run(client, "one", batch=32, tags={K.TAG_DEVICES: "2", K.TAG_DATA_ON_TMPFS: "True"},
                  summary={K.SUMMARY_STEP_S_P90: float("nan")})
    run = client.get_run(rid)
    got = record_from_run(run)
    want = record_from_keys(rid, run.data.tags, run.data.metrics, run_name="one", status="FINISHED",
                            experiment_id=run.info.experiment_id)
    assert dataclasses.asdict(got) | {"map50_last_epoch": None, "memory_samples": None} == dataclasses.asdict(want)
    assert got.devices == 2 and got.batch_per_device == 16 and got.data_on_tmpfs is True
    assert got.unreadable == {K.SUMMARY_STEP_S_P90: "nan"}


def test_the_live_guard_and_the_run_report_build_records_with_the_factory():
    from sai_mlflow.training.run_artifacts import RunFacts, _one_run_decision

    facts = RunFacts(run_id="r", run_name="r", batch_size=-1, batch_size_effective=16,
                     summary={K.SUMMARY_PEAK_GIB: 2.0, K.SUMMARY_TOTAL_GIB: 24.0, K.SUMMARY_ETA_FULL_S: 60.0},
                     data_on_tmpfs=True, tags={K.TAG_DEVICES: "2"})
    r = _one_run_decision(facts, 0.9).verdicts[0].record
    assert (r.autobatch, r.batch, r.devices, r.data_on_tmpfs, r.peak_gib) == (True, 16, 2, True, 2.0)
    training = ROOT / "sai_mlflow" / "training"
    src = (training / "guard.py").read_text() + (training / "run_artifacts.py").read_text()
    assert "RunRecord(" not in src  # built by record_from_keys only
