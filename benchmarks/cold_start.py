"""Cold start of compare-runs, whole process, against MLflow's own CLI on the same store, side by side.

    python benchmarks/cold_start.py                  # sqlite store with the seed's three runs, 5 paired rounds
    python benchmarks/cold_start.py --pg             # also a private PostgreSQL (tests/pg.py), same runs
    python benchmarks/cold_start.py --rounds 9 --baseline /path/to/older/checkout

Each round runs, in a shuffled order, fresh processes of:
- `MLFLOW_TRACKING_URI=URI mlflow experiments search` (MLflow's CLI: the yardstick of the goal, <= 0.30x);
- `compare-runs --experiment sai-net-stage1 --format json --tracking-uri URI` from this tree;
- the same from `--baseline` (a checkout before the fast readers; default /work/main when it exists);
- `sai-mlflow train --help` from this tree and from the baseline (train's own start-up, before Ultralytics).
Medians of the rounds are printed side by side with the ratios; the JSON of both compare-runs is checked to
be identical.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "configs" / "history" / "seed_2024-08.yaml"
EXP = "sai-net-stage1"


def timed(cmd: list[str], env: dict, cwd: str) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - t, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pg", action="store_true", help="also a private PostgreSQL cluster (tests/pg.py)")
    ap.add_argument("--baseline", default="/work/main" if Path("/work/main/sai_mlflow").is_dir() else None,
                    help="an older checkout to compare with (its compare-runs and train start-up)")
    a = ap.parse_args()
    py = sys.executable
    mlflow_exe = str(Path(py).parent / "mlflow")
    tmp = Path(tempfile.mkdtemp(prefix="cold_start_"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_ENABLE_ASYNC_LOGGING": "false", "YOLO_OFFLINE": "1"}
    base_env = {**env, "PYTHONPATH": a.baseline} if a.baseline else None
    stores = [("sqlite", f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")]
    cluster = None
    if a.pg:
        sys.path.insert(0, str(ROOT / "tests"))
        from helpers import free_port
        from pg import PgCluster

        cluster = PgCluster(free_port(), "coldStart-pw-1")
        cluster.init()
        cluster.start()
        stores.append(("postgresql", cluster.create_db("cold")))
    try:
        for _, uri in stores:
            p = subprocess.run([py, "-m", "sai_mlflow.cli", "import-history", str(SEED), "--tracking-uri", uri],
                               env=env, cwd=tmp, capture_output=True, text=True)
            assert p.returncode == 0, p.stderr[-2000:]
        for name, uri in stores:
            cmds = {"mlflow experiments search": ([mlflow_exe, "experiments", "search"],
                                                  {**env, "MLFLOW_TRACKING_URI": uri}),
                    "compare-runs (this tree)": ([py, "-m", "sai_mlflow.cli", "compare-runs", "--experiment", EXP,
                                                  "--format", "json", "--tracking-uri", uri], env)}
            if base_env:
                cmds["compare-runs (baseline)"] = (cmds["compare-runs (this tree)"][0], base_env)
            if name == "sqlite":
                cmds["sai-mlflow train --help (this tree)"] = ([py, "-m", "sai_mlflow.cli", "train", "--help"], env)
                if base_env:
                    cmds["sai-mlflow train --help (baseline)"] = ([py, "-m", "sai_mlflow.cli", "train", "--help"],
                                                                  base_env)
            times: dict[str, list[float]] = {k: [] for k in cmds}
            outs: dict[str, str] = {}
            for _ in range(a.rounds):
                order = list(cmds)
                random.shuffle(order)
                for k in order:
                    dt, p = timed(*cmds[k], cwd=str(tmp))
                    assert p.returncode in (0, 3), f"{k}: {p.stderr[-2000:]}"
                    times[k].append(dt)
                    outs[k] = p.stdout
            ref = statistics.median(times["mlflow experiments search"])
            print(f"\n{name}: whole process, median of {a.rounds} paired rounds (each round in a shuffled order)")
            print(f"  {'command':<38} {'median':>8} {'min':>7} {'max':>7} {'vs mlflow':>10}")
            for k, ts in times.items():
                m = statistics.median(ts)
                print(f"  {k:<38} {m:7.2f}s {min(ts):6.2f}s {max(ts):6.2f}s {m / ref:9.2f}x")
            ratios = [c / r for c, r in zip(times["compare-runs (this tree)"], times["mlflow experiments search"])]
            print(f"  compare-runs / mlflow experiments search, median of per-round ratios: "
                  f"{statistics.median(ratios):.2f}x (goal <= 0.30x)")
            if base_env:
                print(f"  identical JSON, this tree and baseline: "
                      f"{outs['compare-runs (this tree)'] == outs['compare-runs (baseline)']}")
                if name == "sqlite":
                    t, b = (statistics.median(times[f'sai-mlflow train --help ({w})'])
                            for w in ("this tree", "baseline"))
                    print(f"  sai-mlflow train start-up (--help): {t:.2f} s, baseline {b:.2f} s ({t / b:.2f}x)")
    finally:
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
