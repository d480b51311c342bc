"""A probe session: the parent run, one fresh process per probe, then compare-runs' decision over them.

Each probe is an MLflow run (`run_kind=probe`) created here with MLflow's parent tag pointing at
the session's run (`run_kind=probe_session`), then trained by `probe/child.py`, which attaches to it.
A probe that runs out of memory, is halved by Ultralytics, or peaks over the policy's limit is a
measured "over the limit" point (`sai.probe.outcome=over_limit`); one that fails otherwise is
recorded FAILED. Neither ends the session. The recommendation is `compare.decision.decide` over the
probe runs, under the same policy as compare-runs.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from .. import keys as K
from ..compare.decision import Decision, decide
from ..compare.memfit import MemoryFit
from ..redact import redact_text
from .plan import (
    DEFAULT_AUTO_START,
    DEFAULT_BATCHES,
    DEFAULT_MAX_PROBES,
    DEFAULT_VAL_BATCHES,
    Point,
    Step,
    forecast,
    forecast_batches,
    next_auto,
    subset_sizes,
)
from .stop import stop_group
from .subset import make_subset

OVER_LIMIT = "over_limit"
MEASURED = "measured"
FAILED = "failed"
KILLED = "killed"      # stopped by a signal: never a point of any fit, never judged
OOM_MARKERS = ("out of memory", "outofmemoryerror")


@dataclass
class ProbeSpec:
    """What a session needs: the resolved config and where to log."""

    config_path: str
    sets: list[str]
    args: dict                 # Ultralytics args of the config (data resolved)
    audit: object              # DatasetAudit of the full dataset (digest, counts, tmpfs)
    tracking_uri: str
    experiment: str
    stage: str
    policy: object
    policy_file: str | None = None
    memory_interval_s: float = 0.25
    batches_per_probe: int = DEFAULT_BATCHES
    val_batches: int = DEFAULT_VAL_BATCHES
    timeout_s: float = 3600.0
    cli_flags: list[str] = field(default_factory=list)  # --experiment/--tracking-uri, repeated in next_command
    plan_factor: int = 1       # probe --devices I: one device probed for N, the next command's batch is N x


@dataclass
class ProbeResult:
    batch: int
    run_id: str
    outcome: str
    batch_effective: int | None = None
    peak_gib: float | None = None
    train_peak_gib: float | None = None
    val_peak_gib: float | None = None
    predicted_gib: float | None = None
    error: str | None = None
    seconds: float = 0.0


COPY_DRAIN_S = 5.0  # after the probe exits, how long its last lines may take to reach the log


def copy_redacted(source, log: Path) -> None:
    """Line by line from the probe's pipe to its log, through the one redaction rule (a data path or URL in
    Ultralytics' output holding a password never reaches the disk). The log is this copier's own: a grandchild
    still holding the pipe after the wait cannot make it write to a closed file."""
    with log.open("w") as dest:
        for line in source:
            dest.write(redact_text(line))
            dest.flush()


@dataclass
class SessionResult:
    session_run_id: str
    probes: list[ProbeResult]
    decision: Decision
    fit: MemoryFit | None
    limit_gib: float | None
    forecast: list[dict]
    next_command: str | None
    stop_reason: str | None
    workdir: Path

    @property
    def exit_code(self) -> int:
        return self.decision.exit_code


def oversized(batches: Sequence[int], n_train: int) -> str | None:
    """Why a batch list cannot be probed on `n_train` training images, or None: a probe batch larger than
    the training set trains one partial batch, so its memory and images/s describe no batch (preflight's
    `batch_vs_dataset`, which is only a warning for a long run, refuses a probe)."""
    big = [b for b in batches if b > n_train]
    if not big or n_train <= 0:
        return None
    return (f"--batches: batch {big[0]} exceeds the {n_train} train images of the dataset (preflight's "
            f"batch_vs_dataset): a probe must train whole batches; probe batches of at most {n_train}, or more data")


def plausible_peak(peak: float | None) -> float | None:
    """A measured peak, or None when no real run could have recorded it (NaN, inf, 0 or negative, ±1.8e308):
    such a probe never enters a memory fit."""
    if peak is None or not math.isfinite(peak) or not 0 < peak < 1e300:
        return None
    return peak


def _limit(policy, total_gib: float | None) -> float | None:
    return policy.max_memory_fraction * total_gib if total_gib else None


def next_command(spec: ProbeSpec, batch: int) -> str:
    """The exact `train` command for the chosen batch, with the user's own overrides kept."""
    parts = ["sai-mlflow", "train", "--config", spec.config_path]
    for s in spec.sets:
        if s.split("=", 1)[0].strip() != "batch":
            parts += ["--set", s]
    parts += ["--set", f"batch={batch * spec.plan_factor}", *spec.cli_flags]
    if spec.policy_file:
        parts += ["--policy", spec.policy_file]
    return " ".join(shlex.quote(p) for p in parts)


class Session:
    def __init__(self, spec: ProbeSpec, client, say: Callable[[str], None]) -> None:
        self.spec = spec
        self.client = client
        self.say = say
        self.results: list[ProbeResult] = []
        self.total_gib: float | None = None
        from ..tracking.store import get_or_create_experiment

        self.exp_id = get_or_create_experiment(client, spec.experiment)
        a = spec.args
        from ..ultralytics_args import train_imgsz

        self.parent_tags = {K.TAG_RUN_KIND: K.RUN_KIND_PROBE_SESSION, K.TAG_STAGE: spec.stage,
                            K.TAG_MODEL: Path(str(a.get("model"))).name,
                            K.TAG_IMGSZ: str(train_imgsz(a.get("imgsz", 640))),
                            K.TAG_DATASET_DIGEST: getattr(spec.audit, "digest", "") or ""}
        run_name = f"probe-session-{time.strftime('%Y%m%d-%H%M%S')}"
        self.run_id = client.create_run(self.exp_id, run_name=run_name, tags=self.parent_tags).info.run_id
        try:
            self.sink = self._spool_run(self.run_id, run_name)  # a SIGKILL leaves it to `sync` (KILLED)
            base = Path(str(a.get("project") or "runs")).expanduser().resolve()
            self.workdir = base / f"probe-{self.run_id[:8]}"
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.audit_file = self.workdir / "audit.pkl"
            self.audit_file.write_bytes(pickle.dumps(spec.audit))
        except BaseException:  # no session without its workdir: the run it opened is not left RUNNING
            sink = self.__dict__.get("sink")
            try:
                if sink is not None:
                    sink.terminate("FAILED")
                else:
                    client.set_terminated(self.run_id, "FAILED")
            except Exception:
                pass  # the spool (if any) still closes it at `sync`; the first error is the one to say
            raise

    _current: str | None = None  # the probe run in progress
    deferred = nullcontext  # the CLI's SignalStop.deferred: a signal waits until a step is whole (probe/stop.py)

    # --- runs through the spool ------------------------------------------------------------------
    def _meta(self, run_name: str) -> dict:
        return {"tracking_uri": self.spec.tracking_uri, "experiment": self.spec.experiment, "run_name": run_name}

    def _spool_run(self, run_id: str, run_name: str):
        from ..log import warn
        from ..tracking.spool import SpoolingSink

        return SpoolingSink(self.client, run_id, report=warn, meta=self._meta(run_name))

    def _reserve_spool(self, run_id: str, run_name: str) -> None:
        """The probe run's spool, before its process exists (the probe's tracker writes into it): a probe
        killed before its tracker starts still leaves `sync` a spool that closes its run KILLED."""
        from ..tracking.spool import Spool, spool_root

        spool = Spool(spool_root() / run_id)
        spool.dir.mkdir(parents=True, exist_ok=True)
        spool.write_meta({"run_id": run_id, "created_ms": int(time.time() * 1000), **self._meta(run_name)})
        spool.log.touch()

    def _settle_spool(self, run_id: str) -> None:
        """After a probe process ended: upload what its spool still holds (sync's rules: no terminal status
        recorded means KILLED); an empty reserved spool is removed."""
        from ..tracking.spool import Spool, spool_root, sync_spool

        spool = Spool(spool_root() / run_id)
        if not spool.dir.is_dir():
            return  # the probe closed its run and its spool was drained
        if spool.size() == 0 and not (spool.dir / "lock").exists():
            shutil.rmtree(spool.dir, ignore_errors=True)
            return
        res = sync_spool(spool, self.spec.tracking_uri)
        if res.state == "failed":
            self.say(f"  probe run {run_id}: its spool was not uploaded ({res.message}); `sai-mlflow sync` does it")

    def _close_killed(self, run_id: str) -> None:
        """A probe stopped by a signal: its spool settled, its run KILLED, outcome `killed` (never a point)."""
        try:
            self._settle_spool(run_id)
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, "KILLED")
            self.client.set_tag(run_id, K.TAG_PROBE_OUTCOME, KILLED)
        except Exception as e:  # the store is down: the spools keep it for `sai-mlflow sync`
            self.say(f"  probe run {run_id} not closed ({type(e).__name__}: {str(e)[:200]}); run `sai-mlflow sync`")

    def clean_slices(self) -> None:
        """The probes' data slices (symlinks) go with the session; reports and logs stay."""
        for d in self.workdir.glob("b*/data"):
            shutil.rmtree(d, ignore_errors=True)

    def stop(self, status: str = "KILLED") -> None:
        """The session ends without a result (a signal, or an error): the running probe's group was stopped
        by _launch; its run is closed KILLED, the session run `status`, both through their spools; the
        slices are removed."""
        if self._current is not None:
            self._close_killed(self._current)
            self._current = None
        self.clean_slices()
        self.sink.terminate(status)

    # --- one probe ----------------------------------------------------------------------------
    def run_probe(self, batch: int, predicted: float | None) -> ProbeResult:
        s, a = self.spec, self.spec.args
        n_train_full, n_val_full = s.audit.train_images, s.audit.val_images
        why = oversized([batch], n_train_full)
        if why:
            raise ValueError(why)  # the command refuses it before any run (exit 2); never a probe
        n_train, n_val = subset_sizes(batch, n_train_full, n_val_full, s.batches_per_probe, s.val_batches)
        pdir = self.workdir / f"b{batch}"
        data = make_subset(a["data"], pdir / "data", n_train, n_val)
        tags = {K.TAG_RUN_KIND: K.RUN_KIND_PROBE, K.TAG_PARENT_RUN_ID: self.run_id, K.TAG_STAGE: s.stage}
        if predicted is not None:
            tags[K.TAG_PROBE_PREDICTED_PEAK] = f"{predicted:.3f}"
        with self.deferred():  # the run and its spool together
            run_id = self.client.create_run(self.exp_id, run_name=f"probe-b{batch}", tags=tags).info.run_id
            self._reserve_spool(run_id, f"probe-b{batch}")
            self._current = run_id  # closed KILLED by stop() until its outcome is set
        args = {**a, "batch": batch, "epochs": 1, "data": str(data), "project": str(pdir), "name": "train",
                "exist_ok": True, "val": True, "plots": False, "resume": False}
        settings = {"tracking_uri": s.tracking_uri, "experiment": s.experiment, "run_id": run_id,
                    "run_name": f"probe-b{batch}", "stage": s.stage, "memory_interval_s": s.memory_interval_s,
                    "publish_interval_s": 2.0, "final_flush_timeout_s": 30.0, "log_model": False,
                    "run_kind": K.RUN_KIND_PROBE, "policy_file": s.policy_file or ""}
        child = {"args": args, "settings": settings, "audit": str(self.audit_file), "result": str(pdir / "result.json"),
                 "parent_pid": os.getpid(),
                 "full": {"epochs": int(a.get("epochs") or 100), "n_train": n_train_full, "n_val": n_val_full,
                          "val_images_probe": n_val}}
        spec_file = pdir / "spec.json"
        spec_file.write_text(json.dumps(child, default=str))
        self.say(f"probe batch {batch}: {n_train} train images ({-(-n_train // batch)} batches), "
                 f"{n_val} val images at batch {2 * batch}" + (f"; forecast {predicted:.2f} GiB" if predicted else ""))
        t0 = time.monotonic()
        log = pdir / "probe.log"
        rc = self._launch(spec_file, log)
        self._settle_spool(run_id)
        res = ProbeResult(batch=batch, run_id=run_id, outcome=MEASURED, predicted_gib=predicted,
                          seconds=time.monotonic() - t0)
        got = json.loads((pdir / "result.json").read_text()) if (pdir / "result.json").is_file() else {}
        text = log.read_text(errors="replace")[-20000:].lower() if log.is_file() else ""
        res.error = got.get("error") or (None if rc == 0 else f"the probe process ended with code {rc}")
        res.batch_effective = got.get("batch_effective")
        self._read_back(res)
        frac = self.spec.policy.max_memory_fraction
        if res.error:
            oom = any(m in (res.error or "").lower() or m in text for m in OOM_MARKERS) or rc in (-9, 137)
            res.outcome = OVER_LIMIT if oom else FAILED
            run = self.client.get_run(run_id)
            if run.info.status == "RUNNING":
                self.client.set_terminated(run_id, "FAILED")
        elif res.batch_effective and res.batch_effective < batch:
            res.outcome = OVER_LIMIT  # Ultralytics ran out of memory and silently retried at a halved batch
        elif res.peak_gib is not None and self.total_gib and res.peak_gib > frac * self.total_gib:
            res.outcome = OVER_LIMIT
        self.client.set_tag(run_id, K.TAG_PROBE_OUTCOME, res.outcome)
        self.say(f"  -> {res.outcome}: peak {_g(res.peak_gib)} GiB (train {_g(res.train_peak_gib)}, "
                 f"validation {_g(res.val_peak_gib)}) in {res.seconds:.0f} s"
                 + (f"; {res.error[:300]} (log: {log})" if res.error else ""))
        self.results.append(res)
        self._current = None
        return res

    def _launch(self, spec_file: Path, log: Path) -> int:
        """The probe process, in its own process group; its exit code (-1: timed out). Its output (Ultralytics'
        lines, DDP workers' too) reaches the log through the redaction rule. Stopped by a signal, its whole group
        is stopped (probe/stop.py) before the exception goes on to the session."""
        proc = copier = None
        try:
            with self.deferred():
                proc = subprocess.Popen([sys.executable, "-m", "sai_mlflow.probe.child", str(spec_file)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                        text=True, errors="replace")
                copier = threading.Thread(target=copy_redacted, args=(proc.stdout, log), daemon=True)
                copier.start()
            return proc.wait(timeout=self.spec.timeout_s)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            return -1
        except BaseException:
            if proc is not None:
                stop_group(proc)
            raise
        finally:
            if copier is not None:
                copier.join(timeout=COPY_DRAIN_S)  # a lingering grandchild holding the pipe is not waited for

    def _read_back(self, res: ProbeResult) -> None:
        m = self.client.get_run(res.run_id).data.metrics
        res.peak_gib = m.get(K.SUMMARY_PEAK_GIB)
        res.train_peak_gib = m.get(K.EPOCH_TRAIN_PEAK_GIB)
        res.val_peak_gib = m.get(K.EPOCH_VAL_PEAK_GIB)
        if m.get(K.SUMMARY_TOTAL_GIB):
            self.total_gib = m[K.SUMMARY_TOTAL_GIB]

    def points(self) -> list[Point]:
        """What the fit sees: a crashed probe or an implausible peak gives no point (None)."""
        return [Point(r.batch, r.batch_effective, None if r.error else plausible_peak(r.peak_gib),
                      r.outcome == OVER_LIMIT) for r in self.results]

    # --- the whole session ----------------------------------------------------------------------
    def run(self, batches: Sequence[int] | None, auto_start: int = DEFAULT_AUTO_START,
            max_probes: int = DEFAULT_MAX_PROBES) -> SessionResult:
        stop_reason = None
        if batches:
            for b in batches:
                pts = self.points()
                fit = forecast(pts) if pts else None
                self.run_probe(b, fit.predict(b) if fit else None)
        else:
            max_batch = self.spec.audit.train_images or None
            while True:
                step: Step = next_auto(self.points(), _limit(self.spec.policy, self.total_gib), auto_start,
                                       max_batch, max_probes)
                if step.batch is None:
                    stop_reason = step.why
                    self.say(f"--auto stops: {step.why}")
                    break
                self.run_probe(step.batch, step.predicted_gib)
        return self.finish(stop_reason)

    def finish(self, stop_reason: str | None) -> SessionResult:
        from ..compare.loader import load_records

        s = self.spec
        records = load_records(self.client, [r.run_id for r in self.results], policy=s.policy, progress=False)
        decision = decide(records, s.policy)
        fit = decision.fit or forecast(self.points())
        limit = decision.limit_gib or _limit(s.policy, self.total_gib)
        probed = [r.batch for r in self.results]
        extra = [s.args.get("batch"), decision.suggested_batch]
        fc = [{"batch_size": b, "predicted_peak_gib": round(fit.predict(b), 2)}
              for b in forecast_batches(probed, extra)] if fit else []
        rec = decision.recommended
        cmd = next_command(s, rec.record.batch_size_effective or rec.record.batch_size) if rec else None
        return SessionResult(self.run_id, self.results, decision, fit, limit, fc, cmd, stop_reason, self.workdir)

    def close(self, result: SessionResult, json_obj: dict, markdown: str, plot_file: Path | None) -> None:
        """The result onto the parent run: tags, the markdown report, the JSON and the plot."""
        rec = result.decision.recommended
        first = next((self.client.get_run(r.run_id) for r in self.results), None)
        tags = {K.TAG_PROBE_BATCHES: ",".join(str(r.batch) for r in self.results),
                K.TAG_PROBE_RECOMMENDED: str(rec.record.batch_size_effective) if rec else "none",
                K.TAG_PROBE_SUGGESTED: str(result.decision.suggested_batch or "none"),
                K.TAG_PROBE_NEXT_COMMAND: result.next_command or "none"}
        if first is not None and first.data.tags.get(K.TAG_GPU):
            tags[K.TAG_GPU] = first.data.tags[K.TAG_GPU]
        if result.stop_reason:
            tags[K.TAG_PROBE_STOP_REASON] = result.stop_reason[:5000]
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)
        report = self.workdir / "probe_report.md"
        report.write_text(markdown)
        data = self.workdir / "probe.json"
        data.write_text(json.dumps(json_obj, indent=2, ensure_ascii=False))
        for f in (report, data, plot_file):
            if f is not None and Path(f).is_file():
                self.client.log_artifact(self.run_id, str(f))
        self.clean_slices()
        self.sink.terminate("FINISHED")


def _g(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"
