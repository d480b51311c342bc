"""`preflight` (findings table, exit 0/1) and `stage-shm` (copy a dataset into /dev/shm, verified)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .boundary import PolicyFlag, UsageError

# Direct flags: the common arguments without writing a config (they override the config's values).
_FLAG_KEYS = ("data", "batch", "imgsz", "cache", "workers", "device", "model", "resume")


class StagingFailed(click.ClickException):
    """Staging could not go ahead or did not complete: exit 1 with the reason."""

    exit_code = 1


def _parse_value(text: str):
    import yaml

    t = text.strip()
    if "," in t and not t.startswith("["):  # --imgsz 1440,808  /  --device 0,1 stays a string for device
        parts = [p.strip() for p in t.split(",")]
        if all(p.isdigit() for p in parts):
            return [int(p) for p in parts]
    try:
        return yaml.safe_load(t)
    except yaml.YAMLError:
        return t


def _args_from(config_path, sets, flags: dict) -> tuple[dict, str | None]:
    """(Ultralytics args, config's experiment) from a config + --set, or from --set/flags alone."""
    flag_items = {k: v for k, v in flags.items() if v is not None}
    if config_path:
        try:
            from ..config import ConfigError, load_config
        except ImportError:  # pragma: no cover - the loader ships with the package
            raise UsageError("the config loader is not available in this install; pass --data/--batch/... instead")
        overrides = list(sets) + [f"{k}={v}" for k, v in flag_items.items() if k != "imgsz"]
        try:
            from ..starters import resolve

            cfg = load_config(resolve(config_path), overrides, check_data=False)
        except ConfigError as e:
            raise UsageError(str(e)) from None
        args = dict(cfg.train_args())
        if "imgsz" in flag_items:
            args["imgsz"] = _parse_value(flag_items["imgsz"])
        return args, getattr(cfg, "experiment", None)
    from ..config import ConfigError, check_given, split_override

    args: dict = {}
    for item in sets:
        try:
            k, v = split_override(item)
            check_given(k, v)
        except ConfigError as e:
            raise UsageError(str(e)) from None
        args[k] = _parse_value(v)
    for k, v in flag_items.items():
        args[k] = v if k in ("data", "model", "device") else _parse_value(v)
    if not args:
        raise UsageError("nothing to check: pass --config FILE, or at least --data DATA_YAML")
    return args, None


def forecast_history(args: dict, tracking_uri: str | None, experiment: str | None, config_experiment: str | None):
    """Comparable runs for memory_forecast, when a store exists (preflight never creates one)."""
    from ..preflight import load_forecast_history
    from ..tracking.store import make_client, resolve_experiment, resolve_tracking_uri
    from ..ultralytics_args import train_imgsz

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return None
    client = make_client(uri)
    exp = client.get_experiment_by_name(resolve_experiment(experiment, config_experiment))
    if exp is None:
        return None
    model = args.get("model")
    return load_forecast_history(client, [exp.experiment_id], Path(str(model)).name if model else None,
                                 train_imgsz(args.get("imgsz", 640)), None)


def _policy_limit(policy_file: str | None) -> float:
    """The one memory limit: the policy's, as compare-runs and the registry read it."""
    from ..compare.policy import PolicyError, load_policy

    try:
        return load_policy(policy_file).max_memory_fraction
    except PolicyError as e:
        raise UsageError(str(e)) from None


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
    from ..preflight import PreflightContext, run_checks

    flags = dict(data=data, batch=batch, imgsz=imgsz, cache=cache, workers=workers, device=device, model=model,
                 resume=resume)
    args, config_experiment = _args_from(config_path, sets, flags)
    from ..tracking.store import resolve_tracking_uri

    ctx = PreflightContext(args=args, stage_dest=stage_to, check_images=not no_image_check,
                           max_memory_fraction=max_memory_fraction or _policy_limit(policy_file),
                           tracking_uri=resolve_tracking_uri(tracking_uri))
    try:
        ctx.history = forecast_history(args, tracking_uri, experiment, config_experiment)
    except Exception as e:  # an unreachable store must not stop the other checks
        from ..redact import redact_text

        click.echo(redact_text(f"preflight: earlier runs not read ({type(e).__name__}: {e}); memory_forecast skipped"),
                   err=True)
    findings = run_checks(ctx)
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
    from ..data.staging import StagingError, stage

    if not Path(data_yaml).is_file():
        raise UsageError(f"--data {data_yaml}: no such file; pass the dataset's data.yaml")
    try:
        r = stage(data_yaml, dest, dry_run=dry_run, progress=not no_progress and fmt == "text")
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
