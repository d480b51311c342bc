"""`promote`: gated promotion of a run's model to a registered model alias; `--rollback` moves it back.

Exit codes: 0 promoted (or would be, with --dry-run; or rolled back), 1 a gate failed and nothing
was written, 2 bad usage or input (unknown run, run without a model, unknown alias to roll back).
"""

from __future__ import annotations

import sys

import click

from ..ui_links import UI_URL_HELP
from .boundary import TABLE_WIDTH, given

TRACKING_URI_HELP = "MLflow tracking URI (else MLFLOW_TRACKING_URI, else sqlite under ./mlruns)."

HEADLINES = {
    "promoted": "[green]promoted[/]: {model} v{version} is now @{alias}{prev}",
    "forced": "[yellow]FORCED[/]: {model} v{version} is now @{alias}{prev} although gates failed ({failed}); recorded",
    "blocked": "[red]not promoted[/]: gate(s) failed: {failed}; nothing was written",
    "would_promote": "dry run: {verdict}; nothing was written",
    "would_force": ("dry run: gates fail ({failed}) but --force would register it as @{alias} anyway; "
                    "nothing was written"),
    "already_holder": "run {run} already holds {model}@{alias} (v{version}); nothing to do",
    "rolled_back": "[green]rolled back[/]: {model}@{alias} moved from v{prev_version} back to v{version}",
    "would_roll_back": ("dry run: would move {model}@{alias} from v{prev_version} back to v{version}; "
                        "nothing was written"),
}


def _fmt_map(x: float | None) -> str:
    return "not recorded" if x is None else f"{x:.4f} ({100 * x:.1f} %)"


def render(outcome, console) -> None:
    from rich.table import Table

    ev = outcome.evaluation
    if ev is not None:
        holder = (f"v{ev.holder.version} (run {ev.holder.run_id or 'unknown'})" if ev.holder else "none")
        table = Table(title=f"promote {ev.run_id} → {ev.model_name}@{ev.alias}  (holder: {holder})",
                      title_justify="left")
        for col in ("gate", "value", "threshold", "result", "note"):
            table.add_column(col, overflow="fold")
        for g in ev.gates:
            table.add_row(g.name, g.value, g.threshold, "[green]pass[/]" if g.passed else "[red]FAIL[/]", g.note)
        console.print(table)
        console.print(f"model: {ev.model_uri}")
        held = (f"v{ev.holder.version} {_fmt_map(ev.holder.best_map50)}" if ev.holder else "none")
        console.print(f"best mAP50: candidate {_fmt_map(ev.best_map50)}; current holder {held}", highlight=False)
    failed = ", ".join(ev.failed) if ev is not None else ""
    verdict = ("every gate passes: it would be promoted" if ev is not None and ev.passed
               else f"gate(s) failed: {failed}")
    model = ev.model_name if ev is not None else ""
    console.print(HEADLINES[outcome.action].format(
        model=model, alias=ev.alias if ev is not None else "", version=outcome.version, failed=failed,
        prev=f" (previous holder v{outcome.previous_version})" if outcome.previous_version else " (first holder)",
        prev_version=outcome.previous_version, run=ev.run_id if ev is not None else "", verdict=verdict))


@click.command("promote", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_id", required=False)
@click.option("--model", "model_name", required=True, help="Registered model name, e.g. sai-net-detector.")
@click.option("--alias", default="champion", show_default=True, callback=given,
              help="Alias to move (registry stages are deprecated).")
@click.option("--dry-run", is_flag=True, help="Print the gate table; write nothing.")
@click.option("--force", is_flag=True,
              help="Register even when gates fail; recorded on the version (sai.promotion.forced).")
@click.option("--allow-dataset-change", is_flag=True, help="Waive the same-dataset_digest gate.")
@click.option("--rollback", is_flag=True, help="Move the alias back to its previous holder (takes no RUN_ID).")
@click.option("--tracking-uri", help=TRACKING_URI_HELP)
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False),
              help="Policy YAML (default configs/decision.yaml): min_improvement, max_memory_fraction, ...")
@click.option("--width", type=TABLE_WIDTH, help="Table width in characters (default: the terminal's).")
@click.option("--ui-url", help=UI_URL_HELP)
def promote(run_id, model_name, alias, dry_run, force, allow_dataset_change, rollback, tracking_uri, policy_file,
            width, ui_url):
    """Register RUN_ID's model as a new version of --model and point --alias at it, if it passes the gates.

    Gates: run FINISHED; no reject reason from compare-runs; best mAP50 >= the alias holder's +
    min_improvement; same dataset_digest as the holder; batch_size_effective == batch_size; peak memory
    fraction within the policy. Exit 0 promoted, 1 a gate failed (nothing written), 2 bad input.
    """
    from rich.console import Console

    from ..app.promote import promote as flow
    from ..ui_links import model_version_url, ui_base

    outcome, uri = flow(run_id, model_name, alias, rollback=rollback, dry_run=dry_run, force=force,
                        allow_dataset_change=allow_dataset_change, tracking_uri=tracking_uri, policy_file=policy_file)
    outcome_model = model_name if rollback else None
    console = Console(width=width) if width else Console()
    if outcome_model is not None:
        console.print(HEADLINES[outcome.action].format(model=model_name, alias=alias, version=outcome.version,
                                                       prev_version=outcome.previous_version))
    else:
        render(outcome, console)
    if outcome.version and outcome.action in ("promoted", "forced", "already_holder", "rolled_back"):
        console.print(f"open it: {model_version_url(ui_base(ui_url, uri), model_name, outcome.version)}",
                      soft_wrap=True, highlight=False)
    sys.exit(outcome.exit_code)


COMMANDS = [promote]
