"""Files a run leaves behind beside its weights: the per-batch table and the memory timeline plot."""

from __future__ import annotations

import csv
from pathlib import Path

from .telemetry.clock import BatchClock


def write_batch_table(path: Path, clock: BatchClock) -> Path:
    """One row per batch: global step, data wait, compute, step seconds, wall time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "data_wait_s", "compute_s", "step_s", "timestamp_ms"])
        for i, (wait, compute, end) in enumerate(list(clock.rows)):
            w.writerow([clock.offset + i, f"{wait:.6f}", f"{compute:.6f}", f"{wait + compute:.6f}", clock.wall_ms(end)])
    return path


def write_memory_timeline(path: Path, samples: list[tuple[int, float]], total_gib: float, source: str) -> Path | None:
    """Memory over time with the device total drawn in: the picture the seed's 138/140 GB needed."""
    if not samples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = samples[0][0]
    xs = [(ts - t0) / 1000.0 for ts, _ in samples]
    ys = [g for _, g in samples]
    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    ax.plot(xs, ys, lw=1.2, label=f"used ({source})")
    ax.axhline(total_gib, color="crimson", ls="--", lw=1, label=f"total {total_gib:.1f} GiB")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("GiB")
    ax.set_title(f"Memory timeline (peak {max(ys):.2f} GiB = {100 * max(ys) / total_gib:.1f} % of total)")
    ax.set_ylim(0, max(total_gib, max(ys)) * 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
