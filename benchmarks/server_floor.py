"""Where an `mlflow server`'s time goes when compare-runs reads through it: each request compare-runs makes,
with the CPU the server spends on it, against the same reads done directly in SQL.

    python benchmarks/server_floor.py --db /tmp/big.db        # a store built by compare_scale.py --keep
    python benchmarks/server_floor.py --db /tmp/big.db --rounds 5 --history-runs 5

Through a server, compare-runs asks for exactly what it asks a database directly (compare/loader.py and
decision.plan_fetch): one `runs/search`, `val/mAP50` per epoch of the group's runs, and the steady half of
`memory/used_gib` sampled to 200 points by MLflow's rule. The server answers the series through
`get-history-bulk-interval`, which samples in SQL (NTILE over every row of the window), so its work grows
with the rows in the window, not with the points it returns; the direct reader counts on MLflow's
(run, key, step) index and reads only the kept rows. Printed per request (median of `--rounds`): wall, this
process's CPU, the server's CPU (its process group, Linux /proc); then the same series sampled to 1 point
(the scan alone), MLflow's store called in-process (no HTTP, no JSON), plain `metrics/get-history` for a
few runs (scaled to all), and the direct SQL reader. The sum of the server's CPU for compare-runs' own
requests divided by the cores is the least time any client can take through this server.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_scale import EXP, group_cpu_s, start_server  # noqa: E402

from sai_mlflow import keys as K  # noqa: E402


def measure(fn, pgid: int | None) -> tuple[float, float, float]:
    """(wall s, this process's CPU s, the server's CPU s) of one call."""
    served, cpu, t = group_cpu_s(pgid), time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t, time.process_time() - cpu, group_cpu_s(pgid) - served


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="sqlite store built by compare_scale.py (experiment 'scale')")
    ap.add_argument("--server-workers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--history-runs", type=int, default=3, help="runs read with plain get-history (scaled to all)")
    a = ap.parse_args()
    from sai_mlflow.backend.read_rest import RestReader
    from sai_mlflow.backend.read_sql import sql_reader
    from sai_mlflow.compare import loader as L
    from sai_mlflow.compare.decision import NEED_MAP50, NEED_MEMORY, plan_fetch
    from sai_mlflow.compare.policy import load_policy

    db = Path(a.db).resolve()
    direct = sql_reader(f"sqlite:///{db}")
    policy = load_policy()
    runs = direct.search(direct.experiment_id(EXP))
    records = [L.record_from_run(r) for r in runs]
    plan = plan_fetch(records, policy)
    map_ids = [rid for rid, need in plan.items() if NEED_MAP50 in need]
    planned_mem = [r.run_id for r in records if NEED_MEMORY in plan.get(r.run_id, ())]
    # the steady halves of every run of the group, read when a summary does not cover them (older runs)
    mem = {r.run_id: ((r.memory_samples or 0) // 2, (r.memory_samples or 0) - 1)
           for r in records if r.run_id in map_ids or r.run_id in planned_mem}
    asks_memory = bool(planned_mem)
    rows_in_windows = sum(hi - lo + 1 for lo, hi in mem.values())
    last = policy.map_late_epochs[1]
    print(f"{len(runs)} runs; compare-runs asks for val/mAP50 (epochs <= {last}) of {len(map_ids)} runs and "
          f"memory/used_gib of {len(planned_mem)} runs (the summaries of the others cover it); measured for "
          f"reference: the steady halves of {len(mem)} runs ({rows_in_windows:,} rows, <= {L.MEMORY_POINTS} "
          "points a run), what runs logged without summary/memory_* cost")

    server, uri = start_server(db, a.server_workers)
    pgid = server.pid
    rest = RestReader(uri)
    few = list(mem)[:max(1, a.history_runs)]

    def full_histories():
        for rid in few:
            rest._full_history(rid, K.MEMORY_USED_GIB, mem[rid], L.MEMORY_POINTS)

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{db}", str(db.parent / "artifacts"))
    lo, hi = next(iter(mem.values()))
    steps = [
        ("server: runs/search", lambda: rest.search(rest.experiment_id(EXP)), True),
        ("server: bulk-interval val/mAP50", lambda: L.map50_histories(rest, map_ids, last), True),
        ("server: bulk-interval memory, 200 pts", lambda: L.fetch_series(rest, K.MEMORY_USED_GIB, mem,
                                                                          L.MEMORY_POINTS), asks_memory),
        ("server: bulk-interval memory, 1 pt", lambda: L.fetch_series(rest, K.MEMORY_USED_GIB, mem, 1), False),
        (f"server: get-history memory x{len(mem) / len(few):.0f}", full_histories, False),
        ("MLflow store in-process: memory", lambda: store.get_metric_history_bulk_interval(
            list(mem), K.MEMORY_USED_GIB, L.MEMORY_POINTS, lo, hi), False),
        ("direct SQL: runs", lambda: direct.search(direct.experiment_id(EXP)), False),
        ("direct SQL: val/mAP50", lambda: L.map50_histories(direct, map_ids, last), False),
        ("direct SQL: memory, 200 pts", lambda: L.fetch_series(direct, K.MEMORY_USED_GIB, mem, L.MEMORY_POINTS),
         False),
    ]
    got: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in steps}
    load_before = os.getloadavg()
    try:
        for name, fn, _ in steps:  # untimed once: caches warm alike
            if "get-history" not in name:
                fn()
        for _ in range(max(1, a.rounds)):
            for name, fn, _ in steps:
                wall, cpu, served = measure(fn, pgid)
                if "get-history" in name:
                    scale = len(mem) / len(few)
                    wall, cpu, served = wall * scale, cpu * scale, served * scale
                got[name].append((wall, cpu, served))
    finally:
        os.killpg(server.pid, signal.SIGKILL)
    load_after = os.getloadavg()
    print(f"median of {a.rounds} rounds, {os.cpu_count()} cores, load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after; server: {a.server_workers} workers over the same sqlite file")
    print(f"  {'request':<40} {'wall':>7} {'client cpu':>10} {'server cpu':>10}")
    floor = 0.0
    for name, _, asked in steps:
        wall, cpu, served = (statistics.median(x[i] for x in got[name]) for i in range(3))
        floor += served if asked else 0.0
        print(f"  {name:<40} {wall:6.2f}s {cpu:9.2f}s {served:9.2f}s{'  (asked by compare-runs)' if asked else ''}")
    cores = os.cpu_count() or 1
    print(f"server CPU for compare-runs' own requests: {floor:.2f} s; on {cores} cores at least {floor / cores:.2f} s "
          "through this server, whatever the client does")


if __name__ == "__main__":
    main()
