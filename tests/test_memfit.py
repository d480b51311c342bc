"""The memory fit shared by compare-runs, preflight and the registry."""

from __future__ import annotations

import pytest

from sai_mlflow.compare.memfit import fit_peak_memory


def test_recovers_the_gpu_anchor_line():
    fit = fit_peak_memory([(32, 37.2), (64, 72.8)])  # the H200 anchor, validation peaks
    assert fit.slope_gib_per_image == pytest.approx(1.1125)
    assert fit.predict(96) == pytest.approx(108.4)
    assert fit.largest_batch_under(0.9 * 139.8) == 111


def test_needs_two_distinct_batches():
    assert fit_peak_memory([(32, 37.2), (32, 38.0)]) is None
    assert fit_peak_memory([(32, float("nan")), (64, 72.8)]) is None


def test_flat_or_falling_memory_bounds_nothing():
    fit = fit_peak_memory([(8, 5.0), (16, 4.0)])
    assert fit.largest_batch_under(100.0) is None


def test_limit_below_the_intercept_fits_no_batch():
    assert fit_peak_memory([(32, 37.2), (64, 72.8)]).largest_batch_under(1.0) is None
