"""`init [DIR]`: copy the packaged starters (configs, decision policy, the seed's history) out for editing."""

from __future__ import annotations

from pathlib import Path

import click

from .boundary import UsageError


@click.command("init")
@click.argument("folder", default="configs", type=click.Path(file_okay=False))
def init(folder: str) -> None:
    """Copy the starter configs, the decision policy and the seed's history into FOLDER [default: configs].

    Existing files are kept. A `--config NAME` that is not a file here uses the packaged starter instead.
    """
    from ..app.starters import copy_to

    dest = Path(folder)
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{folder} is a file: give a folder for the starters, e.g. `sai-mlflow init configs`")
    try:
        written, kept = copy_to(dest)
    except OSError as e:
        raise UsageError(f"cannot write the starters into {folder} ({e.strerror or e}); choose another folder") \
            from None
    for p in written:
        click.echo(f"wrote  {p}")
    for p in kept:
        click.echo(f"kept   {p} (exists)")
    click.echo(f"edit them, then: sai-mlflow train --config {dest / 'cpu_smoke.yaml'}")


COMMANDS = [init]
