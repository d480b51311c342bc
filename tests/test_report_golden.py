"""Golden text of the compare-runs table for the seed case (fixed width, no colour).

Regenerate after an intended change with: UPDATE_GOLDEN=1 pytest tests/test_report_golden.py
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from helpers import copy_store
from rich.console import Console

from sai_mlflow.compare import render as report
from sai_mlflow.compare.decision import decide
from sai_mlflow.compare.loader import load_records
from sai_mlflow.compare.policy import load_policy

ROOT = Path(__file__).resolve().parent
GOLDEN = ROOT / "golden" / "compare_seed_table.txt"


@pytest.fixture(scope="module")
def rendered(seed_store, tmp_path_factory) -> tuple[str, object]:
    """The seed's table and decision, judged once for this module from a copy of the session's seed store."""
    from sai_mlflow.tracking.store import make_client

    client = make_client(copy_store(seed_store[0], tmp_path_factory.mktemp("golden") / "store"))
    policy = load_policy()
    decision = decide(load_records(client, experiment="sai-net-stage1", policy=policy, progress=False), policy)
    buf = io.StringIO()
    report.render_table(decision, Console(file=buf, width=170, color_system=None, force_terminal=False,
                                          legacy_windows=False))
    # trailing blanks are rich's padding: not part of what is compared (editors strip them)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n", decision


def test_seed_table_matches_golden(rendered):
    text, _ = rendered
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.exists(), f"{GOLDEN} is missing: restore it from git (UPDATE_GOLDEN=1 only after an intended change)"
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_seed_paragraph_in_plain_words(rendered):
    _, decision = rendered
    words = report.verdict_paragraph(decision)
    assert words.startswith("Recommended: batch 96, because batch 128 peaks at 98.6 % of 140 GiB and its mAP@0.5 "
                            "fell 4.2 points after epoch 1; cost: +4.4 h")
    assert "batch 128 with cache=ram" in words and "116" in words
    md = report.to_markdown(decision)
    assert "| **b96** |" in md and md.count("\n| ") >= 4
