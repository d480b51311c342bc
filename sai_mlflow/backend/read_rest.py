"""An `mlflow server` read through its documented REST API over plain HTTP (`http.client`, no `mlflow`
import): `experiments/get-by-name`, `runs/search`, `runs/get`, and the series through
`/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval`, which samples in SQL on the server (up to 100
runs a request, by MLflow's rule). Series requests go side by side on a small pool (`PARALLEL`), one
keep-alive connection per thread; 429/503 are retried after the server's Retry-After (else a doubling
pause). Credentials are MLflow's: MLFLOW_TRACKING_USERNAME/PASSWORD, else `user:password@` in the URI,
else MLFLOW_TRACKING_TOKEN; TLS settings from MLFLOW_TRACKING_INSECURE_TLS / _SERVER_CERT_PATH /
_CLIENT_CERT_PATH. Requests are logged at DEBUG on `sai_mlflow.read_rest` with the URL's credentials left
out; no error line ever carries them. Custom auth plugins, SigV4 and proxies go to MLflow's client.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlencode, urlsplit

from .read_api import MAX_POINTS, Advance, BadFilter, NotFound, ReadError, Rows, RunRow, Window, ordered, sample_indices

log = logging.getLogger("sai_mlflow.read_rest")

API = "/api/2.0/mlflow"
BULK_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
BULK_MAX_RUNS = 100   # the server's limit of run ids per request
BULK_MIN_RUNS = 5     # fewer runs a request would cost more in round trips than it saves
PARALLEL = 8          # requests in flight at once (MLflow's server runs 4 workers by default)
TRIES = 6             # for 429/503 and a dropped keep-alive connection
MAX_PAUSE_S = 30.0
PAGE = 1000
CONNECT_TIMEOUT_S = 5.0
_UNSUPPORTED_ENV = ("MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4")
_PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def _proxied(host: str) -> bool:
    if not any(os.environ.get(v) for v in _PROXY_ENV):
        return False
    import urllib.request

    return not urllib.request.proxy_bypass_environment(host)


def rest_reader(uri: str) -> RestReader | None:
    """A RestReader for an http(s) tracking URI; None where MLflow's client must speak (auth plugins, SigV4,
    a proxy in the environment)."""
    parts = urlsplit(uri)
    if any(_env_true(v) or (v == "MLFLOW_TRACKING_AUTH" and os.environ.get(v)) for v in _UNSUPPORTED_ENV):
        return None
    if not parts.hostname or _proxied(parts.hostname):
        return None
    return RestReader(uri)


class RestReader:
    def __init__(self, uri: str) -> None:
        parts = urlsplit(uri)
        self._uri = uri
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        shown_host = parts.netloc.rsplit("@", 1)[-1]
        self.uri = f"{parts.scheme}://{parts.username + '@' if parts.username else ''}{shown_host}{self.prefix}"
        self.base = f"{parts.scheme}://{shown_host}{self.prefix}"  # what request logs and errors show
        self.timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or 120)
        self.headers = {"Accept": "application/json", "User-Agent": "sai-mlflow"}
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if not (user and password) and parts.username is not None:
            from urllib.parse import unquote

            user, password = unquote(parts.username), unquote(parts.password or "")
        if user and password is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
            self.headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
        self._local = threading.local()
        self._ssl = None

    # --- HTTP ------------------------------------------------------------------------------------------

    def _context(self):
        if self._ssl is None:
            import ssl

            if _env_true("MLFLOW_TRACKING_INSECURE_TLS"):
                ctx = ssl._create_unverified_context()
            else:
                ctx = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)
            cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
            if cert:
                ctx.load_cert_chain(cert)
            self._ssl = ctx
        return self._ssl

    def _connection(self, fresh: bool = False):
        import http.client

        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = (http.client.HTTPSConnection(self.host, self.port, timeout=CONNECT_TIMEOUT_S,
                                                context=self._context())
                    if self.https else http.client.HTTPConnection(self.host, self.port, timeout=CONNECT_TIMEOUT_S))
            conn.connect()  # a server that is down is said in seconds; a slow answer gets MLflow's request timeout
            conn.sock.settimeout(self.timeout)
            self._local.conn = conn
        return conn

    def _call(self, method: str, path: str, params: list | dict | None = None, body: dict | None = None,
              raw: bool = False):
        """(status, parsed JSON or bytes); retries 429/503 and a dropped keep-alive connection."""
        import http.client

        target = self.prefix + path + ("?" + urlencode(params, doseq=True) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, **({"Content-Type": "application/json"} if data is not None else {})}
        pause = 0.5
        for attempt in range(1, TRIES + 1):
            t = time.perf_counter()
            try:
                conn = self._connection(fresh=attempt > 1 and getattr(self._local, "dropped", False))
                self._local.dropped = False
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady) as e:
                self._local.dropped = True
                log.debug("%s %s%s -> %s", method, self.base, path, type(e).__name__)
                if attempt == TRIES:
                    raise ConnectionError(f"tracking server {self.uri} dropped the connection ({type(e).__name__})") \
                        from None
                continue
            except OSError as e:
                self._local.dropped = True
                reason = getattr(e, "strerror", None) or type(e).__name__
                raise ConnectionError(f"tracking server {self.uri} is unreachable ({reason})") from None
            log.debug("%s %s%s -> %d in %.3f s", method, self.base, path, resp.status, time.perf_counter() - t)
            if resp.status in (429, 503) and attempt < TRIES:
                after = resp.getheader("Retry-After")
                try:
                    wait = min(MAX_PAUSE_S, float(after)) if after else pause
                except ValueError:
                    wait = pause
                time.sleep(wait)
                pause = min(MAX_PAUSE_S, pause * 2)
                continue
            if resp.status in (401, 403):
                from ..tracking.store import http_refusal

                raise http_refusal(resp.status, self._uri, "reading these runs")
            if raw:
                return resp.status, payload
            try:
                return resp.status, json.loads(payload) if payload else {}
            except ValueError:
                return resp.status, {"message": payload[:200].decode("utf-8", "replace")}
        raise AssertionError("unreachable")  # pragma: no cover

    def _ok(self, method: str, path: str, params=None, body=None) -> dict:
        status, obj = self._call(method, path, params, body)
        if status == 200:
            return obj
        message = obj.get("message", "") if isinstance(obj, dict) else ""
        if status >= 500:
            raise ConnectionError(f"tracking server {self.uri} answered HTTP {status} to {path} ({message[:200]})")
        raise ReadError(f"{self.uri}{path}: HTTP {status} {obj.get('error_code', '')} {message}".strip())

    # --- runs ------------------------------------------------------------------------------------------

    def experiment_id(self, name: str) -> str | None:
        status, obj = self._call("GET", f"{API}/experiments/get-by-name", {"experiment_name": name})
        if status == 404 and isinstance(obj, dict) and obj.get("error_code") == "RESOURCE_DOES_NOT_EXIST":
            return None
        if status == 404:  # not MLflow's answer: the store check names what answered (the one rule)
            from ..tracking.store import check_store

            check_store(self._uri)
            raise ReadError(f"{self.uri} answered HTTP 404 to {API}/experiments/get-by-name: is it an MLflow "
                            "tracking server (and the URI its root)?")
        if status != 200:
            return self._ok("GET", f"{API}/experiments/get-by-name", {"experiment_name": name})  # raises
        exp = obj.get("experiment", {})
        return None if exp.get("lifecycle_stage") == "deleted" else str(exp.get("experiment_id"))

    def experiment_names(self) -> list[str]:
        names, token = [], None
        while True:
            obj = self._ok("POST", f"{API}/experiments/search",
                           body={"max_results": PAGE, **({"page_token": token} if token else {})})
            names += [e["name"] for e in obj.get("experiments", [])]
            token = obj.get("next_page_token")
            if not token:
                return names

    def runs(self, run_ids: Sequence[str]) -> list[RunRow]:
        from concurrent.futures import ThreadPoolExecutor

        def one(rid: str):
            status, obj = self._call("GET", f"{API}/runs/get", {"run_id": rid})
            if status == 404 or (status == 400 and "RESOURCE_DOES_NOT_EXIST" in str(obj)):
                return None
            if status != 200:
                self._ok("GET", f"{API}/runs/get", {"run_id": rid})  # raises
            return _row(obj["run"])

        with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(run_ids)))) as pool:
            got = list(pool.map(one, run_ids))
        for rid, row in zip(run_ids, got):
            if row is None:
                raise NotFound(rid)
        return got

    def search(self, experiment_id: str, filter_string: str = "") -> list[RunRow]:
        out, token = [], None
        while True:
            body = {"experiment_ids": [experiment_id], "filter": filter_string or "", "run_view_type": "ACTIVE_ONLY",
                    "max_results": PAGE, "order_by": ["attributes.start_time ASC"]}
            if token:
                body["page_token"] = token
            status, obj = self._call("POST", f"{API}/runs/search", body=body)
            if status == 400:
                raise BadFilter(obj.get("message", "") if isinstance(obj, dict) else str(obj))
            if status != 200:
                obj = self._ok("POST", f"{API}/runs/search", body=body)
            out += [_row(r) for r in obj.get("runs", [])]
            token = obj.get("next_page_token")
            if not token:
                return out

    # --- series ----------------------------------------------------------------------------------------

    def series(self, key: str, windows: dict[str, Window], max_points: int, advance: Advance = None) -> dict[str, Rows]:
        """The server samples in SQL; a few requests side by side (a server with several workers answers
        them in parallel). A server without the endpoint (404) is read in full histories, sampled here."""
        from concurrent.futures import ThreadPoolExecutor

        max_points = max(1, min(int(max_points), MAX_POINTS))
        groups: dict[Window, list[str]] = {}
        for rid, win in windows.items():
            groups.setdefault(win, []).append(rid)
        size = max(BULK_MIN_RUNS, min(BULK_MAX_RUNS, math.ceil(len(windows) / PARALLEL)))
        requests = [(win, rids[i:i + size]) for win, rids in groups.items() for i in range(0, len(rids), size)]

        def one(req):
            win, rids = req
            params = [("run_ids", r) for r in rids] + [("metric_key", key), ("max_results", str(max_points))]
            if win is not None:
                params += [("start_step", str(win[0])), ("end_step", str(win[1]))]
            status, obj = self._call("GET", BULK_ENDPOINT, params)
            if status == 404:
                return rids, None
            if status != 200:
                obj = self._ok("GET", BULK_ENDPOINT, params)
            got: dict[str, list] = {r: [] for r in rids}
            for m in obj.get("metrics", []):
                got.setdefault(m["run_id"], []).append((m.get("step", 0), m.get("timestamp", 0),
                                                        float(m.get("value", 0.0))))
            return rids, got

        out: dict[str, Rows] = {}
        old_server = []
        with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(requests)))) as pool:
            for rids, got in pool.map(one, requests):
                if got is None:
                    old_server += rids
                    continue
                out.update({rid: ordered(rows) for rid, rows in got.items()})
                if advance:
                    for _ in rids:
                        advance()
        if old_server:
            from .read_sql import _say_once

            _say_once(f"{self.uri} has no sampled-history endpoint (an MLflow server older than 2.x); "
                      "reading full histories instead, which is slower")
            for rid in old_server:
                out[rid] = self._full_history(rid, key, windows[rid], max_points)
                if advance:
                    advance()
        return out

    def _full_history(self, rid: str, key: str, win: Window, max_points: int) -> Rows:
        rows, token = [], None
        while True:
            params = {"run_id": rid, "metric_key": key, "max_results": 25000,
                      **({"page_token": token} if token else {})}
            obj = self._ok("GET", f"{API}/metrics/get-history", params)
            rows += [(m.get("step", 0), m.get("timestamp", 0), float(m.get("value", 0.0)))
                     for m in obj.get("metrics", [])
                     if win is None or win[0] <= m.get("step", 0) <= win[1]]
            token = obj.get("next_page_token")
            if not token:
                break
        rows = ordered(rows)
        return [rows[i] for i in sample_indices(len(rows), max_points)]

    def artifact_text(self, run_id: str, path: str) -> str | None:
        """Through the server's artifact endpoint; MLflow's client where the server cannot serve it."""
        status, payload = self._call("GET", "/get-artifact", {"path": path, "run_uuid": run_id}, raw=True)
        if status == 200:
            try:
                return payload.decode("utf-8")
            except UnicodeDecodeError:
                return None
        if status == 404:
            return None
        from .read_mlflow import MlflowReader

        return MlflowReader(None, self._uri).artifact_text(run_id, path)


def _row(run: dict) -> RunRow:
    """A run of the REST API's JSON as a RunRow (NaN and infinities come as strings: float() reads both)."""
    info, data = run.get("info", {}), run.get("data", {})
    metrics, steps = {}, {}
    for m in data.get("metrics", []):
        metrics[m["key"]] = float(m.get("value", 0.0))
        steps[m["key"]] = int(m.get("step", 0))
    start = info.get("start_time")
    return RunRow(run_id=info.get("run_id") or info.get("run_uuid"), run_name=info.get("run_name"),
                  status=info.get("status"), experiment_id=str(info.get("experiment_id")),
                  start_time=int(start) if start is not None else None,
                  tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
                  params={p["key"]: p.get("value", "") for p in data.get("params", [])},
                  metrics=metrics, steps=steps)
