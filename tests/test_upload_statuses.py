"""What an HTTP status means to the spool's uploader, against a real `mlflow server` behind a fault-injecting proxy.

5xx and 429 are outages: nothing moves, nothing is set aside, the same request goes again later. 400, 413 and
422 are about the items sent: the request is resent item by item, and only the items refused on their own would
be set aside (here none is: the proxy refuses only requests of more than one item, as a size limit does).
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from sai_mlflow.tracking.sink import Batch
from sai_mlflow.tracking.spool import Spool, SpoolingSink
from sai_mlflow.tracking.spool.upload import Uploader, upload_step

pytestmark = pytest.mark.slow  # a real server
KEYS = ("m0", "m1", "m2")
STEPS = 5
# what such an answer looks like in the wild: MLflow's own JSON, a proxy's HTML, a gateway's plain text
BODIES = {
    400: ("application/json", json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad item"})),
    413: ("text/html", "<html><head><title>413 Request Entity Too Large</title></head><body>nginx</body></html>"),
    422: ("application/json", json.dumps({"detail": [{"msg": "unprocessable item"}]})),
    429: ("text/plain", "Too Many Requests"),
    500: ("application/json", json.dumps({"error_code": "INTERNAL_ERROR", "message": "boom"})),
    502: ("text/html", "<html><body>502 Bad Gateway</body></html>"),
    503: ("text/plain", "Service Unavailable"),
}


class FaultProxy:
    """Forwards everything to the real server, except log-batch requests of more than `min_items` items, which it
    answers with `status` itself. Records (items, status answered) per log-batch request."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.status: int | None = None
        self.min_items = 2
        self.seen: list[tuple[int, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/api/2.0/mlflow/runs/log-batch"):
                    doc = json.loads(body or b"{}")
                    items = sum(len(doc.get(k) or []) for k in ("metrics", "params", "tags"))
                    if proxy.status is not None and items >= proxy.min_items:
                        proxy.seen.append((items, proxy.status))
                        ctype, text = BODIES[proxy.status]
                        data = text.encode()
                        self.send_response(proxy.status)
                        self.send_header("Content-Type", ctype)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                    proxy.seen.append((items, 200))
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
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

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def served(module_plain_server):
    """The session's plain server (runs in experiment "statuses") behind this module's fault proxy."""
    proxy = FaultProxy(module_plain_server.uri)
    yield module_plain_server, proxy
    proxy.close()


def _spooled_run(served, tmp_path):
    """A run on the server and a spool for it holding STEPS metric records of len(KEYS) points each."""
    from sai_mlflow.tracking.store import get_or_create_experiment, make_client

    srv, proxy = served
    proxy.status, proxy.seen = None, []
    client = make_client(proxy.uri)
    run_id = client.create_run(get_or_create_experiment(client, "statuses")).info.run_id
    sink = SpoolingSink(None, run_id, root=tmp_path / "spool", report=lambda m: None,
                        meta={"tracking_uri": proxy.uri, "experiment": "statuses"})
    for i in range(STEPS):
        sink.write(Batch(metrics=[(k, float(i), 1000 + i, i) for k in KEYS]))
    sink.terminate("FINISHED")
    return client, run_id, Spool(sink.spool.dir)


def _steps(client, run_id):
    return {k: sorted(m.step for m in client.get_metric_history(run_id, k)) for k in KEYS}


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_are_outages_nothing_moves_nothing_is_set_aside(served, tmp_path, status):
    client, run_id, sp = _spooled_run(served, tmp_path)
    _, proxy = served
    proxy.status = status
    with pytest.raises(Exception):
        upload_step(sp, Uploader(client, run_id))
    assert proxy.seen == [(len(KEYS) * STEPS, status)]  # one request, never split item by item
    assert sp.watermark == 0 and sp.rejected() == []
    assert _steps(client, run_id) == {k: [] for k in KEYS}
    proxy.status = None  # the store is back: the same data goes, once
    while upload_step(sp, Uploader(client, run_id))[0]:
        pass
    assert _steps(client, run_id) == {k: list(range(STEPS)) for k in KEYS}
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.parametrize("status", [400, 413, 422])
def test_400_413_422_are_resent_item_by_item(served, tmp_path, status):
    client, run_id, sp = _spooled_run(served, tmp_path)
    _, proxy = served
    proxy.status = status  # every request of two items or more is refused, single items pass
    sent, _ = upload_step(sp, Uploader(client, run_id))
    assert sent > 0
    assert proxy.seen[0] == (len(KEYS) * STEPS, status)
    assert proxy.seen[1:] == [(1, 200)] * (len(KEYS) * STEPS)  # then each point on its own
    assert sp.rejected() == []  # none was refused on its own: nothing set aside
    assert _steps(client, run_id) == {k: list(range(STEPS)) for k in KEYS}
