"""The MLflow model registry's own rules and links, for registry.py (gates, lock, promote, rollback)."""

from __future__ import annotations

import json


def name_problem(model_name: str, alias: str) -> tuple[str, str] | None:
    """MLflow's own verdict on a registered model name and an alias: (which, why), else None."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_alias_name, _validate_model_name

    try:
        _validate_model_name(model_name)
    except MlflowException as e:
        return "model", e.message
    try:
        _validate_model_alias_name(alias)
    except MlflowException as e:
        return "alias", e.message
    return None


def link_logged_model(client, model_id: str, model_name: str, version: str) -> None:
    """Best effort, as mlflow.register_model does: the logged model lists its registered versions (UI link)."""
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    try:
        existing = client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS)
        value = (json.loads(existing) if existing else []) + [{"name": model_name, "version": version}]
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(value)})
    except Exception:
        pass
