"""Deep links into the MLflow UI that open the model-training views, not MLflow 3's GenAI landing.

Pure string building. MLflow 3.17's UI opens an experiment in GenAI mode (traces, token panels, no
runs) unless the route carries `?workflowType=machine_learning`; every link here carries it.

Printed links start with `ui_base`: `--ui-url` (said for this command), else the tracking server itself
when the tracking URI is http(s) (its UI is that address; credentials removed), else `SAI_MLFLOW_UI_URL`
(where a local store's UI is served), else http://127.0.0.1:5000 (what `sai-mlflow ui` / `mlflow ui` serve).

Links stored inside MLflow (descriptions, the decision run, model versions) use `RELATIVE`: a bare
`#/…` route, which the UI resolves against wherever it is served, so they work on every host and port.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote, urlsplit, urlunsplit

from .keys import DEFAULT_UI_URL, ENV_UI_URL

ML_VIEW = "workflowType=machine_learning"
RELATIVE = ""  # the base of links stored inside MLflow: `#/experiments/…`
UI_URL_HELP = ("MLflow UI base URL for the printed links (else an http(s) tracking server's own address, "
               "else SAI_MLFLOW_UI_URL, else http://127.0.0.1:5000)")


def server_base(tracking_uri: str | None) -> str | None:
    """An http(s) tracking server's own address (it serves the UI), without credentials, query or fragment."""
    if not tracking_uri or not str(tracking_uri).startswith(("http://", "https://")):
        return None
    try:
        parts = urlsplit(str(tracking_uri))
    except ValueError:
        return None
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/") if host else None


def ui_base(cli_value: str | None = None, tracking_uri: str | None = None) -> str:
    """Printed in every link: --ui-url, else an http(s) tracking server's address, else SAI_MLFLOW_UI_URL,
    else MLflow's default; credentials removed (the browser asks for the login), other secrets redacted."""
    from .redact import redact_text, without_credentials

    base = cli_value or server_base(tracking_uri) or os.environ.get(ENV_UI_URL) or DEFAULT_UI_URL
    return redact_text(without_credentials(base.rstrip("/")))


def _at(base: str, route: str) -> str:
    return f"{base}/{route}" if base else route


def experiments_url(base: str) -> str:
    """The entry page: the experiments list in model-training mode (what `sai-mlflow ui` prints)."""
    return _at(base, f"#/experiments?{ML_VIEW}")


def run_url(base: str, experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    tail = f"/artifacts/{quote(artifact)}" if artifact else ""
    return _at(base, f"#/experiments/{experiment_id}/runs/{run_id}{tail}?{ML_VIEW}")


def compare_url(base: str, experiment_ids: list[str], run_ids: list[str]) -> str:
    """MLflow's compare page for exactly these runs (params, metrics and tags side by side)."""
    runs = quote(json.dumps(list(run_ids), separators=(",", ":")))
    exps = quote(json.dumps(sorted(set(experiment_ids)), separators=(",", ":")))
    return _at(base, f"#/compare-runs?runs={runs}&experiments={exps}&{ML_VIEW}")


def model_version_url(base: str, model_name: str, version: str) -> str:
    return _at(base, f"#/models/{quote(model_name, safe='')}/versions/{version}?{ML_VIEW}")
