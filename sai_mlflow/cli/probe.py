"""`probe`: short real trainings at a few batch sizes, the recommendation, the exact next command.

Exit codes as compare-runs: 0 a batch is recommended, 3 none is acceptable, 2 bad usage or input;
1 when the config fails preflight (as `train`). Bad input starts no probe.
"""

from __future__ import annotations

import sys

import click

from ..app.starters import DEFAULT_CONFIG
from ..app.starters import PACKAGED as REPO_CONFIGS  # the packaged starters (the repository's configs/)
from .boundary import PolicyFlag, stderr_console


def _stdout_for_json_only():
    """--format json: stdout carries exactly the JSON object. Ultralytics logs to stdout (its settings
    notice even on import), so everything else is sent to stderr at the descriptor level; the JSON goes
    to the stdout saved here."""
    import os

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(saved, "w")


@click.command("probe")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help=f"training config YAML [default: {DEFAULT_CONFIG.relative_to(REPO_CONFIGS.parent)}]")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override, as for train")
@click.option("--batches", default=None, help="batch sizes to probe, e.g. 32,64")
@click.option("--auto", is_flag=True, help="grow the batch geometrically while the forecast stays under the limit")
@click.option("--start", "auto_start", type=int, default=None, help="--auto's first batch [default 16]")
@click.option("--max-probes", type=int, default=None, help="--auto's most probes [default 4]")
@click.option("--probe-batches", type=int, default=None,
              help="training batches per probe (past warm-up, then steady) [default 60]")
@click.option("--val-batches", type=int, default=None, help="validation batches per probe [default 2]")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), default=None,
              help="policy YAML, as for compare-runs [default: configs/decision.yaml]")
@click.option("--max-memory-fraction", type=PolicyFlag("max_memory_fraction"), default=None,
              help="override the policy's max_memory_fraction")
@click.option("--tracking-uri", default=None, help="else MLFLOW_TRACKING_URI, else sqlite under ./mlruns")
@click.option("--experiment", default=None, help="else MLFLOW_EXPERIMENT_NAME, else the config's")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--devices", "devices_flag", default=None, metavar="INDEX",
              help="probe this one device for the config's multi-device plan [default: the config's device list]")
def probe(config_path, sets, batches, auto, auto_start, max_probes, probe_batches, val_batches, policy_file,
          max_memory_fraction, tracking_uri, experiment, fmt, devices_flag) -> None:
    """Probe batch sizes with short real trainings; recommend one with compare-runs' rules."""
    json_out = _stdout_for_json_only() if fmt == "json" else None
    from ..app import probe as flow
    from ..app.preflight import for_training
    from ..preflight.render import render_findings

    console = stderr_console()
    say = console.print
    plan = flow.prepare(flow.ProbeRequest(config_path, sets, batches, auto, auto_start, max_probes, probe_batches,
                                          val_batches, policy_file, max_memory_fraction, tracking_uri, experiment,
                                          devices_flag), say)
    findings, ctx = for_training({**plan.args, "batch": plan.first_batch}, None, plan.uri, plan.experiment,
                                 lambda line: say(line, markup=False))
    render_findings(findings, console)
    errors = flow.blocking(findings)
    if errors:
        console.print(f"[red]preflight found {len(errors)} error(s); no probe was started.[/] Fix them first.")
        sys.exit(1)
    outcome = flow.run(plan, ctx, say)
    if outcome.stopped_by is not None:
        console.print(f"probe session stopped by {outcome.stopped_by}: the running probe was stopped, its run and "
                      "the session closed KILLED; no batch is recommended", highlight=False)
        sys.exit(outcome.exit_code)
    result, obj = outcome.result, outcome.report
    if json_out is not None:
        import json

        json_out.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
        json_out.flush()
    else:
        from rich.console import Console

        from ..probe import report

        out = Console()
        if not out.is_terminal:
            out = Console(width=180)
        report.render_table(result, out)
    sys.exit(outcome.exit_code)


COMMANDS = [probe]
