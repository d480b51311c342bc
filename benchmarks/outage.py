"""Outage benchmark: 50 batches/s x 5 metrics against a real `mlflow server`, killed for ~OUTAGE seconds.

Two logger processes run side by side through the same outage (same server, separate runs):
  sai    -- Publisher + SpoolingSink (write-ahead spool), the training thread only calls Publisher.put
  async  -- MLflow's own async logging: MlflowClient.log_batch(..., synchronous=False) per batch
Reported per mode: training-thread per-call latency p50/p99/max, points lost, drain time after the
server is back (until every point logged before recovery is in the store), upload rate while draining,
and (sai) requests/s.

    .venv/bin/python benchmarks/outage.py [--duration 120] [--outage-at 30] [--outage 45]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEYS = [f"m{j}" for j in range(5)]

CHILD = r"""
import json, os, sys, time, threading
mode, uri, run_id, duration, marker, out, spool = sys.argv[1:8]
duration = float(duration)
from mlflow.entities import Metric
from sai_mlflow.tracking.store import make_client
client = make_client(uri)
if mode == "sai":
    from sai_mlflow.tracking.publisher import Publisher
    from sai_mlflow.tracking.sink import Batch
    from sai_mlflow.tracking.spool import SpoolingSink
    sink = SpoolingSink(client, run_id, root=spool, report=lambda m: print(m, flush=True))
    pub = Publisher(sink, [], interval_s=5.0, report=lambda m: print(m, flush=True)).start()
    def call(i, ts):
        pub.put(Batch(metrics=[(k, float(i), ts, i) for k in __KEYS__]))
else:
    def call(i, ts):
        client.log_batch(run_id, metrics=[Metric(k, float(i), ts, i) for k in __KEYS__], synchronous=False)
lat, i, rec_i, rec_t = [], 0, None, None
t0 = time.monotonic(); nxt = t0
while time.monotonic() - t0 < duration:
    ts = int(time.time() * 1000)
    a = time.perf_counter_ns(); call(i, ts); lat.append(time.perf_counter_ns() - a)
    i += 1
    if rec_i is None and i % 10 == 0 and os.path.exists(marker):
        rec_i, rec_t = i, time.time()
    nxt += 0.02
    time.sleep(max(0.0, nxt - time.monotonic()))
res = {"mode": mode, "batches": i, "rec_i": rec_i, "rec_t": rec_t, "lat_ns": sorted(lat)}
t = time.monotonic()
if mode == "sai":
    pub.close("FINISHED", timeout=60)
    res.update(requests=sink.requests, uploaded=sink.uploaded_metrics, busy_s=sink.busy_s)
else:
    import mlflow
    th = threading.Thread(target=mlflow.flush_async_logging, daemon=True); th.start(); th.join(120)
    try:
        client.set_terminated(run_id)
    except Exception as e:
        print("set_terminated failed", e)
res["close_s"] = time.monotonic() - t
json.dump(res, open(out, "w"))
os._exit(0)
""".replace("__KEYS__", repr(KEYS))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, d: Path):
        self.d, self.port = d, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> float:
        t = time.monotonic()
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
             f"sqlite:///{self.d / 'mlflow.db'}", "--default-artifact-root", str(self.d / "art"),
             "--workers", "1", "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=open(self.d / "server.log", "ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        while True:
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=1):
                    return time.monotonic() - t
            except OSError:
                time.sleep(0.1)

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def pct(sorted_ns, q):
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--outage-at", type=float, default=30)
    ap.add_argument("--outage", type=float, default=45)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="sai_outage_"))
    srv = Server(d)
    startup = srv.start()
    from sai_mlflow.tracking.store import get_or_create_experiment, make_client

    client = make_client(srv.uri)
    exp = get_or_create_experiment(client, "outage-bench")
    runs = {m: client.create_run(exp, run_name=m).info.run_id for m in ("sai", "async")}
    marker = d / "recovered"
    env = {**os.environ, "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}
    procs = {m: subprocess.Popen([sys.executable, "-c", CHILD, m, srv.uri, runs[m], str(a.duration), str(marker),
                                  str(d / f"{m}.json"), str(d / "spool")], cwd=ROOT, env=env)
             for m in runs}
    t0 = time.monotonic()
    time.sleep(a.outage_at)
    srv.kill()
    t_kill = time.monotonic()
    print(f"server killed at {t_kill - t0:.1f} s (start-up takes {startup:.1f} s)", flush=True)
    time.sleep(max(0.0, a.outage - startup))
    srv.start()
    t_up = time.monotonic()
    marker.write_text("up")
    outage = t_up - t_kill
    print(f"server back after {outage:.1f} s", flush=True)
    series = {m: [] for m in runs}  # (seconds after recovery, points of m0 in the store)
    while any(p.poll() is None for p in procs.values()):
        for m, r in runs.items():
            try:
                series[m].append((time.monotonic() - t_up, len(client.get_metric_history(r, "m0"))))
            except Exception:
                pass
        time.sleep(0.5)
    rows = []
    for m, r in runs.items():
        res = json.loads((d / f"{m}.json").read_text())
        stored = {k: len(client.get_metric_history(r, k)) for k in KEYS}
        sent = res["batches"] * len(KEYS)
        lost = sent - sum(stored.values())
        need = res["rec_i"] or 0
        drain = next((t for t, n in series[m] if n >= need), None)
        before = [(t, n) for t, n in series[m] if drain is not None and t <= drain]
        rate = None
        if drain and len(before) >= 2:
            rate = (before[-1][1] - before[0][1]) * len(KEYS) / max(1e-9, before[-1][0] - before[0][0])
        lat = res["lat_ns"]
        rows.append({"mode": m, "p50_us": pct(lat, 0.5), "p99_us": pct(lat, 0.99), "max_us": lat[-1] / 1000,
                     "points_sent": sent, "points_lost": lost, "drain_s": drain, "drain_points_per_s": rate,
                     "requests_per_s": (res.get("requests") or 0) / a.duration if m == "sai" else None,
                     "upload_points_per_s": (res["uploaded"] / res["busy_s"]) if res.get("busy_s") else None,
                     "close_s": res["close_s"]})
    print(json.dumps({"duration_s": a.duration, "outage_s": round(outage, 1), "rows": rows}, indent=1))
    print("\n| mode | p50 µs | p99 µs | max µs | points sent | lost | drain after recovery s | drain rate pts/s "
          "| req/s | upload pts/s while sending | close s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    f = lambda v, n=1: "—" if v is None else f"{v:.{n}f}"
    for r in rows:
        print(f"| {r['mode']} | {f(r['p50_us'])} | {f(r['p99_us'])} | {f(r['max_us'])} | {r['points_sent']} | "
              f"{r['points_lost']} | {f(r['drain_s'])} | {f(r['drain_points_per_s'], 0)} | "
              f"{f(r['requests_per_s'], 2)} | {f(r['upload_points_per_s'], 0)} | "
              f"{f(r['close_s'])} |")
    srv.kill()


if __name__ == "__main__":
    main()
