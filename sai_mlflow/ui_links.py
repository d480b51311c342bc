"""Deep links into the MLflow UI that open the model-training views, not MLflow 3's GenAI landing.

Pure string building. MLflow 3.17's UI opens an experiment in GenAI mode (traces, token panels, no
runs) unless the route carries `?workflowType=machine_learning`; every link here carries it. Base URL:
`--ui-url`, else `SAI_MLFLOW_UI_URL`, else http://127.0.0.1:5000 (what `mlflow ui` serves).
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote

from .keys import DEFAULT_UI_URL, ENV_UI_URL

ML_VIEW = "workflowType=machine_learning"


def ui_base(cli_value: str | None = None) -> str:
    """Printed in every link: credentials removed (the browser asks for the login), other secrets redacted."""
    from .redact import redact_text, without_credentials

    return redact_text(without_credentials((cli_value or os.environ.get(ENV_UI_URL) or DEFAULT_UI_URL).rstrip("/")))


def experiment_url(base: str, experiment_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs?{ML_VIEW}"


def run_url(base: str, experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    tail = f"/artifacts/{quote(artifact)}" if artifact else ""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}{tail}?{ML_VIEW}"


def compare_url(base: str, experiment_ids: list[str], run_ids: list[str]) -> str:
    """MLflow's compare page for exactly these runs (params, metrics and tags side by side)."""
    runs = quote(json.dumps(list(run_ids), separators=(",", ":")))
    exps = quote(json.dumps(sorted(set(experiment_ids)), separators=(",", ":")))
    return f"{base}/#/compare-runs?runs={runs}&experiments={exps}&{ML_VIEW}"


def model_version_url(base: str, model_name: str, version: str) -> str:
    return f"{base}/#/models/{quote(model_name, safe='')}/versions/{version}?{ML_VIEW}"
