"""The `sai-mlflow` command group; each command lives in its own module and stays thin."""

from __future__ import annotations

import click

from .. import __version__
from .boundary import GuardedCommand, GuardedGroup, UsageError, error_boundary, store_refusals  # noqa: F401  (the one boundary)


@click.group(cls=GuardedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sai-mlflow")
def cli() -> None:
    """Experiment-tracking integrated trainer for Ultralytics YOLO."""


def _register() -> None:
    from . import compare, init, preflight, probe, registry, sync, train, ui

    for module in (train, probe, compare, preflight, registry, sync, ui, init):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli()
