"""What the MLflow store behind a tracking URI offers, asked once per process.

MLflow 3 added logged models (`/api/2.0/mlflow/logged-models`); a 2.x server (>= 2.16) has runs,
params, metrics, tags, artifacts, dataset inputs and the registry with aliases, but answers 404 (an
HTML page) there. The server's `/version` says which it is; where that is unavailable, a 404 from the
logged-models search says it. A local store (sqlite, a database URI) is this process's own MLflow.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

LOGGED_MODELS_SINCE = 3  # MLflow major version that serves logged models


@dataclass(frozen=True)
class Capabilities:
    version: str  # the server's MLflow version ("" when it would not say)
    logged_models: bool

    @property
    def label(self) -> str:
        return f"MLflow {self.version}" if self.version else "an MLflow server without logged models"


_cache: dict[str, Capabilities] = {}
_noted: set[str] = set()
_lock = threading.Lock()


def _major(version: str) -> int | None:
    try:
        return int(version.strip().split(".", 1)[0])
    except ValueError:
        return None


def _client_caps() -> Capabilities:
    import mlflow

    return Capabilities(mlflow.__version__, (_major(mlflow.__version__) or 0) >= LOGGED_MODELS_SINCE)


def _ask_server(client) -> Capabilities:
    """GET /version; else whether the logged-models search is a 404. Never raises (an outage: assume 3.x)."""
    from mlflow.utils.rest_utils import http_request

    try:
        creds = client._tracking_client.store.get_host_creds()
    except Exception:
        return _client_caps()
    version = ""
    try:
        resp = http_request(creds, "/version", "GET", max_retries=0, backoff_factor=0, timeout=5)
        if resp.status_code == 200 and _major(resp.text) is not None:
            version = resp.text.strip()[:40]
    except Exception:
        pass
    if version:
        return Capabilities(version, (_major(version) or 0) >= LOGGED_MODELS_SINCE)
    try:
        resp = http_request(creds, "/api/2.0/mlflow/logged-models/search", "POST", max_retries=0,
                            backoff_factor=0, timeout=5, json={"experiment_ids": ["0"], "max_results": 1})
        return Capabilities("", resp.status_code != 404)
    except Exception:
        return _client_caps()


def capabilities(client) -> Capabilities:
    """The store's capabilities for `client`, cached per tracking URI for the life of the process."""
    uri = str(client.tracking_uri)
    with _lock:
        caps = _cache.get(uri)
    if caps is None:
        caps = _ask_server(client) if uri.startswith(("http://", "https://")) else _client_caps()
        with _lock:
            caps = _cache.setdefault(uri, caps)
    return caps


def has_logged_models(client) -> bool:
    return capabilities(client).logged_models


def note_once(client, what: str) -> None:
    """Say once per process and server, in one line, what this server cannot do and what is done instead."""
    from ..redact import without_credentials

    uri = str(client.tracking_uri)
    with _lock:
        if uri in _noted:
            return
        _noted.add(uri)
    line = (f"sai_mlflow: the tracking server {without_credentials(uri)} runs {capabilities(client).label}, "
            f"which has no logged models: {what}")
    if "ultralytics" in sys.modules:  # during training: where the user reads training output
        from ..log import warn

        warn(line)
    else:  # a command (promote): one line on stderr, without loading Ultralytics for it
        print(line, file=sys.stderr)
