"""Where runs are logged and the store's client, in one import for the commands: the choice of URI and
experiment (tracking/address.py, pure) and the MLflow client with its store checks (backend/mlflow_store.py).

Modules below the backend import tracking/address.py; this one sits in the backend's layer.
"""

from __future__ import annotations

from ..backend.mlflow_store import check_store, get_or_create_experiment, make_client
from .address import (
    DB_SCHEMES,
    DEFAULT_EXPERIMENT,
    OTHER_SCHEMES,
    TEAM_HINT,
    StoreMissing,
    artifact_root_for,
    artifact_warning,
    config_error,
    default_tracking_uri,
    http_refusal,
    not_mlflow,
    probe,
    resolve_experiment,
    resolve_tracking_uri,
    scheme_of,
    with_credentials,
)

__all__ = ["DB_SCHEMES", "DEFAULT_EXPERIMENT", "OTHER_SCHEMES", "TEAM_HINT", "StoreMissing", "artifact_root_for",
           "artifact_warning", "check_store", "config_error", "default_tracking_uri", "get_or_create_experiment",
           "http_refusal", "make_client", "not_mlflow", "probe", "resolve_experiment", "resolve_tracking_uri",
           "scheme_of", "with_credentials"]
