"""summary/* from recorded series: the same math for live and replayed runs."""

import pytest

from sai_mlflow import keys as K
from sai_mlflow.telemetry.summary import SummaryInputs, compute_summary


def test_seed_b128_figures():
    step = [3.0] * 30 + [1.07] * 600
    s = compute_summary(SummaryInputs(
        step_s=step, data_wait_s=[0.01] * len(step), batch_size_effective=128, peak_gib=138.0,
        total_gib=140.0, map50=[0.467, 0.44, 0.427, 0.422, 0.425], epochs_completed=5,
        epochs_planned=110, batches_per_epoch=293, val_s=[50.0] * 5,
    ))
    assert s[K.SUMMARY_WARMUP_BATCHES] == 30
    assert s[K.SUMMARY_STEP_S_STEADY] == pytest.approx(1.07)
    assert s[K.SUMMARY_IMAGES_PER_S] == pytest.approx(128 / 1.07)
    assert s[K.SUMMARY_PEAK_FRACTION] == pytest.approx(138 / 140)
    assert s[K.SUMMARY_BEST_MAP50] == pytest.approx(0.467)
    assert s[K.SUMMARY_ETA_FULL_S] == pytest.approx(110 * (293 * 1.07 + 50.0))
    assert s[K.SUMMARY_DATA_WAIT_FRACTION] == pytest.approx(0.01 / 1.07)


def test_missing_figures_are_left_out_not_invented():
    s = compute_summary(SummaryInputs(epochs_completed=0))
    assert K.SUMMARY_STEP_S_STEADY not in s
    assert K.SUMMARY_PEAK_FRACTION not in s
    assert K.SUMMARY_ETA_FULL_S not in s
    assert s[K.SUMMARY_EPOCHS_COMPLETED] == 0
    assert not any(k.startswith("summary/memory_") for k in s)


def _leaking(n: int, gib_per_h: float, every_s: float = 60.0) -> list[tuple[float, float]]:
    """(time ms, GiB) samples, as the monitor keeps them and MLflow stores them."""
    return [(i * every_s * 1000.0, 50.0 + gib_per_h * i * every_s / 3600.0) for i in range(n)]


def test_steady_memory_figures_describe_the_second_half_of_the_whole_series():
    mem = [(i * 60_000.0, 25.0) for i in range(50)] + _leaking(50, 2.0)  # warm start, then a 2 GiB/h leak
    mem = [(i * 60_000.0, g) for i, (_, g) in enumerate(mem)]
    s = compute_summary(SummaryInputs(memory=mem))
    assert s[K.SUMMARY_MEMORY_SAMPLES] == 100
    assert s[K.SUMMARY_MEMORY_STEADY_SPAN_S] == 49 * 60.0  # steps 50..99, not the warm start
    assert s[K.SUMMARY_MEMORY_GROWTH_GIB_PER_H] == pytest.approx(2.0, rel=1e-9)


def test_a_resumed_session_gives_the_figures_only_when_it_holds_the_whole_steady_half():
    series = _leaking(100, 1.5)
    late = compute_summary(SummaryInputs(memory=series[40:], memory_first_step=40))  # steady half = steps 50..99
    whole = compute_summary(SummaryInputs(memory=series))
    for k in (K.SUMMARY_MEMORY_SAMPLES, K.SUMMARY_MEMORY_STEADY_SPAN_S, K.SUMMARY_MEMORY_GROWTH_GIB_PER_H):
        assert late[k] == whole[k], k
    early = compute_summary(SummaryInputs(memory=series[60:], memory_first_step=60))  # steps 50..59 elsewhere
    assert not any(k.startswith("summary/memory_") for k in early)


def test_a_long_series_is_judged_on_the_points_a_store_reader_keeps():
    """Past 400 samples the steady half is judged on the 200 points MLflow's sampler keeps, so the summary's
    figures are the ones compare-runs computes from the series read back (and cost no more per epoch)."""
    from sai_mlflow.backend.read_api import sample_indices
    from sai_mlflow.telemetry.steady_memory import steady_memory

    series = [(t, g + (0.5 if i % 7 == 0 else 0.0)) for i, (t, g) in enumerate(_leaking(1001, 1.2, every_s=2.0))]
    s = compute_summary(SummaryInputs(memory=series))
    half = series[500:]
    read_back = steady_memory([(half[i][0] / 1000.0, half[i][1]) for i in sample_indices(len(half), 200)])
    assert s[K.SUMMARY_MEMORY_GROWTH_GIB_PER_H] == read_back.growth_gib_per_h
    assert s[K.SUMMARY_MEMORY_STEADY_SPAN_S] == read_back.span_s == 500 * 2.0
