"""The pure part of `sai-mlflow probe`: batch lists, --auto's next batch, slices, the full-run plan."""

from __future__ import annotations

import pytest

from sai_mlflow.probe.plan import (
    PlanError,
    Point,
    forecast,
    forecast_batches,
    full_run_plan,
    next_auto,
    parse_batches,
    subset_sizes,
)

GPU = [Point(32, 32, 37.2, False), Point(64, 64, 72.8, False)]  # the H200 anchor, validation peaks
LIMIT = 0.9 * 139.8


def test_parse_batches():
    assert parse_batches("32, 64") == [32, 64]
    for bad, msg in (("32,x", "not a whole number"), ("0", "at least 1"), ("8,8", "twice"), (",", "no batch")):
        with pytest.raises(PlanError, match=msg):
            parse_batches(bad)


def test_auto_grows_geometrically_then_takes_the_largest_batch_forecast_under_the_limit():
    assert next_auto([], LIMIT, 16).batch == 16
    one = next_auto([Point(16, 16, 18.9, False)], LIMIT, 16)
    assert one.batch == 32 and one.predicted_gib == pytest.approx(37.8)  # proportional: 18.9 / 16 x 32
    assert next_auto(GPU[:1] + [Point(48, 48, 55.0, False)], LIMIT, 16).batch == 96  # 2x the last, under the limit


def test_auto_never_launches_a_forecast_over_the_limit():
    step = next_auto(GPU, LIMIT, 16)  # 128 is forecast at 144.0 GiB, over 125.8: the largest batch under it
    assert "144.00 > 125.82" in step.why and step.batch == 111 and step.predicted_gib <= LIMIT
    after = next_auto(GPU + [Point(111, 111, 124.0, False)], LIMIT, 16)
    assert after.batch is None and "largest safe batch, 112, is within 10%" in after.why


def test_auto_stops_on_a_measured_over_limit_point_and_on_limits():
    assert next_auto([Point(16, 8, 20.0, True)], LIMIT).batch is None  # halved by Ultralytics: over
    assert "probes made" in next_auto(GPU, LIMIT, max_probes=2).why
    assert "whole probe set" in next_auto(GPU, LIMIT, max_batch=64).why
    capped = next_auto([Point(16, 16, 18.9, False)], LIMIT, max_batch=24)
    assert capped.batch == 24


def test_one_point_forecast_is_conservative():
    fit = forecast([Point(32, 32, 37.2, False)])
    true = forecast(GPU)
    assert fit.predict(64) > true.predict(64)  # proportional counts the fixed part as growing


def test_slices_and_full_run_plan():
    assert subset_sizes(96, 37413, 4000, batches=60, val_batches=2) == (5760, 384)
    assert subset_sizes(8, 32, 8) == (32, 8)
    bpe, val = full_run_plan(96, 37413, val_s=2.0, val_images_probe=384, n_val=3840)
    assert bpe == 390 and val == pytest.approx(20.0)
    assert forecast_batches([16, 32], [96, None, 32]) == [64, 96]


def test_a_measured_peak_over_the_limit_joins_the_fit_a_crashed_one_does_not():
    over = Point(128, 128, 143.5, True)
    assert forecast(GPU + [over]).batches == (32, 64, 128)
    assert forecast(GPU + [Point(128, None, None, True)]).batches == (32, 64)
