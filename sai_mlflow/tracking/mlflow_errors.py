"""What an MLflow error means, read once: stores answer "missing" and "already there" in several ways
(an error code over REST, a message from SQL stores), and every caller needs the same reading."""

from __future__ import annotations


def _code(e: BaseException) -> str:
    return str(getattr(e, "error_code", "") or "")


def is_not_found(e: BaseException) -> bool:
    code = _code(e)
    return "RESOURCE_DOES_NOT_EXIST" in code or "NOT_FOUND" in code or "not found" in str(e).lower()


def is_already_exists(e: BaseException) -> bool:
    return "ALREADY_EXISTS" in _code(e) or "already exists" in str(e).lower()
