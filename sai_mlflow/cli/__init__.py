"""The `sai-mlflow` command group; each command lives in its own module and stays thin."""

from __future__ import annotations

from contextlib import contextmanager

import click

from .. import __version__


class UsageError(click.ClickException):
    """Bad usage or input: one clear message, exit code 2."""

    exit_code = 2


@contextmanager
def store_refusals(uri: str, what: str = ""):
    """A misconfigured store, or an MLflow 401/403 met mid-command: one line naming the fix, exit 2."""
    from ..tracking.store import config_error, redact_credentials

    try:
        yield
    except ConnectionError as e:
        raise UsageError(redact_credentials(e)) from None
    except Exception as e:
        refused = config_error(e, uri, what)
        if refused is None:
            raise
        raise UsageError(str(refused)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sai-mlflow")
def cli() -> None:
    """Experiment-tracking integrated trainer for Ultralytics YOLO."""


def _register() -> None:
    from . import compare, preflight, registry, sync, train

    for module in (train, compare, preflight, registry, sync):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli()
