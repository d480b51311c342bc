"""Overhead of tracking: plain Ultralytics vs TrackedDetectionTrainer, interleaved A/B, plus hot-path hook cost.

Both arms carry the same tiny timing callback (perf_counter at batch end) so the only difference is
our tracking; Ultralytics' own MLflow callback is off in both. Prints medians and the ratio.

    .venv/bin/python benchmarks/overhead.py --pairs 5
    scripts/gpu_check.sh            # the same on a GPU: YOLOv8s, imgsz 1440, batch 32, + NVML/torch peaks, syncs
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


def count_syncs(trainer, counter: list[int]) -> None:
    """Wrap every sai hook so CUDA syncs it triggers are counted (torch sync debug mode 'warn')."""
    import warnings

    for _event, fns in trainer.callbacks.items():
        for i, fn in enumerate(fns):
            if getattr(fn, "__module__", "") != tr.__name__:
                continue

            def wrapped(t_, fn=fn):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    fn(t_)
                counter[0] += sum("synchroniz" in str(w.message) for w in caught)

            fns[i] = wrapped


def batch_times(trainer_cls, overrides, hook_cost: list[float] | None = None,
                syncs: list[int] | None = None) -> list[float]:
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
    if syncs is not None:
        count_syncs(t, syncs)
    t.train()
    if getattr(t, "sai_tracker", None) is not None:
        LAST_RUN["id"] = t.sai_tracker.run_id
    steps, prev = [], None
    for e in ends:
        if e is None:
            prev = None
            continue
        if prev is not None:
            steps.append(e - prev)
        prev = e
    return steps


LAST_RUN: dict[str, str] = {}


def isolated_hook_cost(n: int = 200_000) -> list[float]:
    """The two hot-path hooks on a bare trainer stand-in: their own cost, without GIL contention."""
    from types import SimpleNamespace

    from sai_mlflow.telemetry.clock import BatchClock

    trainer = SimpleNamespace(sai_tracker=SimpleNamespace(clock=BatchClock()))
    start, end = tr.on_train_batch_start, tr.on_train_batch_end
    out = []
    ns = time.perf_counter_ns
    for _ in range(n):
        t0 = ns()
        start(trainer)
        end(trainer)
        out.append((ns() - t0) / 1000.0)
    out.sort()
    return out


def steady_median(steps: list[float]) -> float:
    return statistics.median(steps[detect_warmup(steps):])


def epoch_end_summary_ms(samples: int) -> float:
    """The summary the trainer computes at every epoch end (training thread), with `samples` memory samples held:
    its steady-memory figures read 200 of them, so the cost must not grow with the run."""
    import random

    from sai_mlflow.telemetry.summary import SummaryInputs, compute_summary

    mem = [(1.75e12 + i * 500, 100 + random.random()) for i in range(samples)]
    steps = [0.5] * 10_000
    times = []
    for _ in range(9):
        t = time.perf_counter()
        compute_summary(SummaryInputs(step_s=steps, data_wait_s=steps, batch_size_effective=32, memory=mem))
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--imgsz", type=int, default=96)
    p.add_argument("--train", type=int, default=96)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="yolov8n.yaml")
    p.add_argument("--size", default="160x96", help="synthetic image size WIDTHxHEIGHT")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--aa", action="store_true", help="A/A check: both arms plain Ultralytics (the noise floor)")
    p.add_argument("--system-metrics", choices=("on", "off"), default="on",
                   help="MLflow's system metrics in our arm (tracking.system_metrics; the plain arm never has them)")
    p.add_argument("--system-interval", type=float, default=10.0, help="their sample period in seconds")
    a = p.parse_args()
    import torch

    cuda = a.device != "cpu" and torch.cuda.is_available()
    syncs = [0]
    if cuda:
        torch.cuda.set_sync_debug_mode("warn")
    LOGGER.setLevel("ERROR")
    tmp = Path(tempfile.mkdtemp(prefix="sai_overhead_"))
    w, h = (int(v) for v in a.size.split("x"))
    data = generate(tmp / "data", SyntheticSpec(train=a.train, val=16, width=w, height=h))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    os.environ["SAI_MLFLOW_LOG_MODEL"] = "0"
    os.environ["SAI_MLFLOW_SYSTEM_METRICS"] = "1" if a.system_metrics == "on" else "0"
    os.environ["SAI_MLFLOW_SYSTEM_METRICS_INTERVAL_S"] = str(a.system_interval)
    os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "false"  # MLflow's own monitor: never, in either arm
    base = dict(model=a.model, data=str(data), epochs=a.epochs, batch=a.batch, imgsz=a.imgsz,
                device=a.device, workers=a.workers, plots=False, amp=cuda, val=not cuda,
                project=str(tmp / "runs"), exist_ok=False)
    plain, ours, ratios, hook_us = [], [], [], []
    for i in range(a.pairs):
        order = [("plain", DetectionTrainer), ("ours", DetectionTrainer if a.aa else tr.TrackedDetectionTrainer)]
        if i % 2:
            order.reverse()  # alternate who goes first: drift and caches hit both arms
        got = {}
        for name, cls in order:
            got[name] = steady_median(batch_times(cls, {**base, "name": f"{name}{i}"},
                                                  hook_us if (name == "ours" and not a.aa) else None,
                                                  syncs if (cuda and name == "ours") else None))
        plain.append(got["plain"])
        ours.append(got["ours"])
        ratios.append(got["ours"] / got["plain"])
        print(f"pair {i + 1}: plain {got['plain'] * 1000:.1f} ms/batch, ours {got['ours'] * 1000:.1f} ms/batch, "
              f"ratio {ratios[-1]:.4f}", flush=True)
    hook_us.sort()
    hook_us = hook_us or [float("nan")]

    def pct(q):
        return hook_us[min(len(hook_us) - 1, int(q * len(hook_us)))]

    print("\n| figure | value |\n|---|---|")
    print(f"| system metrics in our arm (every {a.system_interval:g} s) | "
          f"{'n/a: A/A, both arms plain' if a.aa else a.system_metrics} |")
    print(f"| steady s/batch, plain (median of {a.pairs}) | {statistics.median(plain):.4f} |")
    print(f"| steady s/batch, sai_mlflow (median of {a.pairs}) | {statistics.median(ours):.4f} |")
    print(f"| median per-pair ratio ours/plain (goal <= 1.01 on CPU) | {statistics.median(ratios):.4f} |")
    print(f"| hot-path hook cost p50 / p99 / max, us ({len(hook_us)} calls) | "
          f"{pct(0.5):.2f} / {pct(0.99):.2f} / {hook_us[-1]:.1f} |")
    iso = isolated_hook_cost()
    print(f"| same hooks in isolation (no other threads), p50 / p99 / max, us | "
          f"{iso[len(iso) // 2]:.2f} / {iso[int(0.99 * len(iso))]:.2f} / {iso[-1]:.1f} |")
    for n in (7_500, 216_000):  # a 110-epoch seed run's samples; 30 h sampled every 0.5 s
        print(f"| summary at an epoch end with {n:,} memory samples held, ms (median of 9) | "
              f"{epoch_end_summary_ms(n):.2f} |")
    if LAST_RUN:
        from mlflow.tracking import MlflowClient

        m = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(LAST_RUN["id"]).data.metrics
        print(f"| memory peak ({'NVML' if cuda else 'RSS'}), GiB | {m.get('summary/peak_gib', float('nan')):.2f} |")
        print(f"| system/* metrics logged in the last run | {sum(k.startswith('system/') for k in m)} |")
        if cuda:
            print(f"| torch reserved peak (last epoch), GiB | "
                  f"{m.get('epoch/torch_reserved_peak_gib', float('nan')):.2f} |")
            print(f"| GPU syncs triggered inside sai hooks | {syncs[0]} |")


if __name__ == "__main__":
    main()
