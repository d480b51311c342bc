"""How tracking speaks during training: one warning line through Ultralytics' own logger, so it lands
where the user already reads training output (and in Ultralytics' log files)."""

from __future__ import annotations


def warn(msg: str) -> None:
    from ultralytics.utils import LOGGER

    LOGGER.warning(msg)
