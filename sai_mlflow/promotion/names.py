"""Which model names and aliases a promotion accepts, checked before any write (MLflow's own rules)."""

from __future__ import annotations

import re

from ..errors import UserError

LOCK_INFIX = ".promotion-lock."
MAX_NAME_CHARS = 256  # registered model names (and so the lock's `<model>.promotion-lock.<alias>`) in MLflow's tables


class PromotionError(UserError, ValueError):
    """Bad input (unknown run, run without a model, unknown alias, nothing to roll back to): exit 2."""


def lock_name(model_name: str, alias: str) -> str:
    return f"{model_name}{LOCK_INFIX}{alias}"


def check_names(model_name: str, alias: str) -> None:
    """Refuse a bad model name or alias before any write, with MLflow's own rules, naming the user's model."""
    from ..backend.mlflow_registry import name_problem

    if not model_name or not model_name.strip():
        raise PromotionError("--model needs a registered model name")
    if LOCK_INFIX in model_name:
        raise PromotionError(f"model names containing '{LOCK_INFIX}' are reserved for promotion locks")
    if not alias or re.fullmatch(r"[vV]\d+", alias) or alias.lower() == "latest":
        raise PromotionError(f"alias '{alias}' is reserved by MLflow (v<number>, latest); pick another")
    problem = name_problem(model_name, alias)
    if problem and problem[0] == "model":
        raise PromotionError(f"--model '{model_name}': {problem[1]}")
    if problem:
        raise PromotionError(f"--alias '{alias[:80]}{'…' if len(alias) > 80 else ''}': {problem[1]}")
    if len(lock_name(model_name, alias)) > MAX_NAME_CHARS:
        raise PromotionError(f"--model '{model_name[:80]}' with --alias '{alias[:80]}' is too long: together they "
                             f"must stay under {MAX_NAME_CHARS - len(LOCK_INFIX)} characters")
