"""The preflight flows: `preflight` (checks on a config or on flags), the checks `train` and `probe` run on what
will really train, and `stage-shm` (a dataset copied into a tmpfs)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..redact import redact_text

# Direct flags: the common arguments without writing a config (they override the config's values).
FLAG_KEYS = ("data", "batch", "imgsz", "cache", "workers", "device", "model", "resume")


def parse_value(text: str):
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


def args_from(config_path, sets, flags: dict) -> tuple[dict, str | None]:
    """(Ultralytics args, config's experiment) from a config + --set, or from --set/flags alone."""
    flag_items = {k: v for k, v in flags.items() if v is not None}
    if config_path:
        try:
            from ..config import ConfigError, load_config
        except ImportError:  # pragma: no cover - the loader ships with the package
            raise UserError("the config loader is not available in this install; pass --data/--batch/... instead")
        overrides = list(sets) + [f"{k}={v}" for k, v in flag_items.items() if k != "imgsz"]
        try:
            from .starters import resolve

            cfg = load_config(resolve(config_path), overrides, check_data=False)
        except ConfigError as e:
            raise UserError(str(e)) from None
        args = dict(cfg.train_args())
        if "imgsz" in flag_items:
            args["imgsz"] = parse_value(flag_items["imgsz"])
        return args, getattr(cfg, "experiment", None)
    from ..config import ConfigError, check_given, split_override

    args: dict = {}
    for item in sets:
        try:
            k, v = split_override(item)
            check_given(k, v)
        except ConfigError as e:
            raise UserError(str(e)) from None
        args[k] = parse_value(v)
    for k, v in flag_items.items():
        args[k] = v if k in ("data", "model", "device") else parse_value(v)
    if not args:
        raise UserError("nothing to check: pass --config FILE, or at least --data DATA_YAML")
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


def policy_limit(policy_file: str | None) -> float:
    """The one memory limit: the policy's, as compare-runs and the registry read it."""
    from ..compare.policy import PolicyError, load_policy

    try:
        return load_policy(policy_file).max_memory_fraction
    except PolicyError as e:
        raise UserError(str(e)) from None


def _history_note(e: Exception) -> str:
    return redact_text(f"preflight: earlier runs not read ({type(e).__name__}: {e}); memory_forecast skipped")


def check(config_path, sets, flags: dict, *, stage_to, max_memory_fraction, policy_file, check_images: bool,
          tracking_uri, experiment, say) -> list:
    """`sai-mlflow preflight`: the findings for a config (+ --set, flags) or for flags alone."""
    from ..preflight import PreflightContext, run_checks
    from ..tracking.store import resolve_tracking_uri

    args, config_experiment = args_from(config_path, sets, flags)
    ctx = PreflightContext(args=args, stage_dest=stage_to, check_images=check_images,
                           max_memory_fraction=max_memory_fraction or policy_limit(policy_file),
                           tracking_uri=resolve_tracking_uri(tracking_uri))
    try:
        ctx.history = forecast_history(args, tracking_uri, experiment, config_experiment)
    except Exception as e:  # an unreachable store must not stop the other checks
        say(_history_note(e))
    return run_checks(ctx)


def for_training(args: dict, resume: str | None, tracking_uri: str, experiment: str, say):
    """(findings, context): the same checks as `sai-mlflow preflight`, on what will really train (the checkpoint's
    args on resume). `say` gets one line when earlier runs cannot be read."""
    from ..preflight import PreflightContext, run_checks
    from ..ultralytics_args import checkpoint_args

    checked = {**checkpoint_args(resume), **args} if resume else dict(args)
    ctx = PreflightContext(args=checked, tracking_uri=tracking_uri)
    try:
        ctx.history = forecast_history(checked, tracking_uri, experiment, None)
    except Exception as e:  # an unreachable store must not stop the other checks
        say(_history_note(e))
    return run_checks(ctx), ctx


def stage_dataset(data_yaml: str, dest: str, *, dry_run: bool, progress: bool):
    """`sai-mlflow stage-shm`: the staging result; data.staging.StagingError when it cannot go ahead or complete."""
    from ..data.staging import stage

    if not Path(data_yaml).is_file():
        raise UserError(f"--data {data_yaml}: no such file; pass the dataset's data.yaml")
    return stage(data_yaml, dest, dry_run=dry_run, progress=progress)
