"""Helpers shared by the tests that drive the real `sai-mlflow` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, BATCH = 3, 8


def run_cli(*args, cwd, env=None, timeout=600):
    full_env = {**os.environ, "YOLO_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sai_mlflow.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def smoke_args(tmp: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"),
            "--set", f"data={data}", "--set", f"epochs={EPOCHS}", "--set", f"batch={BATCH}",
            "--set", "imgsz=64", "--set", f"project={tmp / 'runs'}", "--set", "tracking.publish_interval_s=1",
            *extra]
