"""compare-runs rendering at scale: decide + table / markdown / JSON for N synthetic run records.

    python benchmarks/render_scale.py                  # 1,000 / 2,000 / 10,000 runs
    python benchmarks/render_scale.py --runs 10000

No MLflow: the records are built in memory (batch sizes 8..128, some cached on a tmpfs, some over the
memory limit, all comparable), so only the pure decision and the rendering are timed. Rendering must
grow linearly with the number of runs (it was quadratic in the verdict paragraph's run descriptions).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sai_mlflow.compare import render  # noqa: E402
from sai_mlflow.compare.decision import RunRecord, decide  # noqa: E402
from sai_mlflow.compare.policy import load_policy  # noqa: E402


def records(n: int) -> list[RunRecord]:
    out = []
    for i in range(n):
        batch = 8 * (1 + i % 16)
        out.append(RunRecord(
            run_id=f"{i:032x}", run_name=f"run-{i}", model="yolov8s.yaml", imgsz=640, dataset_digest="d",
            gpu="NVIDIA H200", batch_size=batch, batch_size_effective=batch,
            cache_mode="ram" if i % 7 == 0 else "none", data_on_tmpfs=True, step_s_steady=0.01 * batch,
            images_per_s=100.0 + i % 50, peak_gib=1.08 * batch + (i % 5), total_gib=140.0,
            peak_fraction=(1.08 * batch + (i % 5)) / 140.0, best_map50=0.4 + (i % 100) / 1000,
            eta_full_s=3600.0 * (1 + (i % 37) / 10), epochs_completed=5, epochs_planned=110, warmup_batches=30))
    return out


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, nargs="*", default=[1000, 2000, 10000])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from rich.console import Console

    policy = load_policy(None)
    print(f"{'runs':>7} {'decide s':>9} {'table s':>9} {'markdown s':>11} {'json s':>8} {'table s/run (µs)':>17}")
    for n in a.runs:
        recs = records(n)
        d = decide(recs, policy)
        t_dec = timed(lambda: decide(recs, policy), a.repeat)
        t_tab = timed(lambda: render.render_table(d, Console(file=io.StringIO(), width=180)), a.repeat)
        t_md = timed(lambda: render.to_markdown(d), a.repeat)
        t_js = timed(lambda: render.to_json(d), a.repeat)
        print(f"{n:>7} {t_dec:>9.2f} {t_tab:>9.2f} {t_md:>11.2f} {t_js:>8.2f} {t_tab / n * 1e6:>17.0f}")


if __name__ == "__main__":
    main()
