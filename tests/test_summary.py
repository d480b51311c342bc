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
