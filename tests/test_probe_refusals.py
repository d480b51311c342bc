"""Advice that cannot be absurd, at the probe side (issue 17, item 4, first bullet): a probe batch larger
than the training set is refused before any run, and a probe with implausible figures never enters a fit."""

from __future__ import annotations

import math

import pytest
from helpers import ROOT, cli_in_process

SMOKE = str(ROOT / "configs" / "cpu_smoke.yaml")


@pytest.mark.parametrize("batches, named", [("1000000000", "1000000000"), ("4,64", "64")])
def test_a_probe_batch_larger_than_the_training_set_is_refused(tmp_path, synthetic_data, batches, named):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    r = cli_in_process("probe", "--config", SMOKE, "--set", f"data={synthetic_data}", "--set", "imgsz=64",
                       "--set", f"project={tmp_path / 'runs'}", "--tracking-uri", uri, "--batches", batches,
                       cwd=tmp_path)
    assert r.returncode == 2, (r.stdout[-1500:], r.stderr[-1500:])
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"batch {named} exceeds the 32 train images" in errors[0]
    assert "batch_vs_dataset" in errors[0] and "no probe was started" in errors[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlruns").exists()  # no run, no store


def _session_with(peaks):
    from sai_mlflow.probe.session import MEASURED, ProbeResult, Session

    s = object.__new__(Session)  # only the results matter to points(): no store, no process
    s.results = [ProbeResult(batch=b, run_id=f"r{b}", outcome=MEASURED, batch_effective=b, peak_gib=p)
                 for b, p in peaks]
    return s


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 1.8e308, 0.0, -2.0])
def test_an_implausible_probe_peak_never_enters_the_fit(bad):
    from sai_mlflow.probe.plan import forecast

    session = _session_with([(4, 1.6), (8, bad), (16, 2.6)])
    pts = session.points()
    assert [p.peak_gib for p in pts] == [1.6, None, 2.6]
    fit = forecast(pts)
    assert fit is not None and set(fit.batches) == {4, 16}  # the fit is over the two real probes only
    assert math.isfinite(fit.predict(32)) and 0 < fit.predict(32) < 10
    alone = forecast(_session_with([(8, bad)]).points())
    assert alone is None  # nothing to forecast from: --auto stops instead of growing on a fake peak
