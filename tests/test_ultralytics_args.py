"""One reading of Ultralytics' arguments, checked against Ultralytics itself."""

from __future__ import annotations

import pytest

from sai_mlflow.ultralytics_args import MAX_PARAM_CHARS, TRUNCATED, cache_ambiguous, cache_mode, param_text, train_imgsz

CACHE_VALUES = [True, False, "True", "true", 1, 0, "ram", "RAM", "disk", "Disk", None, "1", "false", "none", 2.0]


@pytest.mark.parametrize("value, mode, ambiguous", [
    (True, "ram", False), (False, "none", False), (None, "none", False),
    ("ram", "ram", False), ("RAM", "ram", False), (" disk ", "disk", False), ("disk", "disk", False),
    ("false", "none", False), ("none", "none", False), ("", "none", False),
    (1, "none", True), (2.0, "none", True), ("True", "none", True), ("true", "none", True), ("1", "none", True),
    (0, "none", False), ("weird", "none", False),
])
def test_cache_table(value, mode, ambiguous):
    assert cache_mode(value) == mode
    assert cache_ambiguous(value) is ambiguous


def test_cache_mode_matches_ultralytics_own_dataset(synthetic_data):
    """Build Ultralytics' real training dataset for each value and read which cache it chose."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(50)
    try:
        data = check_det_dataset(str(synthetic_data))
        for value in CACHE_VALUES:
            ds = build_yolo_dataset(get_cfg(overrides={"cache": value, "imgsz": 64}), data["train"], 2, data,
                                    mode="train")
            theirs = ds.cache if ds.cache in ("ram", "disk") else "none"
            assert cache_mode(value) == theirs, f"cache={value!r}: Ultralytics built {ds.cache!r}"
    finally:
        LOGGER.setLevel(level)


@pytest.mark.parametrize("value, side", [
    (640, 640), (1440, 1440), ([1440, 808], 1440), ((808, 1440), 1440), (650, 672), ("640", 640), (640.0, 640),
    (1, 32), ([], None), (["a"], None), ("big", None), (-5, None), (None, None), (0, None),
])
def test_train_imgsz_table(value, side):
    assert train_imgsz(value) == side


def test_train_imgsz_matches_ultralytics_check_imgsz():
    from ultralytics.utils.checks import check_imgsz

    for value in (640, 650, 1440, [1440, 808], 100, 33):
        assert train_imgsz(value) == check_imgsz(value, stride=32, floor=32, max_dim=1)


def test_param_text_cuts_with_a_visible_marker():
    assert param_text("x" * MAX_PARAM_CHARS) == "x" * MAX_PARAM_CHARS
    cut = param_text("y" * (MAX_PARAM_CHARS + 1))
    assert len(cut) == MAX_PARAM_CHARS and cut.endswith(TRUNCATED)
    assert param_text(12) == "12"
