"""Every key is valid for MLflow, written once in keys.py, and documented in docs/metrics.md."""

import re
from pathlib import Path

from sai_mlflow import keys as K

ROOT = Path(__file__).resolve().parents[1]


def test_every_contract_key_is_a_valid_mlflow_key():
    for key in K.ALL_METRIC_KEYS + K.CONTRACT_TAGS + K.ENV_PARAMS + K.DATA_PARAMS:
        assert K.is_valid_key(key), key


def test_ultralytics_names_are_mapped():
    assert not K.is_valid_key("metrics/mAP50(B)")
    assert K.sanitize_key("metrics/mAP50(B)") == K.VAL_MAP50
    assert K.sanitize_key("metrics/mAP50-95(B)") == K.VAL_MAP50_95
    assert K.is_valid_key(K.sanitize_key("weird key (x)!"))


def test_no_metric_key_is_spelled_outside_keys_py():
    pattern = re.compile(r"""["'](batch|memory|epoch|summary|val|train|lr)/[A-Za-z0-9_.\-]+["']""")
    offenders = []
    for path in (ROOT / "sai_mlflow").rglob("*.py"):
        if path.name == "keys.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and "ULTRALYTICS" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert offenders == []


def test_docs_name_every_key():
    doc = (ROOT / "docs" / "metrics.md").read_text()
    for key in K.ALL_METRIC_KEYS + K.CONTRACT_TAGS + K.ENV_PARAMS + K.DATA_PARAMS:
        assert f"`{key}`" in doc, key
