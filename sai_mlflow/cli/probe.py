"""`probe`: short real trainings at a few batch sizes, the recommendation, the exact next command.

Exit codes as compare-runs: 0 a batch is recommended, 3 none is acceptable, 2 bad usage or input;
1 when the config fails preflight (as `train`). Bad input starts no probe.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .boundary import PolicyFlag, UsageError
from .train import DEFAULT_CONFIG, REPO_CONFIGS, _checked_policy, resolve_starter


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
    from ..compare.policy import PolicyError, load_policy
    from ..config import ConfigError, load_config
    from ..probe.plan import (
        DEFAULT_AUTO_START,
        DEFAULT_BATCHES,
        DEFAULT_MAX_PROBES,
        DEFAULT_VAL_BATCHES,
        PlanError,
        parse_batches,
        plan_devices,
    )
    from ..tracking.store import make_client, resolve_experiment, resolve_tracking_uri
    from .train import _console, _run_preflight

    console = _console()
    if bool(batches) == bool(auto):
        raise UsageError("give --batches B1,B2,… or --auto (one of them)")
    if not auto and (auto_start is not None or max_probes is not None):
        raise UsageError("--start and --max-probes go with --auto")
    for name, v in (("--start", auto_start), ("--max-probes", max_probes), ("--probe-batches", probe_batches),
                    ("--val-batches", val_batches)):
        if v is not None and v < 1:
            raise UsageError(f"{name} {v}: must be at least 1")
    try:
        planned = parse_batches(batches) if batches else None
    except PlanError as e:
        raise UsageError(str(e)) from None
    config_path = config_path or str(DEFAULT_CONFIG)
    try:
        cfg = load_config(resolve_starter(config_path), list(sets))
    except ConfigError as e:
        raise UsageError(str(e)) from None
    checked_policy = _checked_policy(policy_file)
    try:
        policy = load_policy(checked_policy or None, {"max_memory_fraction": max_memory_fraction})
    except PolicyError as e:
        raise UsageError(str(e)) from None

    args = cfg.train_args()
    try:
        devices = plan_devices(args.get("device"), devices_flag)
    except PlanError as e:
        raise UsageError(str(e)) from None
    if devices.probe_device is not None:
        args["device"] = devices.probe_device
    if devices.note:
        console.print(devices.note, highlight=False, markup=False)
    if not Path(str(args["data"])).exists() and cfg.synthetic is not None:
        from ..data.synthetic import generate

        console.print(f"[cyan]making synthetic data[/] at {cfg.synthetic.out} (config's synthetic section)")
        args["data"] = str(generate(cfg.synthetic.out, cfg.synthetic.spec()))
    uri = resolve_tracking_uri(tracking_uri)
    exp = resolve_experiment(experiment, cfg.experiment)
    first = min(planned) if planned else (auto_start or DEFAULT_AUTO_START)
    findings, ctx = _run_preflight({**args, "batch": first}, None, uri, exp, console)
    # the probes measure memory themselves: a forecast over the limit is what they are here to settle
    errors = [f for f in findings if f.level == "error" and f.code != "memory_forecast"]
    if errors:
        console.print(f"[red]preflight found {len(errors)} error(s); no probe was started.[/] Fix them first.")
        sys.exit(1)
    if ctx.audit is None:
        raise UsageError(f"train.data {args['data']}: the dataset could not be read; no probe was started")
    from ..probe.session import oversized

    too_big = oversized(planned or [], ctx.audit.train_images)
    if too_big:
        raise UsageError(f"{too_big}; no probe was started")
    try:
        client = make_client(uri)
    except ConnectionError as e:
        raise UsageError(str(e)) from None

    from ..probe import report
    from ..probe.session import ProbeSpec, Session
    from ..probe.stop import SignalStop, Stopped

    flags = ((["--tracking-uri", tracking_uri] if tracking_uri else [])
             + (["--experiment", experiment] if experiment else []))
    spec = ProbeSpec(config_path=config_path, sets=list(sets), args=args, audit=ctx.audit, tracking_uri=uri,
                     experiment=exp, stage=cfg.stage, policy=policy, policy_file=checked_policy or None,
                     memory_interval_s=min(cfg.tracking.memory_interval_s, 0.25),
                     batches_per_probe=probe_batches or DEFAULT_BATCHES, val_batches=val_batches or DEFAULT_VAL_BATCHES,
                     cli_flags=flags, plan_factor=devices.per_probe)
    session = None
    with SignalStop().installed() as signals:
        try:
            with signals.deferred():  # the session run and its spool together
                session = Session(spec, client, say=lambda s: console.print(s, highlight=False, markup=False))
                session.deferred = signals.deferred
            console.print(f"probe session {session.run_id} in experiment '{exp}' (work folder {session.workdir})",
                          highlight=False)
            result = session.run(planned, auto_start or DEFAULT_AUTO_START, max_probes or DEFAULT_MAX_PROBES)
            plot_file = session.workdir / "probe_plot.png"
            try:
                report.plot(result, str(plot_file))
            except Exception as e:
                console.print(f"plot not written ({type(e).__name__}: {e})")
                plot_file = None
            obj = report.to_json_obj(result)
            session.close(result, obj, report.to_markdown(result), plot_file)
        except Stopped as e:  # SIGTERM, SIGINT (Ctrl-C), SIGHUP: everything the session started is stopped
            if session is not None:
                session.stop("KILLED")
            console.print(f"probe session stopped by {e}: the running probe was stopped, its run and the session "
                          "closed KILLED; no batch is recommended", highlight=False)
            sys.exit(e.exit_code)
        except BaseException:
            if session is not None:
                session.stop("FAILED")
            raise
    if json_out is not None:
        import json

        json_out.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
        json_out.flush()
    else:
        from rich.console import Console

        out = Console()
        if not out.is_terminal:
            out = Console(width=180)
        report.render_table(result, out)
    sys.exit(result.exit_code)


COMMANDS = [probe]
