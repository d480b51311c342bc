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
from sai_mlflow.compare.record import record_from_keys  # noqa: E402


def records(n: int) -> list[RunRecord]:
    """Built by compare-runs' own factory from contract tags and summary metrics, as the loader does."""
    from sai_mlflow import keys as K

    out = []
    for i in range(n):
        batch = 8 * (1 + i % 16)
        peak = 1.08 * batch + (i % 5)
        tags = {K.TAG_MODEL: "yolov8s.yaml", K.TAG_IMGSZ: "640", K.TAG_DATASET_DIGEST: "d", K.TAG_GPU: "NVIDIA H200",
                K.TAG_BATCH_SIZE: str(batch), K.TAG_BATCH_SIZE_EFFECTIVE: str(batch),
                K.TAG_CACHE_MODE: "ram" if i % 7 == 0 else "none", K.TAG_DATA_ON_TMPFS: "true"}
        summary = {K.SUMMARY_STEP_S_STEADY: 0.01 * batch, K.SUMMARY_IMAGES_PER_S: 100.0 + i % 50,
                   K.SUMMARY_PEAK_GIB: peak, K.SUMMARY_TOTAL_GIB: 140.0, K.SUMMARY_PEAK_FRACTION: peak / 140.0,
                   K.SUMMARY_BEST_MAP50: 0.4 + (i % 100) / 1000, K.SUMMARY_ETA_FULL_S: 3600.0 * (1 + (i % 37) / 10),
                   K.SUMMARY_EPOCHS_COMPLETED: 5, K.SUMMARY_EPOCHS_PLANNED: 110, K.SUMMARY_WARMUP_BATCHES: 30}
        out.append(record_from_keys(f"{i:032x}", tags, summary, run_name=f"run-{i}"))
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
        t_dec = timed(lambda recs=recs: decide(recs, policy), a.repeat)
        t_tab = timed(lambda d=d: render.render_table(d, Console(file=io.StringIO(), width=180)), a.repeat)
        t_md = timed(lambda d=d: render.to_markdown(d), a.repeat)
        t_js = timed(lambda d=d: render.to_json(d), a.repeat)
        print(f"{n:>7} {t_dec:>9.2f} {t_tab:>9.2f} {t_md:>11.2f} {t_js:>8.2f} {t_tab / n * 1e6:>17.0f}")


if __name__ == "__main__":
    main()
