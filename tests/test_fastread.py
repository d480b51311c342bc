"""compare-runs' readers (sai_mlflow/backend/read_*.py) against MLflow's own client on the same store:
SQL read directly (sqlite, PostgreSQL), an `mlflow server`'s REST API over plain HTTP (basic auth
included), and the fallback. A schema or API change in a new MLflow shows up here as a difference."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import Server
from mlflow.entities import Metric
from test_compare_e2e import EXP, T0, flat_memory, log_run

from sai_mlflow import keys as K
from sai_mlflow.backend.read_choice import reader_for
from sai_mlflow.backend.read_mlflow import MlflowReader
from sai_mlflow.backend.read_rest import RestReader
from sai_mlflow.backend.read_sql import SqlReader
from sai_mlflow.compare import loader, render
from sai_mlflow.compare.decision import decide
from sai_mlflow.compare.policy import load_policy
from sai_mlflow.importers.history_file import import_history_file
from sai_mlflow.tracking.batching import log_batch_chunked

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "configs" / "history" / "seed_2024-08.yaml"
PASSWORD = "fastread-S3cret-77"
FILTERS = ("", "tags.stage = '1'", "tags.batch_size != '64' and attributes.status = 'FINISHED'",
           "metrics.`summary/peak_gib` > 30")  # the last one: MLflow's parser (read_sql leaves it)


def fill(client) -> None:
    """Series long enough to be sampled (steady half > MEMORY_POINTS, odd NTILE buckets), a series with holes
    and a repeated step (sampled by the full read), a NaN, runs filtered in and out, and the seed's three runs."""
    n = 4 * loader.MEMORY_POINTS + 37
    log_run(client, "leaky", batch=48, memory=[(i * 15.0, 40 + 2.5 * i * 15 / 3600) for i in range(n)],
            map50=[0.5, 0.5, 0.44, 0.45, 0.44], tags={K.TAG_STAGE: "1"}, summary={K.SUMMARY_ETA_FULL_S: 3000.0})
    steady = [(i * 15.0, 60 + (i % 11) * 0.02) for i in range(n + 101)]
    steady[n] = (steady[n][0], float("nan"))
    log_run(client, "steady", batch=64, memory=steady, map50=[0.5, 0.51, 0.52, 0.52, 0.53], tags={K.TAG_STAGE: "1"})
    gappy = log_run(client, "gappy", batch=32, tags={K.TAG_STAGE: "2"}, summary={K.SUMMARY_ETA_FULL_S: 3500.0})
    steps = [s for s in range(3 * n) if s % 3 != 1] + [10, 2000]
    log_batch_chunked(client, gappy, metrics=[
        Metric(K.MEMORY_USED_GIB, 50 + 1.2 * s * 5 / 3600, int((T0 + s * 5) * 1000) + (7 if s in (10, 2000) else 0), s)
        for s in steps])
    log_run(client, "short", batch=16, memory=flat_memory(hours=0.05))
    import_history_file(client, SEED, EXP)


def verdict_json(reader, **kw) -> dict:
    policy = load_policy(None)
    records = loader.load_records(reader, policy=policy, progress=False, **kw)
    return render.to_json_obj(decide(*loader.split_evidence(records)[:1], policy))


def rows(reader, ids) -> list[tuple]:
    """What every reader must agree on, run by run (params are read for runs without our tags only)."""
    return [(r.run_id, r.run_name, r.status, r.experiment_id, r.tags, r.metrics.keys(), r.steps,
             {k: v for k, v in r.metrics.items() if v == v}) for r in reader.runs(ids)]


def assert_same(fast, slow) -> None:
    for f in FILTERS:
        assert verdict_json(fast, experiment=EXP, filter_string=f) == verdict_json(slow, experiment=EXP,
                                                                                   filter_string=f), f
    ids = [r.run_id for r in slow.search(slow.experiment_id(EXP))]
    assert len(ids) == 7 and rows(fast, ids) == rows(slow, ids)
    assert verdict_json(fast, run_ids=ids[::-1]) == verdict_json(slow, run_ids=ids[::-1])
    for key, win, pts in ((K.MEMORY_USED_GIB, (10, 2700), 50), (K.MEMORY_USED_GIB, None, 200), (K.VAL_MAP50, None, 2)):
        assert fast.series(key, {i: win for i in ids}, pts) == slow.series(key, {i: win for i in ids}, pts)
    obj = verdict_json(fast, experiment=EXP)
    assert {r["run_name"]: r["verdict"] for r in obj["runs"]}["leaky"] == "rejected"


def test_sql_reader_and_mlflow_client_agree_on_sqlite(client, sqlite_uri):
    fill(client)
    fast = reader_for(sqlite_uri)
    assert isinstance(fast, SqlReader)
    assert_same(fast, MlflowReader(client))


@pytest.mark.slow
def test_sql_reader_and_mlflow_client_agree_on_postgresql(pg):
    from sai_mlflow.tracking.store import make_client

    uri = pg.create_db("fastread")
    client = make_client(uri)
    fill(client)
    fast = reader_for(uri)
    assert isinstance(fast, SqlReader) and PASSWORD not in fast.uri and pg.password not in fast.uri
    assert_same(fast, MlflowReader(client))


def test_compare_runs_reads_sqlite_without_importing_mlflow(client, sqlite_uri, tmp_path):
    fill(client)
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "sai_mlflow.cli", "compare-runs", "--experiment", EXP,
                        "--format", "json", "--tracking-uri", sqlite_uri], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 3 or p.returncode == 0, p.stderr[-2000:]
    imported = {m.group(1) for m in re.finditer(r"\|\s+([\w.]+)\s*$", p.stderr, re.M)}
    assert not {m for m in imported if m.split(".")[0] in ("mlflow", "pandas", "matplotlib", "rich")}
    assert json.loads(p.stdout)["runs"]


class _Throttle:
    """A plain HTTP relay in front of a real server that first answers 503 (then 429) with Retry-After, as a
    load balancer in front of a busy server does; the other requests pass through unchanged."""

    def __init__(self, target_port: int, refusals: int = 4) -> None:
        import http.client

        seen, lock = [], threading.Lock()

        class Relay(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    seen.append((self.command, self.path, dict(self.headers)))
                    refuse = len(seen) <= refusals
                if refuse:
                    self.send_response(503 if len(seen) % 2 else 429)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
                conn.request(self.command, self.path, body=body or None,
                             headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                r = conn.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = _relay

            def log_message(self, *a):
                pass

        self.seen = seen
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.mark.slow
def test_rest_reader_through_a_basic_auth_server(tmp_path, client, sqlite_uri, monkeypatch, caplog):
    """Through `mlflow server --app-name basic-auth`: the REST reader (credentials from the URI, from the
    environment), MLflow's client and the SQL reader on the served file give the same verdicts; 429/503 are
    waited out; the password is in no request log and no error line."""
    from click.testing import CliRunner

    from sai_mlflow.cli.compare import compare_runs

    fill(client)
    server = Server(tmp_path / "mlruns", app_name="basic-auth", admin_password=PASSWORD)
    server.start(timeout=180)
    relay = None
    try:
        caplog.set_level(logging.DEBUG, logger="sai_mlflow.read_rest")
        by_uri = reader_for(server.login_uri())
        assert isinstance(by_uri, RestReader) and PASSWORD not in by_uri.uri
        assert_same(by_uri, reader_for(sqlite_uri))
        requests = [r.getMessage() for r in caplog.records]
        assert len(requests) > 10 and any("get-history-bulk-interval" in m for m in requests)
        assert not any(PASSWORD in m for m in requests)

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        from mlflow.tracking import MlflowClient

        assert_same(reader_for(server.uri), MlflowReader(MlflowClient(server.uri)))

        relay = _Throttle(server.port)
        throttled = reader_for(relay.uri)
        assert verdict_json(throttled, experiment=EXP) == verdict_json(by_uri, experiment=EXP)
        assert len(relay.seen) > 5 and all("Authorization" in h for _, _, h in relay.seen)

        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
        for uri in (server.login_uri(password=PASSWORD + "x"), server.uri):
            r = CliRunner().invoke(compare_runs, ["--tracking-uri", uri, "--experiment", EXP, "--format", "json"])
            assert r.exit_code == 2 and r.output.count("Error:") == 1 and "HTTP 401" in r.output, r.output
            assert PASSWORD not in r.output
        assert not any(PASSWORD in r.getMessage() for r in caplog.records)
    finally:
        if relay is not None:
            relay.close()
        server.kill()
