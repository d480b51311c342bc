"""`train` (config -> preflight -> tracked training) and `make-synthetic`: parse, call the flow, render."""

from __future__ import annotations

import shlex
import sys

import click

from ..app.starters import DEFAULT_CONFIG
from ..app.starters import PACKAGED as REPO_CONFIGS  # the packaged starters (the repository's configs/)
from ..redact import redact_text
from ..ui_links import UI_URL_HELP
from .boundary import stderr_console


@click.command("make-synthetic")
@click.option("--out", default="data/synthetic", show_default=True, type=click.Path(file_okay=False))
@click.option("--train", "n_train", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--val", "n_val", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--size", default="160x96", show_default=True, help="WIDTHxHEIGHT")
@click.option("--seed", default=0, show_default=True, type=int)
def make_synthetic(out: str, n_train: int, n_val: int, size: str, seed: int) -> None:
    """Write a deterministic synthetic fire/smoke dataset (images, YOLO labels, data.yaml)."""
    from ..app.train import make_synthetic as make

    path = make(out, n_train, n_val, size, seed)
    click.echo(f"wrote {n_train} train + {n_val} val images; data file: {path}")


@click.command("train")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help=f"training config YAML [default: {DEFAULT_CONFIG.relative_to(REPO_CONFIGS.parent)}]")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="override: batch=8, tracking.memory_interval_s=1")
@click.option("--resume", type=click.Path(), default=None, help="continue PATH/weights/last.pt in the same MLflow run")
@click.option("--tracking-uri", default=None, help="else MLFLOW_TRACKING_URI, else sqlite under ./mlruns")
@click.option("--experiment", default=None, help="else MLFLOW_EXPERIMENT_NAME, else the config's")
@click.option("--run-name", default=None)
@click.option("--skip-preflight", is_flag=True, help="train even when preflight finds errors (recorded on the run)")
@click.option("--ui-url", default=None, help=UI_URL_HELP)
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), default=None,
              help="the live guard's policy YAML, as for compare-runs [default: configs/decision.yaml]")
def train(config_path, sets, resume, tracking_uri, experiment, run_name, skip_preflight, ui_url, policy_file) -> None:
    """Train a YOLO detector with every hyperparameter, VRAM sample, s/batch and mAP logged to MLflow."""
    from rich.markup import escape

    from ..app import train as flow
    from ..preflight.render import render_findings

    out = stderr_console()
    plan = flow.plan(config_path, sets, resume, tracking_uri, experiment, policy_file, out.print)
    render_findings(plan.findings, out)
    if plan.errors and not skip_preflight:
        out.print(f"[red]preflight found {len(plan.errors)} error(s); nothing was started.[/] "
                  "Fix them, or pass --skip-preflight to train anyway.")
        sys.exit(1)
    result = flow.run(plan, run_name)
    tracker = result.tracker
    if result.stopped:
        run = tracker.run_id if tracker is not None else ""
        where = f" (spooled locally as {run}: upload it with `sai-mlflow sync`)" if run.startswith("local-") else ""
        out.print(f"[yellow]{result.stopped}: the run {run} is marked KILLED{where}[/]" if tracker is not None
                  else f"[yellow]{result.stopped}: training stopped; it was not tracked[/]")
        sys.exit(result.exit_code)
    if result.failure:
        out.print(f"[red]training failed:[/] {escape(result.failure)} (the run is marked FAILED)")
        sys.exit(result.exit_code)
    _say_where(tracker, plan.uri, plan.experiment, ui_url, out)


def _say_where(tracker, uri: str, exp: str, ui_url: str | None, console) -> None:
    """Where the run is: a local spool to sync, or links into the MLflow UI."""
    from rich.markup import escape

    from .. import keys as K
    from ..ui_links import run_url, ui_base

    if tracker is None:
        return
    if tracker.run_id.startswith("local-"):
        console.print(f"run {tracker.run_id} is spooled locally: "
                      "upload it with `sai-mlflow sync` once the store is back")
        return
    base = ui_base(ui_url, uri)
    console.print(f"[green]run {tracker.run_id}[/] in experiment '{escape(redact_text(exp))}'")
    console.print(f"open it:   {run_url(base, tracker.experiment_id, tracker.run_id)}", soft_wrap=True, highlight=False)
    console.print(f"its report: {run_url(base, tracker.experiment_id, tracker.run_id, K.ARTIFACT_SUMMARY_MD)}",
                  soft_wrap=True, highlight=False)
    if not uri.startswith("http"):
        console.print("serve the UI first (it prints the link that opens model-training mode): "
                      f"sai-mlflow ui --tracking-uri {shlex.quote(redact_text(uri))}",
                      soft_wrap=True, highlight=False, markup=False)


COMMANDS = [train, make_synthetic]
