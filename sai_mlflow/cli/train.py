"""`train` (config -> preflight -> tracked training) and `make-synthetic`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..redact import redact_text
from ..starters import DEFAULT_CONFIG
from ..starters import PACKAGED as REPO_CONFIGS  # the packaged starters (the repository's configs/)
from ..starters import resolve as resolve_starter
from ..ui_links import UI_URL_HELP
from .boundary import UsageError


def _console():
    from rich.console import Console

    return Console(stderr=True)


@click.command("make-synthetic")
@click.option("--out", default="data/synthetic", show_default=True, type=click.Path(file_okay=False))
@click.option("--train", "n_train", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--val", "n_val", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--size", default="160x96", show_default=True, help="WIDTHxHEIGHT")
@click.option("--seed", default=0, show_default=True, type=int)
def make_synthetic(out: str, n_train: int, n_val: int, size: str, seed: int) -> None:
    """Write a deterministic synthetic fire/smoke dataset (images, YOLO labels, data.yaml)."""
    from ..data.synthetic import SyntheticSpec, generate, parse_size

    try:
        w, h = parse_size(size)
    except ValueError as e:
        raise UsageError(str(e)) from None
    path = generate(out, SyntheticSpec(train=n_train, val=n_val, width=w, height=h, seed=seed))
    click.echo(f"wrote {n_train} train + {n_val} val images; data file: {path}")


def _resume_args(resume: str, cfg, explicit: set[str]) -> dict:
    """Resume from the checkpoint's own arguments; only what the user `--set` overrides them.

    A different batch is refused (the seed's lesson: optimizer state, LR scaling and BatchNorm
    statistics depend on it) although Ultralytics itself would allow it.
    """
    from ..ultralytics_args import checkpoint_batch

    path = Path(resume)
    if not path.is_file():
        raise UsageError(f"--resume {resume}: no such checkpoint (expected PATH/weights/last.pt)")
    ckpt_batch = checkpoint_batch(path)
    wanted = cfg.train.get("batch")
    if "batch" in explicit and ckpt_batch is not None and int(wanted) != int(ckpt_batch):
        raise UsageError(
            f"--resume {resume}: the checkpoint trained at batch {ckpt_batch}, you asked for {wanted}. "
            "Changing the batch mid-training is refused (optimizer state, LR scaling and BatchNorm statistics "
            f"depend on it): resume with batch {ckpt_batch}, "
            f"or restart from epoch 0 at batch {wanted} without --resume."
        )
    args = {k: v for k, v in cfg.train.items() if k in explicit and k != "batch"}
    args["resume"] = str(path)
    return args


def model_problem(model) -> str | None:
    """Why Ultralytics could not load `model`, said before a run or a runs dir exists (else None).

    A path must exist; a bare `*.yaml` must be one Ultralytics ships; a bare `*.pt` one it can download.
    """
    s = str(model or "").strip()
    if not s or "://" in s or Path(s).expanduser().exists():
        return None
    suffix = Path(s).suffix.lower()
    hint = "give an existing .pt file, a model YAML file, or a name Ultralytics ships (yolov8n.yaml, yolov8n.pt)"
    if suffix in (".yaml", ".yml"):
        from ultralytics.nn.tasks import yaml_model_load

        try:
            yaml_model_load(s)
            return None
        except FileNotFoundError:
            return f"model {s}: no such model YAML; {hint}"
    if suffix == ".pt":
        from ultralytics.utils.checks import check_yolov5u_filename
        from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

        if Path(s).name == s and check_yolov5u_filename(s) in GITHUB_ASSETS_NAMES:
            return None  # Ultralytics downloads it
        return f"model {s}: no such file; {hint}"
    return None


def _run_preflight(args: dict, resume: str | None, tracking_uri: str, experiment: str, console):
    """The same checks as `sai-mlflow preflight`, on what will really train (the checkpoint's args on resume)."""
    from ..preflight import PreflightContext, run_checks
    from ..preflight.render import render_findings
    from ..ultralytics_args import checkpoint_args
    from .preflight import forecast_history

    checked = {**checkpoint_args(resume), **args} if resume else dict(args)
    ctx = PreflightContext(args=checked, tracking_uri=tracking_uri)
    try:
        ctx.history = forecast_history(checked, tracking_uri, experiment, None)
    except Exception as e:  # an unreachable store must not stop the other checks
        console.print(redact_text(f"preflight: earlier runs not read ({type(e).__name__}: {e}); "
                                  "memory_forecast skipped"),
                      markup=False)
    findings = run_checks(ctx)
    render_findings(findings, console)
    return findings, ctx


def _check_store(uri: str, experiment: str, artifact_location: str, console) -> None:
    """Before any work: a misconfigured store (URI, driver, host, login, permission) stops here with exit 2.

    An unreachable one is an outage: training goes on and the run is spooled. Also warns, once, when a
    database store would keep this experiment's artifacts on this machine's disk.
    """
    from ..errors import StoreConfigError
    from ..tracking.store import StoreMissing, artifact_warning, config_error, make_client

    try:
        client = make_client(uri, create=False)  # a check: the store is made when the run opens
        exp = client.get_experiment_by_name(experiment)  # a read: nothing is created before training starts
        location = exp.artifact_location if exp is not None else (artifact_location or "./mlruns")
    except StoreMissing:
        return  # a new sqlite store: nothing to check, created with the run
    except StoreConfigError as e:
        raise UsageError(f"{e}; nothing was trained") from None
    except ConnectionError:
        return  # an outage: the tracker spools and says so
    except Exception as e:
        refused = config_error(e, uri, f"experiment '{experiment}'")
        if refused is not None:
            raise UsageError(f"{refused}; nothing was trained") from None
        return
    warning = artifact_warning(uri, location)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")


def _checked_policy(policy_file: str | None) -> str:
    """The guard's policy file, read once here so that a bad one is refused (exit 2) before training."""
    from ..compare.policy import PolicyError, load_policy

    try:
        load_policy(policy_file)
    except PolicyError as e:
        raise UsageError(str(e)) from None
    return str(Path(policy_file).resolve()) if policy_file else ""


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
    from ..config import ConfigError, load_config
    from ..tracking.store import resolve_experiment, resolve_tracking_uri

    console = _console()
    try:
        cfg = load_config(resolve_starter(config_path) if config_path else str(DEFAULT_CONFIG), list(sets))
    except ConfigError as e:
        raise UsageError(str(e)) from None
    policy_file = _checked_policy(policy_file)
    args = _training_args(cfg, sets, resume, console)
    uri = resolve_tracking_uri(tracking_uri)
    exp = resolve_experiment(experiment, cfg.experiment)
    _check_store(uri, exp, cfg.tracking.artifact_location, console)
    findings, ctx = _run_preflight(args, resume, uri, exp, console)
    errors = [f for f in findings if f.level == "error"]
    if errors and not skip_preflight:
        console.print(f"[red]preflight found {len(errors)} error(s); nothing was started.[/] "
                      "Fix them, or pass --skip-preflight to train anyway.")
        sys.exit(1)
    tracker = _run_training(args, _settings(cfg, uri, exp, run_name, policy_file), findings, ctx, console)
    _say_where(tracker, uri, exp, ui_url, console)


def _training_args(cfg, sets, resume: str | None, console) -> dict:
    """What Ultralytics will train with: the config's arguments (synthetic data made on first use), or the
    checkpoint's on --resume; a model path that does not exist is refused before any run exists."""
    args = cfg.train_args()
    if not Path(str(args["data"])).exists() and cfg.synthetic is not None:
        from ..data.synthetic import generate

        console.print(f"[cyan]making synthetic data[/] at {cfg.synthetic.out} (config's synthetic section)")
        args["data"] = str(generate(cfg.synthetic.out, cfg.synthetic.spec()))
    if resume:
        return _resume_args(resume, cfg, {s.split("=", 1)[0].strip() for s in sets})
    problem = model_problem(args.get("model"))
    if problem:
        raise UsageError(problem)
    return args


def _settings(cfg, uri: str, exp: str, run_name: str | None, policy_file: str):
    """Tracking settings for this training (they reach DDP workers through the environment)."""
    from ..tracking.settings import TrackingSettings

    return TrackingSettings.from_config(
        cfg.tracking, tracking_uri=uri, experiment=exp, run_name=_run_name(run_name or cfg.run_name, cfg.train),
        stage=cfg.stage, guard_stop_on=",".join(cfg.guard.stop_on), policy_file=policy_file)


def _run_name(given: str | None, train_args: dict) -> str:
    """The run's name as MLflow, the logged model and summary.md show it: redacted. None given: Ultralytics'
    `name` (its run folder) names the run, as is, unless it holds a secret."""
    if given:
        return redact_text(given)
    name = str(train_args.get("name") or "")
    return redact_text(name) if redact_text(name) != name else ""


def _run_training(args: dict, settings, findings, ctx, console):
    """Build the tracked trainer (which opens the run), train, and turn how it ended into an exit code."""
    from rich.markup import escape

    from ..errors import StoreConfigError
    from ..preflight import findings_as_tags
    from ..tracking.settings import environment
    from ..trainer import Terminated, TrackedDetectionTrainer

    with environment(settings):
        try:
            trainer = TrackedDetectionTrainer(overrides=args)  # opens the run (on_pretrain_routine_start)
        except StoreConfigError as e:  # e.g. HTTP 403 on creating a run in this experiment
            raise UsageError(f"{e}; nothing was trained") from None
        except (FileNotFoundError, ValueError, TypeError, SyntaxError) as e:
            raise UsageError(f"Ultralytics refused the arguments: {e}") from None
        trainer.sai_audit = getattr(ctx, "audit", None)  # both read when the run opens, as training starts
        trainer.sai_preflight_tags = findings_as_tags(findings)
        trainer.sai_memory_history = getattr(ctx, "history", None)  # comparable runs: the guard's memory fit
        try:
            trainer.train()
        except KeyboardInterrupt as e:
            how = f"stopped by {e}" if isinstance(e, Terminated) else "interrupted"
            tracker = trainer.sai_tracker
            run = tracker.run_id if tracker is not None else ""
            where = f" (spooled locally as {run}: upload it with `sai-mlflow sync`)" if run.startswith("local-") else ""
            console.print(f"[yellow]{how}: the run {run} is marked KILLED{where}[/]" if tracker is not None
                          else f"[yellow]{how}: training stopped; it was not tracked[/]")
            sys.exit(128 + e.signum if isinstance(e, Terminated) else 130)
        except StoreConfigError as e:  # refused when the run was opened (DDP launcher), before the first batch
            raise UsageError(f"{e}; nothing was trained") from None
        except Exception as e:
            console.print(f"[red]training failed:[/] {escape(redact_text(f'{type(e).__name__}: {e}'))} "
                          "(the run is marked FAILED)")
            sys.exit(1)
    return trainer.sai_tracker  # opened when training started


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
