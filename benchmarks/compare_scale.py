"""compare-runs at scale: 100 runs x ~40k points, read three ways side by side, and the naive way.

    python benchmarks/compare_scale.py                 # 100 runs x ~40k points (a few minutes to build)
    python benchmarks/compare_scale.py --runs 40 --points 20000   # 40 runs x ~20k points
    python benchmarks/compare_scale.py --runs 10       # quick check
    python benchmarks/compare_scale.py --db /tmp/big.db --keep   # reuse a built store next time
    python benchmarks/compare_scale.py --db /tmp/big.db --tracking-uri postgresql://127.0.0.1:5432/scale

The three paths, over the same runs: direct sqlite (`--db`), direct PostgreSQL (`--tracking-uri`, built
there too when its experiment is missing), and a real `mlflow server` (`--server-workers`, MLflow's
default 4) serving the sqlite store. Goal: through the server within 2x of direct sqlite, identical JSON.

Each run holds what a 110-epoch training leaves: batch/step_s, batch/data_wait_s, batch/compute_s for
10,000 batches (warm-up, then steady), 7,500 memory/used_gib samples on a wall clock, 110 epochs of
every per-epoch key, and summary/* from compute_summary. Runs differ in batch size (32..128, so the
memory fit has points), a few are on another GPU (not comparable), a few leak memory or lose mAP.

Building: runs, tags, params and summaries go through the real MlflowClient; the big series are
inserted in bulk into MLflow's own `metrics` table (SQLAlchemy, any SQL store), with `latest_metrics`
filled as MLflow does (latest = highest step, then timestamp, then value) -- log_batch of 1000 at
~110 ms each would take ~7 minutes for 4 M points; `--via-client` does exactly that instead.

Timed as users run it: `compare-runs --experiment scale --format json` in a fresh process per call, each
path once per round in a shuffled order (`--repeat` rounds); medians and the median of the per-round
ratios to direct sqlite are printed side by side, with the CPU seconds of the compare-runs process and (on
Linux) of the server's processes per call, and the box's load average; the JSON of every path is checked to be
identical (run ids read as names); then, unless --skip-naive, the naive way (search_runs + get_metric_history
of every metric of every run) on the sqlite store. The CPU per call bounds what any client can reach: on C
cores a call through the server takes at least (server CPU + client CPU) / C, and no less than server CPU / C
however small the client (`benchmarks/server_floor.py` splits the server's part by request).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sai_mlflow import keys as K  # noqa: E402
from sai_mlflow.telemetry.summary import SummaryInputs, compute_summary  # noqa: E402

EXP = "scale"
BATCHES = 10_000
MEM_SAMPLES = 7_500
EPOCHS = 110
T0 = 1_750_000_000.0
_SIZE = {"batches": BATCHES, "mem": MEM_SAMPLES}  # scaled by --points


def run_series(i: int, batch: int, rng: random.Random):
    """(metrics rows [(key, value, ts_ms, step)], summary dict) for run i."""
    BATCHES, MEM_SAMPLES = int(_SIZE["batches"]), int(_SIZE["mem"])
    rows = []
    steady = 0.0105 * batch * (1 + 0.05 * rng.random())
    wait_frac = 0.4 if i % 17 == 5 else 0.01
    leak = 4.0 if i % 23 == 7 else 0.0
    drop = 0.05 if i % 19 == 3 else 0.0
    t = 0.0
    step_s, waits = [], []
    bpe = BATCHES // EPOCHS
    val_s = 20.0
    epoch_end = {}
    for b in range(BATCHES):
        s = (10.0 if b == 0 else steady * 1.5 if b < 30 else steady) * (1 + rng.uniform(-0.02, 0.02))
        t += s
        ms = int((T0 + t) * 1000)
        rows += [(K.BATCH_STEP_S, s, ms, b), (K.BATCH_DATA_WAIT_S, s * wait_frac, ms, b),
                 (K.BATCH_COMPUTE_S, s * (1 - wait_frac), ms, b)]
        step_s.append(s)
        waits.append(s * wait_frac)
        if (b + 1) % bpe == 0 and (b + 1) // bpe <= EPOCHS:
            t += val_s
            epoch_end[(b + 1) // bpe] = t
    duration = t
    peak_train = 6 + 1.03 * batch
    every = duration / MEM_SAMPLES
    mem = []
    for k in range(MEM_SAMPLES):
        ts = k * every
        g = 25 if ts < 20 else peak_train + leak * ts / 3600
        mem.append((ts, g))
        rows.append((K.MEMORY_USED_GIB, g, int((T0 + ts) * 1000), k))
    maps = []
    for e in range(1, EPOCHS + 1):
        ms = int((T0 + epoch_end[e]) * 1000)
        m50 = 0.3 + 0.2 * (1 - math.exp(-e / 20)) - (drop if e >= 3 else 0.0)
        maps.append(m50)
        values = {K.VAL_MAP50: m50, K.VAL_MAP50_95: m50 / 2, K.VAL_PRECISION: 0.6, K.VAL_RECALL: 0.5,
                  K.EPOCH_TRAIN_PEAK_GIB: peak_train, K.EPOCH_VAL_PEAK_GIB: peak_train + 2,
                  K.EPOCH_STEP_S_MEDIAN: steady, K.EPOCH_DURATION_S: bpe * steady + val_s,
                  K.EPOCH_ETA_S: (EPOCHS - e) * (bpe * steady + val_s)}
        values.update({k: 1.0 / e for k in K.TRAIN_LOSSES + K.VAL_LOSSES})
        values.update({k: 0.01 for k in K.LR_KEYS})
        rows += [(k, v, ms, e) for k, v in values.items()]
    summary = compute_summary(SummaryInputs(
        step_s=step_s, data_wait_s=waits, batch_size_effective=batch, peak_gib=max(g for _, g in mem) + 2,
        total_gib=140.0,
        map50=maps, map50_95=[m / 2 for m in maps], epochs_completed=EPOCHS, epochs_planned=EPOCHS,
        batches_per_epoch=bpe, val_s=[val_s], memory=[(t * 1000.0, g) for t, g in mem]))
    return rows, summary, duration


def build(uri: str, runs: int, via_client: bool) -> int:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
    from sqlalchemy import insert

    from sai_mlflow.tracking.batching import log_batch_chunked
    from sai_mlflow.tracking.store import get_or_create_experiment, make_client

    client = make_client(uri)
    engine = client._tracking_client.store.engine
    exp_id = get_or_create_experiment(client, EXP)
    total = 0
    for i in range(runs):
        rng = random.Random(i)
        batch = (32, 48, 64, 96, 112, 128)[i % 6]
        rows, summary, duration = run_series(i, batch, rng)
        tags = {K.TAG_BATCH_SIZE: str(batch), K.TAG_BATCH_SIZE_EFFECTIVE: str(batch), K.TAG_CACHE_MODE: "none",
                K.TAG_DATA_ON_TMPFS: "true", K.TAG_GPU: "NVIDIA A100" if i % 10 == 9 else "NVIDIA H200",
                K.TAG_MODEL: "yolov8s.yaml", K.TAG_IMGSZ: "1440", K.TAG_STAGE: "1", K.TAG_RUN_KIND: "train",
                K.TAG_MEMORY_SOURCE: "nvml", K.TAG_DATASET_DIGEST: "bench"}
        params = {"batch": batch, "imgsz": 1440, "epochs": EPOCHS, "workers": 12, "cache": False,
                  **{f"arg{j}": j for j in range(60)}}
        run = client.create_run(exp_id, start_time=int(T0 * 1000), run_name=f"run{i:03d}-b{batch}")
        rid = run.info.run_id
        end_ms = int((T0 + duration) * 1000)
        log_batch_chunked(client, rid, metrics=[Metric(k, v, end_ms, 0) for k, v in summary.items()],
                          params=[Param(k, str(v)) for k, v in params.items()],
                          tags=[RunTag(k, v) for k, v in tags.items()])
        if via_client:
            log_batch_chunked(client, rid, metrics=[Metric(k, v, ts, s) for k, v, ts, s in rows])
        else:
            latest: dict[str, tuple] = {}
            for k, v, ts, s in rows:
                cur = latest.get(k)
                if cur is None or (s, ts, v) > (cur[2], cur[1], cur[0]):
                    latest[k] = (v, ts, s)
            with engine.begin() as con:
                con.execute(insert(SqlMetric), [dict(key=k, value=v, timestamp=ts, run_uuid=rid, step=s, is_nan=False)
                                                for k, v, ts, s in rows])
                con.execute(insert(SqlLatestMetric), [dict(key=k, value=v, timestamp=ts, step=s, is_nan=False,
                                                           run_uuid=rid) for k, (v, ts, s) in latest.items()])
        client.set_terminated(rid, "FINISHED", end_time=end_ms)
        total += len(rows) + len(summary)
        if (i + 1) % 10 == 0:
            print(f"  built {i + 1}/{runs} runs", flush=True)
    return total


def built(uri: str) -> bool:
    from sai_mlflow.tracking.store import make_client

    return make_client(uri).get_experiment_by_name(EXP) is not None


def start_server(db: Path, workers: int) -> tuple[subprocess.Popen, str]:
    """A real `mlflow server` over the sqlite store, on a free loopback port."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mlflow_exe = str(Path(sys.executable).parent / "mlflow")
    log = open(db.parent / "server.log", "ab")
    proc = subprocess.Popen([mlflow_exe, "server", "--backend-store-uri", f"sqlite:///{db}",
                             "--default-artifact-root", str(db.parent / "artifacts"), "--workers", str(workers),
                             "--host", "127.0.0.1", "--port", str(port),
                             # a loaded box: uvicorn's 5 s health check would kill workers still importing
                             "--uvicorn-opts", "--timeout-worker-healthcheck 120"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=1):
                return proc, uri
        except OSError:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("mlflow server did not start; see " + str(db.parent / "server.log"))


def group_cpu_s(pgid: int | None) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group (Linux /proc; 0
    elsewhere): the server's workers, which the compare-runs process's own rusage does not include."""
    if pgid is None or not Path("/proc/self/stat").exists():
        return 0.0
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # pgrp; utime, stime follow
                total += int(fields[11]) + int(fields[12])
    return total / tick


def time_compare(uri: str, server_pgid: int | None = None) -> tuple[float, int, str, float, float]:
    """One whole `compare-runs` process, as users run it: (wall s, exit code, stdout, its CPU s, the
    server's CPU s during it)."""
    import resource

    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root}
    before, served = resource.getrusage(resource.RUSAGE_CHILDREN), group_cpu_s(server_pgid)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "sai_mlflow.cli", "compare-runs", "--tracking-uri", uri, "--experiment",
                        EXP, "--format", "json"], capture_output=True, text=True, env=env, cwd=root)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = group_cpu_s(server_pgid) - served
    if p.returncode not in (0, 3):
        raise SystemExit(f"compare-runs failed on {uri.split('@')[-1]}: {p.stderr[-1500:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return dt, p.returncode, p.stdout, cpu, served


def by_name(out: str) -> dict:
    """The JSON with run ids replaced by run names, so two stores holding the same runs compare equal
    (listed by name: every run here starts at the same instant, and stores break that tie differently).
    `links` is left out: through a server they start at the server, which serves its own UI, and each
    store has its own ids (tests/test_compare_e2e.py checks the links themselves)."""
    obj = json.loads(out)
    obj.pop("links", None)
    names = {r["run_id"]: r["run_name"] for r in obj["runs"]}
    for r in obj["runs"]:
        r["run_id"] = names[r["run_id"]]
    obj["runs"].sort(key=lambda r: r["run_id"])
    if obj.get("recommended"):
        obj["recommended"]["run_id"] = names[obj["recommended"]["run_id"]]
    return obj


def time_naive(uri: str) -> tuple[float, int]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    t = time.perf_counter()
    exp = client.get_experiment_by_name(EXP)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    points = 0
    for run in runs:
        for key in run.data.metrics:
            points += len(client.get_metric_history(run.info.run_id, key))
    return time.perf_counter() - t, points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--points", type=int, default=40_000, help="points per run, about (default ~40k)")
    ap.add_argument("--db", help="sqlite file (default: a temp dir); reused if it exists")
    ap.add_argument("--tracking-uri", help="a PostgreSQL (or other SQL) store measured directly too; built if empty")
    ap.add_argument("--server-workers", type=int, default=4, help="mlflow server --workers (MLflow's default: 4)")
    ap.add_argument("--no-server", action="store_true", help="skip the mlflow server path")
    ap.add_argument("--repeat", type=int, default=5, help="paired rounds (every path once per round)")
    ap.add_argument("--keep", action="store_true", help="keep the temp store")
    ap.add_argument("--via-client", action="store_true", help="log every point through MlflowClient.log_batch")
    ap.add_argument("--skip-naive", action="store_true")
    a = ap.parse_args()
    scale = a.points / 40_000
    _SIZE.update(batches=max(EPOCHS, int(BATCHES * scale)), mem=max(100, int(MEM_SAMPLES * scale)))
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    tmp = None
    if a.db:
        db = Path(a.db).resolve()
    else:
        tmp = tempfile.mkdtemp(prefix="compare_scale_")
        db = Path(tmp) / "mlflow.db"
    sqlite_uri = f"sqlite:///{db}"
    paths = [("direct sqlite", sqlite_uri)] + ([("direct " + a.tracking_uri.split(":")[0], a.tracking_uri)]
                                               if a.tracking_uri else [])
    for _name, uri in paths:
        if (uri == sqlite_uri and db.exists()) or (uri != sqlite_uri and built(uri)):
            continue
        print(f"building {a.runs} runs into {uri} ...", flush=True)
        t = time.perf_counter()
        points = build(uri, a.runs, a.via_client)
        print(f"built {a.runs} runs, {points:,} points ({points / a.runs:,.0f} per run) "
              f"in {time.perf_counter() - t:.1f} s")
    server = None
    if not a.no_server:
        server, server_uri = start_server(db, a.server_workers)
        paths.append((f"mlflow server ({a.server_workers} workers, sqlite)", server_uri))
    import random as shuffle_rng
    import statistics

    times: dict[str, list[float]] = {name: [] for name, _ in paths}
    cpus: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in paths}
    outputs, codes = {}, {}
    pgid = server.pid if server is not None else None  # start_new_session: the server leads its group
    load_before = os.getloadavg()
    try:
        for _name, uri in paths:  # one untimed call each: page caches warm for every path alike
            time_compare(uri)
        for _ in range(max(1, a.repeat)):
            order = list(paths)
            shuffle_rng.shuffle(order)
            for name, uri in order:
                dt, code, out, cpu, served = time_compare(uri, pgid if uri.startswith("http") else None)
                times[name].append(dt)
                cpus[name].append((cpu, served))
                outputs[name], codes[name] = out, code
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGKILL)
    load_after = os.getloadavg()
    first = paths[0][0]
    direct = statistics.median(times[first])
    print(f"\ncompare-runs --experiment {EXP} --format json, {a.runs} runs x ~{a.points:,} points, whole process, "
          f"median of {max(1, a.repeat)} paired rounds ({os.cpu_count()} cores; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after):")
    print(f"  {'path':<36} {'median':>8} {'min':>7} {'max':>7} {'vs sqlite':>9} {'per-round':>9}  exit"
          f" {'cpu':>6} {'server cpu':>10}")
    for name, _ in paths:
        ts = times[name]
        per_round = statistics.median(t / d for t, d in zip(ts, times[first]))
        cpu = statistics.median(c for c, _ in cpus[name])
        served = statistics.median(s for _, s in cpus[name])
        print(f"  {name:<36} {statistics.median(ts):7.2f}s {min(ts):6.2f}s {max(ts):6.2f}s "
              f"{statistics.median(ts) / direct:8.2f}x {per_round:8.2f}x  {codes[name]:>4} {cpu:5.2f}s "
              f"{served:9.2f}s")
    same = len({json.dumps(by_name(out)) for out in outputs.values()}) == 1
    print(f"  identical JSON on every path (run ids read as run names: each store has its own ids): {same}")
    verdict = json.loads(outputs[first]).get("recommended")
    print(f"  recommended: {verdict}")
    if not a.skip_naive:
        n, points = time_naive(sqlite_uri)
        print(f"naive on sqlite (search_runs + get_metric_history of every metric of every run): {n:6.2f} s, "
              f"{points:,} points; {n / direct:.1f}x compare-runs")
    if server is not None:
        name = paths[-1][0]
        served = statistics.median(times[name])
        print(f"goal through the server within 2x of direct sqlite: "
              f"{'met' if served <= 2 * direct else 'NOT met'} ({served:.2f} s, {served / direct:.2f}x)")
        work = statistics.median(s for _, s in cpus[name])
        client = statistics.median(c for c, _ in cpus[name])
        direct_cpu = statistics.median(c for c, _ in cpus[first])
        cores = os.cpu_count() or 1
        least = (work + client) / cores  # all the CPU a call needs, spread over every core at once
        print(f"CPU per call through the server: {work:.2f} s in the server + {client:.2f} s in compare-runs, "
              f"against {direct_cpu:.2f} s for the whole direct call; on {cores} cores a call through the server "
              f"takes at least {least:.2f} s = {least / direct_cpu:.2f}x direct on an idle box (where direct wall = "
              f"its CPU); the server's part alone: {work / cores / direct_cpu:.2f}x "
              f"(benchmarks/server_floor.py splits it by request)")
    if tmp and not a.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
