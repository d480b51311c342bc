"""Cost of writing the spool every 0.5 s instead of every 5 s (the SIGKILL window, docs/durability.md).

A training loop at 50 batches/s (3 batch metrics each) plus memory samples every 0.5 s; the publisher
thread's cost per spool write and per second of training, both cadences side by side, medians of 7.

    .venv/bin/python benchmarks/spool_cadence.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sai_mlflow import keys as K  # noqa: E402
from sai_mlflow.tracking.sink import Batch  # noqa: E402
from sai_mlflow.tracking.spool import SpoolingSink  # noqa: E402

BATCHES_PER_S = 50


def batch_for(cadence_s: float, step0: int) -> Batch:
    n = int(BATCHES_PER_S * cadence_s)
    ts = int(time.time() * 1000)
    pts = []
    for i in range(n):
        for key in (K.BATCH_STEP_S, K.BATCH_DATA_WAIT_S, K.BATCH_COMPUTE_S):
            pts.append((key, 0.02 + i * 1e-6, ts + i, step0 + i))
    pts += [(K.MEMORY_USED_GIB, 1.5, ts, step0 + j) for j in range(max(1, int(cadence_s / 0.5)))]
    return Batch(metrics=pts)


def cost(cadence_s: float, writes: int = 40) -> float:
    """Median seconds of one SpoolingSink.write (clean + encode + append) at this cadence."""
    with tempfile.TemporaryDirectory() as tmp:
        sink = SpoolingSink(None, f"local-bench{int(cadence_s * 10)}", root=tmp, report=lambda m: None)
        times = []
        for w in range(writes):
            b = batch_for(cadence_s, w * 1000)
            t = time.perf_counter()
            sink.write(b)
            times.append(time.perf_counter() - t)
        sink.spool.close()
        return statistics.median(times)


def main() -> None:
    rows = []
    for cadence in (5.0, 0.5):
        c = statistics.median(cost(cadence) for _ in range(7))
        rows.append((cadence, c, c / cadence))
    print("| spool write every | points per write | ms per write | publisher CPU per second of training |")
    print("|---|---|---|---|")
    for cadence, c, per_s in rows:
        print(f"| {cadence:g} s | {len(batch_for(cadence, 0).metrics)} | {c * 1000:.2f} | {per_s * 1000:.2f} ms "
              f"({per_s * 100:.3f} %) |")
    print(f"| ratio 0.5 s / 5 s, CPU per second | | | {rows[1][2] / rows[0][2]:.2f}x |")


if __name__ == "__main__":
    main()
