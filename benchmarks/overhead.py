"""Overhead of tracking: plain Ultralytics vs TrackedDetectionTrainer, interleaved A/B, plus hot-path hook cost.

Both arms carry the same tiny timing callback (perf_counter at batch end) so the only difference is
our tracking; Ultralytics' own MLflow callback is off in both. Prints medians and the ratio.

    .venv/bin/python benchmarks/overhead.py --pairs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402
from ultralytics.utils import LOGGER  # noqa: E402

from sai_mlflow import trainer as tr  # noqa: E402
from sai_mlflow.data.synthetic import SyntheticSpec, generate  # noqa: E402
from sai_mlflow.telemetry.warmup import detect_warmup  # noqa: E402


def batch_times(trainer_cls, overrides, hook_cost: list[float] | None = None) -> list[float]:
    ends: list[float] = []
    t = trainer_cls(overrides=overrides)
    t.callbacks = {k: [f for f in v if getattr(f, "__module__", "") != tr.ULTRALYTICS_MLFLOW_MODULE]
                   for k, v in t.callbacks.items()}
    t.add_callback("on_train_epoch_start", lambda tr_: ends.append(None))
    t.add_callback("on_train_batch_end", lambda tr_: ends.append(time.perf_counter()))
    if hook_cost is not None:  # time our two hot-path hooks in place, publisher and sampler running
        for event in ("on_train_batch_start", "on_train_batch_end"):
            fns = t.callbacks[event]
            i = fns.index(tr.HOOKS[event])

            def timed(trainer, fn=fns[i]):
                t0 = time.perf_counter_ns()
                fn(trainer)
                hook_cost.append((time.perf_counter_ns() - t0) / 1000.0)

            fns[i] = timed
    t.train()
    steps, prev = [], None
    for e in ends:
        if e is None:
            prev = None
            continue
        if prev is not None:
            steps.append(e - prev)
        prev = e
    return steps


def steady_median(steps: list[float]) -> float:
    return statistics.median(steps[detect_warmup(steps):])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--imgsz", type=int, default=96)
    p.add_argument("--train", type=int, default=96)
    a = p.parse_args()
    LOGGER.setLevel("ERROR")
    tmp = Path(tempfile.mkdtemp(prefix="sai_overhead_"))
    data = generate(tmp / "data", SyntheticSpec(train=a.train, val=16, width=160, height=96))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    os.environ["SAI_MLFLOW_LOG_MODEL"] = "0"
    base = dict(model="yolov8n.yaml", data=str(data), epochs=a.epochs, batch=a.batch, imgsz=a.imgsz,
                device="cpu", workers=0, plots=False, amp=False, val=True, project=str(tmp / "runs"), exist_ok=False)
    plain, ours, ratios, hook_us = [], [], [], []
    for i in range(a.pairs):
        order = [("plain", DetectionTrainer), ("ours", tr.TrackedDetectionTrainer)]
        if i % 2:
            order.reverse()  # alternate who goes first: drift and caches hit both arms
        got = {}
        for name, cls in order:
            got[name] = steady_median(batch_times(cls, {**base, "name": f"{name}{i}"},
                                                  hook_us if name == "ours" else None))
        plain.append(got["plain"])
        ours.append(got["ours"])
        ratios.append(got["ours"] / got["plain"])
        print(f"pair {i + 1}: plain {got['plain'] * 1000:.1f} ms/batch, ours {got['ours'] * 1000:.1f} ms/batch, "
              f"ratio {ratios[-1]:.4f}", flush=True)
    hook_us.sort()

    def pct(q):
        return hook_us[min(len(hook_us) - 1, int(q * len(hook_us)))]

    print("\n| figure | value |\n|---|---|")
    print(f"| steady s/batch, plain (median of {a.pairs}) | {statistics.median(plain):.4f} |")
    print(f"| steady s/batch, sai_mlflow (median of {a.pairs}) | {statistics.median(ours):.4f} |")
    print(f"| median per-pair ratio ours/plain (goal <= 1.01 on CPU) | {statistics.median(ratios):.4f} |")
    print(f"| hot-path hook cost p50 / p99 / max, us ({len(hook_us)} calls) | "
          f"{pct(0.5):.2f} / {pct(0.99):.2f} / {hook_us[-1]:.1f} |")


if __name__ == "__main__":
    main()
