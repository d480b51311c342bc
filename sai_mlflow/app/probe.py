"""The `probe` flow: short real trainings at a few batch sizes in one session (`probe/`), the recommendation.

`prepare` checks everything a probe needs before preflight; `blocking` says which findings stop it; `run`
checks the dataset's size against the batches, opens the session and runs it to its result, or to the signal
that stopped it (every probe started is stopped, the session closed KILLED).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from .starters import DEFAULT_CONFIG
from .train import checked_policy, load, synthetic_data


@dataclass
class ProbeRequest:
    """The probe command's inputs, as given."""

    config_path: str | None
    sets: tuple
    batches: str | None
    auto: bool
    auto_start: int | None
    max_probes: int | None
    probe_batches: int | None
    val_batches: int | None
    policy_file: str | None
    max_memory_fraction: float | None
    tracking_uri: str | None
    experiment: str | None
    devices_flag: str | None


@dataclass
class ProbePlan:
    request: ProbeRequest
    config_path: str
    cfg: object
    policy: object
    policy_file: str
    planned: list | None
    args: dict
    devices: object
    uri: str
    experiment: str

    @property
    def first_batch(self) -> int:
        from ..probe.plan import DEFAULT_AUTO_START

        return min(self.planned) if self.planned else (self.request.auto_start or DEFAULT_AUTO_START)


def prepare(req: ProbeRequest, say) -> ProbePlan:
    """Flags, config, policy and the device plan checked (bad input: UserError, no probe started)."""
    from ..compare.policy import PolicyError, load_policy
    from ..probe.plan import PlanError, parse_batches, plan_devices
    from ..tracking.store import resolve_experiment, resolve_tracking_uri

    if bool(req.batches) == bool(req.auto):
        raise UserError("give --batches B1,B2,… or --auto (one of them)")
    if not req.auto and (req.auto_start is not None or req.max_probes is not None):
        raise UserError("--start and --max-probes go with --auto")
    for name, v in (("--start", req.auto_start), ("--max-probes", req.max_probes),
                    ("--probe-batches", req.probe_batches), ("--val-batches", req.val_batches)):
        if v is not None and v < 1:
            raise UserError(f"{name} {v}: must be at least 1")
    try:
        planned = parse_batches(req.batches) if req.batches else None
    except PlanError as e:
        raise UserError(str(e)) from None
    config_path = req.config_path or str(DEFAULT_CONFIG)
    cfg = load(config_path, req.sets)
    policy_file = checked_policy(req.policy_file)
    try:
        policy = load_policy(policy_file or None, {"max_memory_fraction": req.max_memory_fraction})
    except PolicyError as e:
        raise UserError(str(e)) from None

    args = cfg.train_args()
    try:
        devices = plan_devices(args.get("device"), req.devices_flag)
    except PlanError as e:
        raise UserError(str(e)) from None
    if devices.probe_device is not None:
        args["device"] = devices.probe_device
    if devices.note:
        say(devices.note, highlight=False, markup=False)
    synthetic_data(cfg, args, say)
    uri = resolve_tracking_uri(req.tracking_uri)
    exp = resolve_experiment(req.experiment, cfg.experiment)
    return ProbePlan(req, config_path, cfg, policy, policy_file, planned, args, devices, uri, exp)


def blocking(findings) -> list:
    """The findings that stop a probe: the errors, but a memory forecast over the limit, which the probes measure."""
    return [f for f in findings if f.level == "error" and f.code != "memory_forecast"]


@dataclass
class ProbeOutcome:
    """The session's result (None when a signal stopped it), its report as JSON, and the exit code."""

    result: object | None
    report: dict | None
    stopped_by: str | None
    exit_code: int


def run(plan: ProbePlan, ctx, say) -> ProbeOutcome:
    """The probe session, from the dataset checks to the closed session with its report."""
    from ..probe import report
    from ..probe.plan import DEFAULT_AUTO_START, DEFAULT_BATCHES, DEFAULT_MAX_PROBES, DEFAULT_VAL_BATCHES
    from ..probe.session import ProbeSpec, Session, oversized
    from ..probe.stop import SignalStop, Stopped
    from ..tracking.store import make_client

    req, args = plan.request, plan.args
    if ctx.audit is None:
        raise UserError(f"train.data {args['data']}: the dataset could not be read; no probe was started")
    too_big = oversized(plan.planned or [], ctx.audit.train_images)
    if too_big:
        raise UserError(f"{too_big}; no probe was started")
    try:
        client = make_client(plan.uri)
    except ConnectionError as e:
        raise UserError(str(e)) from None

    flags = ((["--tracking-uri", req.tracking_uri] if req.tracking_uri else [])
             + (["--experiment", req.experiment] if req.experiment else []))
    spec = ProbeSpec(config_path=plan.config_path, sets=list(req.sets), args=args, audit=ctx.audit,
                     tracking_uri=plan.uri, experiment=plan.experiment, stage=plan.cfg.stage, policy=plan.policy,
                     policy_file=plan.policy_file or None,
                     memory_interval_s=min(plan.cfg.tracking.memory_interval_s, 0.25),
                     batches_per_probe=req.probe_batches or DEFAULT_BATCHES,
                     val_batches=req.val_batches or DEFAULT_VAL_BATCHES, cli_flags=flags,
                     plan_factor=plan.devices.per_probe)
    session = None
    with SignalStop().installed() as signals:
        try:
            with signals.deferred():  # the session run and its spool together
                session = Session(spec, client, say=lambda s: say(s, highlight=False, markup=False))
                session.deferred = signals.deferred
            say(f"probe session {session.run_id} in experiment '{plan.experiment}' (work folder {session.workdir})",
                highlight=False)
            result = session.run(plan.planned, req.auto_start or DEFAULT_AUTO_START,
                                 req.max_probes or DEFAULT_MAX_PROBES)
            plot_file = session.workdir / "probe_plot.png"
            try:
                report.plot(result, str(plot_file))
            except Exception as e:
                say(f"plot not written ({type(e).__name__}: {e})")
                plot_file = None
            obj = report.to_json_obj(result)
            session.close(result, obj, report.to_markdown(result), plot_file)
        except Stopped as e:  # SIGTERM, SIGINT (Ctrl-C), SIGHUP: everything the session started is stopped
            if session is not None:
                session.stop("KILLED")
            return ProbeOutcome(None, None, str(e), e.exit_code)
        except BaseException:
            if session is not None:
                session.stop("FAILED")
            raise
    return ProbeOutcome(result, obj, None, result.exit_code)
