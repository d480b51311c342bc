"""How tracking speaks during training: one warning line through Ultralytics' own logger, so it lands
where the user already reads training output (and in Ultralytics' log files). Redacted: an error message
may quote a tracking URI with its credentials."""

from __future__ import annotations


def warn(msg: str) -> None:
    from ultralytics.utils import LOGGER

    from .redact import redact_text

    LOGGER.warning(redact_text(msg))
