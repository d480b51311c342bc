"""`preflight` (findings table, exit 0/1) and `stage-shm` (copy a dataset into /dev/shm, verified)."""

from __future__ import annotations

import json
import sys

import click

from .boundary import PolicyFlag


class StagingFailed(click.ClickException):
    """Staging could not go ahead or did not complete: exit 1 with the reason."""

    exit_code = 1


@click.command("preflight")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="training config YAML")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override, e.g. --set batch=128")
@click.option("--data", default=None, help="data.yaml (overrides the config's)")
@click.option("--batch", default=None)
@click.option("--imgsz", default=None, help="640, or 1440,808")
@click.option("--cache", default=None, help="false | ram | disk")
@click.option("--workers", default=None)
@click.option("--device", default=None, help="0 | 0,1 | cpu")
@click.option("--model", default=None)
@click.option("--resume", default=None, help="checkpoint being resumed (last.pt): checks its batch")
@click.option("--stage-to", "stage_to", default=None, type=click.Path(file_okay=False),
              help="a planned /dev/shm staging folder: checks it has room")
@click.option("--max-memory-fraction", default=None, type=PolicyFlag("max_memory_fraction"),
              help="limit for memory_forecast [default: the policy's max_memory_fraction]")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), default=None,
              help="policy YAML (default configs/decision.yaml), as for compare-runs")
@click.option("--no-image-check", is_flag=True, help="skip reading image headers (faster; no corrupt-image check)")
@click.option("--tracking-uri", default=None,
              help="where the run will be logged: earlier runs for memory_forecast, and tracking_unwritable")
@click.option("--experiment", default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def preflight(config_path, sets, data, batch, imgsz, cache, workers, device, model, resume, stage_to,
              max_memory_fraction, policy_file, no_image_check, tracking_uri, experiment, fmt) -> None:
    """Check a training setup before any GPU time is spent; exit 1 on any error finding."""
    from ..app import preflight as flow

    flags = dict(data=data, batch=batch, imgsz=imgsz, cache=cache, workers=workers, device=device, model=model,
                 resume=resume)
    findings = flow.check(config_path, sets, flags, stage_to=stage_to, max_memory_fraction=max_memory_fraction,
                          policy_file=policy_file, check_images=not no_image_check, tracking_uri=tracking_uri,
                          experiment=experiment, say=lambda line: click.echo(line, err=True))
    errors = sum(f.level == "error" for f in findings)
    if fmt == "json":
        click.echo(json.dumps({
            "ok": errors == 0, "errors": errors, "warnings": sum(f.level == "warning" for f in findings),
            "findings": [f.to_dict() for f in findings],
        }, indent=2))
    else:
        from rich.console import Console

        from ..preflight.render import render_findings

        console = Console()
        render_findings(findings, console)
        console.print(f"[red]{errors} error(s): fix them before training[/]" if errors
                      else "[green]no errors[/]")
    sys.exit(1 if errors else 0)


@click.command("stage-shm")
@click.option("--data", "data_yaml", required=True, type=click.Path(dir_okay=False), help="source data.yaml")
@click.option("--dest", required=True, type=click.Path(file_okay=False), help="target folder, e.g. /dev/shm/fasdd")
@click.option("--dry-run", is_flag=True, help="check capacity and say what would be copied; write nothing")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def stage_shm(data_yaml, dest, dry_run, no_progress, fmt) -> None:
    """Copy a dataset into a tmpfs (verified, atomic, idempotent) and write a data.yaml pointing at it."""
    from ..app.preflight import stage_dataset
    from ..data.staging import StagingError

    try:
        r = stage_dataset(data_yaml, dest, dry_run=dry_run, progress=not no_progress and fmt == "text")
    except StagingError as e:
        raise StagingFailed(str(e)) from None
    if fmt == "json":
        click.echo(json.dumps(r.to_dict(), indent=2))
        return
    from ..keys import GIB as gib
    if r.dry_run:
        click.echo(f"dry run: would copy {r.copied_files} of {r.files} files ({r.copied_bytes / gib:.2f} GiB) "
                   f"to {r.dest}; {r.reused_files} already staged; capacity OK")
    elif r.up_to_date:
        click.echo(f"{r.dest} is already staged and identical ({r.files} files, {r.bytes / gib:.2f} GiB): "
                   "nothing copied")
    else:
        click.echo(f"staged {r.copied_files} files ({r.copied_bytes / gib:.2f} GiB) in {r.seconds:.1f} s "
                   f"({r.mib_per_s:.0f} MiB/s), verified by SHA-256; {r.reused_files} unchanged files kept")
    click.echo(f"data file: {r.data_yaml}")
    if r.on_tmpfs and not r.dry_run:
        click.echo("train from it with cache: false (the images are already in RAM; cache would double them)")


COMMANDS = [preflight, stage_shm]
