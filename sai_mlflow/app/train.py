"""The `train` flow: config -> checked policy -> what Ultralytics will train with -> store check -> preflight
(`plan`), then the tracked training (`run`); and `make-synthetic`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreConfigError, UserError
from ..redact import redact_text
from .preflight import for_training
from .starters import DEFAULT_CONFIG
from .starters import resolve as resolve_starter


def make_synthetic(out: str, n_train: int, n_val: int, size: str, seed: int):
    """A deterministic synthetic fire/smoke dataset; returns its data.yaml."""
    from ..data.synthetic import SyntheticSpec, generate, parse_size

    try:
        w, h = parse_size(size)
    except ValueError as e:
        raise UserError(str(e)) from None
    return generate(out, SyntheticSpec(train=n_train, val=n_val, width=w, height=h, seed=seed))


def load(config_path: str | None, sets):
    """The validated config: a file, a packaged starter's name, or the default starter; with --set overrides."""
    from ..config import ConfigError, load_config

    try:
        return load_config(resolve_starter(config_path) if config_path else str(DEFAULT_CONFIG), list(sets))
    except ConfigError as e:
        raise UserError(str(e)) from None


def checked_policy(policy_file: str | None) -> str:
    """The guard's policy file, read once here so that a bad one is refused (exit 2) before training."""
    from ..compare.policy import PolicyError, load_policy

    try:
        load_policy(policy_file)
    except PolicyError as e:
        raise UserError(str(e)) from None
    return str(Path(policy_file).resolve()) if policy_file else ""


def resume_args(resume: str, cfg, explicit: set[str]) -> dict:
    """Resume from the checkpoint's own arguments; only what the user `--set` overrides them.

    A different batch is refused (the seed's lesson: optimizer state, LR scaling and BatchNorm
    statistics depend on it) although Ultralytics itself would allow it.
    """
    from ..ultralytics_args import checkpoint_batch

    path = Path(resume)
    if not path.is_file():
        raise UserError(f"--resume {resume}: no such checkpoint (expected PATH/weights/last.pt)")
    ckpt_batch = checkpoint_batch(path)
    wanted = cfg.train.get("batch")
    if "batch" in explicit and ckpt_batch is not None and int(wanted) != int(ckpt_batch):
        raise UserError(
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


def synthetic_data(cfg, args: dict, say) -> None:
    """The config's synthetic dataset, made on first use when its data file does not exist yet."""
    if not Path(str(args["data"])).exists() and cfg.synthetic is not None:
        from ..data.synthetic import generate

        say(f"[cyan]making synthetic data[/] at {cfg.synthetic.out} (config's synthetic section)")
        args["data"] = str(generate(cfg.synthetic.out, cfg.synthetic.spec()))


def training_args(cfg, sets, resume: str | None, say) -> dict:
    """What Ultralytics will train with: the config's arguments (synthetic data made on first use), or the
    checkpoint's on --resume; a model path that does not exist is refused before any run exists."""
    args = cfg.train_args()
    synthetic_data(cfg, args, say)
    if resume:
        return resume_args(resume, cfg, {s.split("=", 1)[0].strip() for s in sets})
    problem = model_problem(args.get("model"))
    if problem:
        raise UserError(problem)
    return args


def check_store(uri: str, experiment: str, artifact_location: str, say) -> None:
    """Before any work: a misconfigured store (URI, driver, host, login, permission) stops here with exit 2.

    An unreachable one is an outage: training goes on and the run is spooled. Also warns, once, when a
    database store would keep this experiment's artifacts on this machine's disk.
    """
    from ..tracking.store import StoreMissing, artifact_warning, config_error, make_client

    try:
        client = make_client(uri, create=False)  # a check: the store is made when the run opens
        exp = client.get_experiment_by_name(experiment)  # a read: nothing is created before training starts
        location = exp.artifact_location if exp is not None else (artifact_location or "./mlruns")
    except StoreMissing:
        return  # a new sqlite store: nothing to check, created with the run
    except StoreConfigError as e:
        raise UserError(f"{e}; nothing was trained") from None
    except ConnectionError:
        return  # an outage: the tracker spools and says so
    except Exception as e:
        refused = config_error(e, uri, f"experiment '{experiment}'")
        if refused is not None:
            raise UserError(f"{refused}; nothing was trained") from None
        return
    warning = artifact_warning(uri, location)
    if warning:
        say(f"[yellow]warning:[/] {warning}")


def settings(cfg, uri: str, exp: str, run_name: str | None, policy_file: str):
    """Tracking settings for this training (they reach DDP workers through the environment)."""
    from ..tracking.settings import TrackingSettings

    return TrackingSettings.from_config(
        cfg.tracking, tracking_uri=uri, experiment=exp, run_name=shown_run_name(run_name or cfg.run_name, cfg.train),
        stage=cfg.stage, guard_stop_on=",".join(cfg.guard.stop_on), policy_file=policy_file)


def shown_run_name(given: str | None, train_args: dict) -> str:
    """The run's name as MLflow, the logged model and summary.md show it: redacted. None given: Ultralytics'
    `name` (its run folder) names the run, as is, unless it holds a secret."""
    if given:
        return redact_text(given)
    name = str(train_args.get("name") or "")
    return redact_text(name) if redact_text(name) != name else ""


@dataclass
class TrainingPlan:
    """What will train, where it is tracked, and what preflight found on it."""

    cfg: object
    args: dict
    resume: str | None
    uri: str
    experiment: str
    policy_file: str
    findings: list
    context: object

    @property
    def errors(self) -> list:
        return [f for f in self.findings if f.level == "error"]


def plan(config_path: str | None, sets, resume: str | None, tracking_uri: str | None, experiment: str | None,
         policy_file: str | None, say) -> TrainingPlan:
    """Everything checked before a run exists: bad input raises a UserError, nothing started or created."""
    from ..tracking.store import resolve_experiment, resolve_tracking_uri

    cfg = load(config_path, sets)
    policy_file = checked_policy(policy_file)
    args = training_args(cfg, sets, resume, say)
    uri = resolve_tracking_uri(tracking_uri)
    exp = resolve_experiment(experiment, cfg.experiment)
    check_store(uri, exp, cfg.tracking.artifact_location, say)
    findings, ctx = for_training(args, resume, uri, exp, lambda line: say(line, markup=False))
    return TrainingPlan(cfg, args, resume, uri, exp, policy_file, findings, ctx)


@dataclass
class TrainingResult:
    """How training ended: `tracker` (None when it was not tracked); `stopped` the signal that stopped it, or
    "interrupted"; `failure` the error that failed it (redacted); `exit_code` 0, 1, 130 or 128 + signal."""

    tracker: object | None  # what says where the run is: its run_id and experiment_id
    stopped: str | None = None
    failure: str | None = None
    exit_code: int = 0


def _tracked(trainer):
    """The run this process can point at: its tracker's, or under DDP the launcher's (rank 0 tracks it)."""
    return trainer.sai_tracker or trainer.__dict__.get("sai_launched_run")


def run(plan: TrainingPlan, run_name: str | None) -> TrainingResult:
    """Build the tracked trainer (which opens the run), train, and say how it ended."""
    from ..preflight import findings_as_tags
    from ..tracking.settings import environment
    from ..trainer import Terminated, TrackedDetectionTrainer

    with environment(settings(plan.cfg, plan.uri, plan.experiment, run_name, plan.policy_file)):
        try:
            trainer = TrackedDetectionTrainer(overrides=plan.args)  # opens the run (on_pretrain_routine_start)
        except StoreConfigError as e:  # e.g. HTTP 403 on creating a run in this experiment
            raise UserError(f"{e}; nothing was trained") from None
        except (FileNotFoundError, ValueError, TypeError, SyntaxError) as e:
            raise UserError(f"Ultralytics refused the arguments: {e}") from None
        ctx = plan.context
        trainer.sai_audit = getattr(ctx, "audit", None)  # both read when the run opens, as training starts
        trainer.sai_preflight_tags = findings_as_tags(plan.findings)
        trainer.sai_memory_history = getattr(ctx, "history", None)  # comparable runs: the guard's memory fit
        try:
            trainer.train()
        except KeyboardInterrupt as e:
            signalled = isinstance(e, Terminated)
            return TrainingResult(_tracked(trainer), stopped=f"stopped by {e}" if signalled else "interrupted",
                                  exit_code=128 + e.signum if signalled else 130)
        except StoreConfigError as e:  # refused when the run was opened (DDP launcher), before the first batch
            raise UserError(f"{e}; nothing was trained") from None
        except Exception as e:
            return TrainingResult(_tracked(trainer), failure=redact_text(f"{type(e).__name__}: {e}"), exit_code=1)
    return TrainingResult(_tracked(trainer))  # opened when training started
