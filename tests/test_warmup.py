"""The pure warm-up rule on synthetic s/batch series."""

import random

from sai_mlflow.telemetry.warmup import detect_warmup


def test_seed_shape_thirty_slow_batches_then_steady():
    series = [3.0 - i * 0.05 for i in range(30)] + [1.07] * 500
    assert detect_warmup(series) == 30


def test_flat_series_has_no_warmup():
    assert detect_warmup([0.128] * 200) == 0


def test_noisy_flat_series_has_no_warmup():
    rng = random.Random(1)
    assert detect_warmup([0.128 * rng.uniform(0.95, 1.05) for _ in range(300)]) == 0


def test_gpu_anchor_shape_first_batch_slow_then_a_few_medium():
    series = [10.0, 0.3, 0.31, 0.29, 0.3] + [0.128] * 300
    assert detect_warmup(series) == 5


def test_spike_in_the_middle_is_not_warmup():
    series = [1.0] * 100 + [25.0] + [1.0] * 100
    assert detect_warmup(series) == 0


def test_one_fast_batch_inside_a_slow_start_does_not_end_it():
    series = [2.0, 2.0, 1.0, 2.0, 2.0, 2.0] + [1.0] * 200
    assert detect_warmup(series) == 6


def test_short_series():
    assert detect_warmup([]) == 0
    assert detect_warmup([5.0]) == 0
    assert detect_warmup([5.0, 1.0]) == 1
    assert detect_warmup([5.0, 1.0, 1.0]) == 1


def test_never_settling_series_is_capped_at_half():
    series = [float(100 - i) for i in range(100)]  # keeps getting faster: never under 1.25 x the late median early
    assert detect_warmup(series) == 50
    assert detect_warmup(series + [1.0]) == 50  # 101 batches: half rounds down
