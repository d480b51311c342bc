"""One error boundary for every command: whatever escapes a command becomes one redacted `Error:` line.

Bad input, a misconfigured or unusable store (MLflow, sqlite/SQLAlchemy, HTTP 401/403) and file-system
errors exit 2 as the contract says; anything unforeseen exits 1 with one line too (set SAI_MLFLOW_DEBUG=1
for the traceback). Used by the `sai-mlflow` group and by the standalone `compare-runs` command.

While a command runs, everything printed to stdout/stderr (by it, by Ultralytics, by MLflow) passes the one
redaction rule (`redact.RedactingStream`).
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager

import click

from ..errors import UserError
from ..redact import RedactingStream, redact_text

MAX_CHARS = 600


class UsageError(click.ClickException):
    """Bad usage or input: one clear message, exit code 2."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(one_line(message))
        self.exit_code = exit_code


def one_line(message) -> str:
    """Redacted, whitespace folded, bounded: what the user sees after `Error: `."""
    text = re.sub(r"\s+", " ", redact_text(message)).strip()
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1] + "…"


def _mlflow_message(e) -> str:
    from ..tracking.store import config_error, http_refusal

    refused = config_error(e, "")
    if refused is not None:
        return str(refused)
    msg = getattr(e, "message", None) or str(e)
    status = re.search(r"\b(401|403)\b|Unauthorized|Forbidden", msg)
    if status:  # a 401/403 that MLflow did not code (older servers, proxies in front of them)
        return str(http_refusal(401 if status.group(0) in ("401", "Unauthorized") else 403, ""))
    return f"MLflow error: {msg}"


@contextmanager
def store_refusals(uri: str, what: str = ""):
    """An MLflow 401/403 met mid-command, said with the store and what was refused; the rest goes to the boundary."""
    from ..app.store import refusals
    from ..errors import StoreConfigError

    try:
        with refusals(uri, what):
            yield
    except StoreConfigError as e:
        raise UsageError(str(e)) from None


def to_usage_error(e: BaseException) -> UsageError:
    """The one line (and exit code) for an exception that escaped a command."""
    if isinstance(e, UserError):
        return UsageError(str(e), getattr(e, "exit_code", 2))
    if isinstance(e, ConnectionError):
        return UsageError(str(e))
    try:
        from mlflow.exceptions import MlflowException

        if isinstance(e, MlflowException):
            return UsageError(_mlflow_message(e))
    except ImportError:  # pragma: no cover
        pass
    import sqlite3

    if isinstance(e, sqlite3.Error) or type(e).__module__.startswith("sqlalchemy"):
        orig = getattr(e, "orig", None) or e
        return UsageError(f"the tracking store cannot be used ({type(orig).__name__}: "
                          f"{str(orig).splitlines()[0] if str(orig) else ''}); "
                          "check that the database file is intact and writable, or give another --tracking-uri")
    if isinstance(e, UnicodeDecodeError):
        return UsageError(f"a file is not UTF-8 text ({e.reason} at byte {e.start})")
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        return UsageError(f"{e.strerror or e}{where}")
    return UsageError(f"unexpected {type(e).__name__}: {e} (set SAI_MLFLOW_DEBUG=1 for the traceback)", exit_code=1)


@contextmanager
def redacted_output():
    """stdout and stderr through the redaction rule for the command's duration (installed once)."""
    if isinstance(sys.stdout, RedactingStream):
        yield
        return
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def stderr_console():
    """Progress, findings and where a run is go to stderr (stdout stays Ultralytics', or the JSON's)."""
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def error_boundary():
    try:
        with redacted_output():
            yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except UserError as e:  # a flow's refusal (sai_mlflow/app): one line even with SAI_MLFLOW_DEBUG set
        raise to_usage_error(e) from None
    except Exception as e:
        if os.environ.get("SAI_MLFLOW_DEBUG"):
            raise
        raise to_usage_error(e) from None


class GuardedCommand(click.Command):
    """A command run inside the error boundary (for a command also run on its own, like compare-runs)."""

    def invoke(self, ctx):
        with error_boundary():
            return super().invoke(ctx)


class GuardedGroup(click.Group):
    """A group whose every subcommand runs inside the error boundary."""

    def invoke(self, ctx):
        with error_boundary():
            return super().invoke(ctx)


# --- flags checked where they are parsed: the error names the flag and the fix, before any work ----------

class PolicyFlag(click.ParamType):
    """A policy threshold given as a flag (`--max-memory-fraction`), checked by the policy's own rule so the
    error names the flag, not configs/decision.yaml."""

    name = "number"

    def __init__(self, key: str) -> None:
        self.key = key

    def convert(self, value, param, ctx):
        import math

        from ..compare.policy import PolicyError, make_policy

        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        try:
            make_policy({self.key: x})
        except PolicyError as e:
            self.fail(str(e).rsplit(f"{self.key}: ", 1)[-1], param, ctx)
        return x


TABLE_WIDTH = click.IntRange(min=40)  # narrower, a table shows no row (and only the links were printed)
PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def plot_file(ctx, param, value):
    """`--plot FILE`: a format the plotter writes, known before the runs are read and the verdict printed."""
    from pathlib import Path

    if value is not None and Path(value).suffix.lower() not in PLOT_SUFFIXES:
        raise click.BadParameter(f"{value}: plots are written as PNG; end the name with .png "
                                 f"(or {', '.join(PLOT_SUFFIXES[1:])})", ctx, param)
    return value


def given(ctx, param, value):
    """A name option given as "" names nothing: said as such, with an example."""
    if value is not None and not str(value).strip():
        example = f" (e.g. {param.opts[0]} {param.default})" if param.default else ""
        raise click.BadParameter(f"an empty value names nothing; give a name{example}", ctx, param)
    return value
