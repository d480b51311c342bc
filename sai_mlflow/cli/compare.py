"""`compare-runs`, `import-history`, `import-ultralytics`: thin commands (parse, call, render, exit code).

Exit codes of compare-runs: 0 a run is recommended, 3 no run is acceptable, 2 bad usage or input.
"""

from __future__ import annotations

import sys

import click

from ..ui_links import UI_URL_HELP
from .boundary import TABLE_WIDTH, GuardedCommand, PolicyFlag, UsageError, plot_file

TRACKING_URI_HELP = "MLflow tracking URI (else MLFLOW_TRACKING_URI, else sqlite under ./mlruns)."


def check_writable_file(path: str, option: str) -> None:
    """Before any work: the folder must exist and take a new file (a plot must not fail after minutes of loading)."""
    import os
    from pathlib import Path

    folder = Path(path).expanduser().resolve().parent
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK) or (Path(path).exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: cannot write there (permission denied); choose another path")


@click.command("compare-runs", cls=GuardedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_ids", nargs=-1)
@click.option("--experiment", "-e",
              help="Compare the runs of this experiment (else MLFLOW_EXPERIMENT_NAME, else 'sai-mlflow').")
@click.option("--filter", "filter_string", help="MLflow filter string, e.g. \"tags.stage = '1'\" (with --experiment).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False),
              help="Policy YAML (default configs/decision.yaml).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), callback=plot_file,
              help="Write memory / s-per-batch / mAP50 plots to this PNG.")
@click.option("--tag-runs", is_flag=True,
              help="Write the verdict back: tags sai.verdict, sai.reasons and a one-line run description.")
@click.option("--log-report", is_flag=True,
              help="Log a run_kind=decision run: verdict markdown, JSON, plot, links to the judged runs.")
@click.option("--tracking-uri", help=TRACKING_URI_HELP)
@click.option("--ui-url", help=UI_URL_HELP)
@click.option("--max-memory-fraction", type=PolicyFlag("max_memory_fraction"),
              help="Override the policy's max_memory_fraction.")
@click.option("--max-map-drop", type=PolicyFlag("max_map_drop"), help="Override max_map_drop (absolute, 0-1).")
@click.option("--max-leak-gib-per-hour", type=PolicyFlag("max_leak_gib_per_hour"),
              help="Override max_leak_gib_per_hour.")
@click.option("--max-data-wait-fraction", type=PolicyFlag("max_data_wait_fraction"),
              help="Override max_data_wait_fraction.")
@click.option("--max-slowdown", type=PolicyFlag("max_slowdown"), help="Override max_slowdown.")
@click.option("--width", type=TABLE_WIDTH, help="Table width in characters (default: the terminal's, 180 when piped).")
def compare_runs(run_ids, experiment, filter_string, policy_file, fmt, plot_file, tag_runs, log_report,
                 tracking_uri, ui_url, max_memory_fraction, max_map_drop, max_leak_gib_per_hour, max_data_wait_fraction,
                 max_slowdown, width):
    """Judge runs against the policy: a table, a verdict paragraph, exit 0 when one is recommended.

    RUN_IDS compare those runs; otherwise the runs of --experiment (optionally --filter).
    """
    from ..app import compare as flow
    from ..compare import render

    if run_ids and (experiment or filter_string):
        raise UsageError("give run ids, or --experiment [--filter], not both")
    if plot_file:
        check_writable_file(plot_file, "--plot")
    judged = flow.judge(run_ids, experiment, filter_string, {
        "max_memory_fraction": max_memory_fraction, "max_map_drop": max_map_drop,
        "max_leak_gib_per_hour": max_leak_gib_per_hour, "max_data_wait_fraction": max_data_wait_fraction,
        "max_slowdown": max_slowdown}, policy_file, tracking_uri=tracking_uri, ui_url=ui_url,
        want_series=bool(plot_file), log_report=log_report, tag_runs=tag_runs)
    decision, links = judged.decision, judged.links

    if fmt == "json":
        import json

        click.echo(json.dumps({**render.to_json_obj(decision), "links": flow.public(links)}, indent=2,
                              ensure_ascii=False))
    elif fmt == "markdown":
        click.echo(render.to_markdown(decision) + "\n" + _links_text(links, markdown=True), nl=False)
    else:
        from rich.console import Console

        console = Console(width=width) if width else Console()
        if not width and not console.is_terminal:
            console = Console(width=180)  # piped or logged: rich's 80 columns would fold every cell
        render.render_table(decision, console)
        click.echo(_links_text(links))  # not through rich: a link must never be folded or cropped

    if plot_file:
        render.plot(decision, judged.series, plot_file)
        click.echo(f"plot written to {plot_file}", err=True)
    if tag_runs:
        from ..keys import TAG_REASONS, TAG_VERDICT

        n = flow.tag_runs(judged)
        click.echo(f"tagged {n} runs ({TAG_VERDICT}, {TAG_REASONS}, description)", err=True)
    if log_report:
        click.echo(f"decision run logged: {links['decision_run']}", err=True)
    sys.exit(decision.exit_code)


def _links_text(links: dict, markdown: bool = False) -> str:
    n = len(links["runs"])
    rows = [(f"compare the {n} judged runs", links["compare"])]
    if links["recommended"]:
        rows.append(("recommended run", links["recommended"]))
    if links["decision_run"]:
        rows.append(("decision report", links["decision_run"]))
    if markdown:
        return "**Open in MLflow:** " + " · ".join(f"[{name}]({url})" for name, url in rows) + "\n"
    return "Open in MLflow:\n" + "\n".join(f"  {name + ':':<24} {url}" for name, url in rows)


@click.command("import-history")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--experiment", "-e", help="Log into this experiment (else the file's, else MLFLOW_EXPERIMENT_NAME).")
@click.option("--tracking-uri", help=TRACKING_URI_HELP)
@click.option("--ui-url", help=UI_URL_HELP)
def import_history(files, experiment, tracking_uri, ui_url):
    """Log runs described in a history YAML file (docs/history-format.md) as MLflow runs (run_kind=replay)."""
    from ..app import compare as flow
    from ..app.store import client_for
    from ..ui_links import run_url, ui_base

    histories = flow.read_histories(files)  # a malformed file is refused before a store is opened
    client = client_for(tracking_uri)
    ui = ui_base(ui_url, client.tracking_uri)
    for res in flow.import_history(client, histories, experiment):
        click.echo(f"{res.action:>16}  {res.run_name}  {res.run_id}  (experiment {res.experiment})")
        click.echo(f"{'':>16}  {run_url(ui, res.experiment_id, res.run_id)}")


@click.command("import-ultralytics")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--experiment", "-e", help="Log into this experiment (else MLFLOW_EXPERIMENT_NAME, else 'sai-mlflow').")
@click.option("--tracking-uri", help=TRACKING_URI_HELP)
@click.option("--ui-url", help=UI_URL_HELP)
@click.option("--no-weights", is_flag=True, help="Do not upload weights/*.pt as artifacts.")
def import_ultralytics(run_dirs, experiment, tracking_uri, ui_url, no_weights):
    """Log existing Ultralytics run dirs (args.yaml + results.csv + weights) as MLflow runs (run_kind=import)."""
    from ..app import compare as flow
    from ..app.store import client_for
    from ..ui_links import run_url, ui_base

    read = flow.read_run_dirs(run_dirs)  # a malformed run folder is refused before a store is opened
    client = client_for(tracking_uri)
    for res in flow.import_ultralytics(client, read, experiment, weights=not no_weights):
        click.echo(f"{res.action:>16}  {res.run_name}  {res.run_id}  (experiment {res.experiment})")
        click.echo(f"{'':>16}  {run_url(ui_base(ui_url, client.tracking_uri), res.experiment_id, res.run_id)}")


COMMANDS = [compare_runs, import_history, import_ultralytics]


def main() -> None:
    """The standalone `compare-runs` console script."""
    compare_runs(prog_name="compare-runs")
