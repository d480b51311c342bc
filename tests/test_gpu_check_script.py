"""scripts/gpu_check.sh: its CPU path runs here and prints the comparison table."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_cpu_path_prints_the_table():
    env = {**os.environ, "PAIRS": "1", "EPOCHS": "1", "TRAIN": "16", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "CPU path" in out
    assert "median per-pair ratio ours/plain" in out
    assert "hot-path hook cost p50 / p99 / max" in out
    # the probe check: two probes forecast a third batch against a real run; AutoBatch beside it
    assert "forecast for batch 8:" in out and "error of the total" in out
    assert "AutoBatch (batch=-1): chose batch" in out
    assert "three-probe session" in out
