"""Errors that end a command with one clear line instead of a traceback.

Every command's error boundary (sai_mlflow/cli) turns these into `Error: <message>` and their exit code.
Messages must already be redacted: they are printed as they are.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad usage or input the user can fix: one line, exit 2."""

    exit_code = 2


class StoreConfigError(UserError):
    """The tracking store is misconfigured (unknown scheme, missing driver, bad host name, 401/403).

    Refused before any work, unlike an outage of a store that is configured right, which is spooled.
    """


def closest(word: str, options) -> str:
    """" (did you mean 'x'?)" for the option closest to a misspelt word, else "": for one-line errors."""
    import difflib

    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""
