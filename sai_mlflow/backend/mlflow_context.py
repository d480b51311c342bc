"""The tags MLflow's fluent API puts on every run it starts, for runs we create with an explicit client.

`mlflow.start_run` fills `mlflow.user`, `mlflow.source.name`, `mlflow.source.type` and, inside a git
checkout, `mlflow.source.git.commit` through MLflow's run-context providers; `MlflowClient.create_run`
does not, so the UI's "Created by" and "Source" stay empty. This asks the same providers.
"""

from __future__ import annotations


def source_tags(tags: dict[str, str] | None = None) -> dict[str, str]:
    """`tags` plus MLflow's context tags (ours win); never raises: a failing provider adds nothing."""
    try:
        from mlflow.tracking.context.registry import resolve_tags

        return {k: str(v) for k, v in resolve_tags(dict(tags or {})).items()}
    except Exception:
        return dict(tags or {})
