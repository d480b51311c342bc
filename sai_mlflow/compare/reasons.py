"""The registry of reasons: per code, its check, severity, fix, plain-words phrase, and whether the guard
may stop training on it. compare-runs' decision, the live guard, the renderer and config validation
(`guard.stop_on`) all read it; a new reason is one entry here (docs/compare-runs.md lists the codes).

A check looks at one record alone and returns its findings; the two reasons judged over the compared group
(`too_slow`, `not_comparable`) have no per-run check and are found by `decision.decide`. When a check
cannot be judged it returns its code with severity `info` and a message starting "not judged:" (never a
guess, never a verdict change).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import keys as K
from ..errors import closest
from ..telemetry.steady_memory import SteadyMemory, steady_indices, steady_memory
from .memfit import MemoryFit, memory_advice
from .record import RunRecord, peak_fraction, plausibility
from .text import HUGE, epochs_text, pct

# severities: the contract's three, plus `info` (could not be judged / a note; never changes a verdict)
REJECT = "reject"
WARN = "warn"
EXCLUDE = "exclude"
INFO = "info"
SEVERITIES = (REJECT, WARN, EXCLUDE, INFO)

# reason codes (contract)
MEMORY_OVER_LIMIT = "memory_over_limit"
MAP_DEGRADATION = "map_degradation"
DOUBLE_CACHE = "double_cache"
MEMORY_LEAK = "memory_leak"
INCOMPLETE = "incomplete"
IMPLAUSIBLE = "implausible"
DATA_BOUND = "data_bound"
BATCH_CHANGED = "batch_changed"
TOO_SLOW = "too_slow"
NOT_COMPARABLE_CODE = "not_comparable"

ENDED_BADLY = ("FAILED", "KILLED")
MIN_LEAK_SAMPLES = 10


@dataclass(frozen=True)
class Reason:
    """One finding on one run."""

    code: str
    severity: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


@dataclass(frozen=True)
class FixContext:
    """What the guard knows beyond the record when it writes a fix."""

    val_peak_is_max: bool = False       # the peak came from validation (2x batch)
    memory_fit: MemoryFit | None = None  # comparable runs' fit of peak per device against batch per device


@dataclass(frozen=True)
class ReasonSpec:
    code: str
    severity: str                      # the most severe it can be (besides `info`)
    when: str                          # when it fires, in one line
    check: Callable[[RunRecord, Any], Reason | list[Reason] | None] | None  # None: judged over the group
    fix: Callable[[Reason, RunRecord, Any, FixContext], str] | None = None  # "; what to do" (the guard)
    phrase: Callable[[Reason, RunRecord, dict], str] | None = None  # plain words after "batch 128 …"
    stoppable: bool = False            # the guard may stop on it (guard.stop_on)
    live: bool = True                  # the guard reports it during training


def _known(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _batch_text(r: RunRecord) -> str:
    return f"{r.batch_size:g}" if isinstance(r.batch_size, float) else str(r.batch_size)


# --- implausible -----------------------------------------------------------------------------------

def check_implausible(r: RunRecord, policy=None) -> Reason | None:
    """Figures no real run records (unparseable tags, NaN/inf, negative or backward times): never ranked."""
    problems = [f"{k}={v!r} is not a usable value" for k, v in r.unreadable.items()]
    if r.cache_mode is not None and r.cache_mode not in K.CACHE_MODES:
        problems.append(f"cache_mode={r.cache_mode!r} is not one of {'/'.join(K.CACHE_MODES)}")
    for name, ok in plausibility(r).items():
        x = getattr(r, name)
        if x is None or isinstance(x, bool):
            continue
        if not (isinstance(x, (int, float)) and math.isfinite(x)) or abs(x) >= HUGE:
            problems.append(f"{name} is infinite")
        elif not ok(x):
            problems.append(f"{name}={x:.6g} is impossible")
    if not problems:
        return None
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return Reason(IMPLAUSIBLE, REJECT, "not judged: " + "; ".join(problems[:3]) + more + "; fix or re-log the run")


# --- incomplete ------------------------------------------------------------------------------------

def check_incomplete(r: RunRecord, policy=None) -> list[Reason]:
    out = []
    if r.status in ENDED_BADLY:
        out.append(Reason(INCOMPLETE, REJECT, f"run ended {r.status}"))
    if not _known(r.eta_full_s) and not _known(r.images_per_s):
        why = ("still RUNNING and has no speed summary yet" if r.status in ("RUNNING", "SCHEDULED")
               else "lacks summary/eta_full_s and summary/images_per_s")
        out.append(Reason(INCOMPLETE, REJECT, f"{why}: its speed cannot be ranked"))
    elif r.status in ("RUNNING", "SCHEDULED"):
        done = f"{r.epochs_completed:.0f}" if _known(r.epochs_completed) else "?"
        planned = f" of {r.epochs_planned:.0f}" if _known(r.epochs_planned) else ""
        out.append(Reason(INCOMPLETE, INFO, f"still RUNNING: judged on {done}{planned} epochs so far"))
    return out


# --- memory_over_limit -----------------------------------------------------------------------------

def check_memory_over_limit(r: RunRecord, policy) -> Reason | None:
    """On the largest device: the memory figures are the largest device's, the total one device's."""
    frac = r.peak_fraction
    if not _known(frac) and _known(r.peak_gib) and _known(r.total_gib) and r.total_gib > 0:
        frac = r.peak_gib / r.total_gib
    if not _known(frac):
        missing = "no peak memory recorded" if not _known(r.peak_gib) else "device total memory unknown"
        return Reason(MEMORY_OVER_LIMIT, INFO, f"not judged: {missing}")
    if frac > policy.max_memory_fraction:
        of = f" of {r.total_gib:.0f} GiB" if _known(r.total_gib) else ""
        peak = f"{r.peak_gib:.1f} GiB, " if _known(r.peak_gib) else ""
        where = f" on the largest of its {r.device_count} devices" if r.device_count > 1 else ""
        return Reason(MEMORY_OVER_LIMIT, REJECT,
                      f"peaks at {peak}{pct(frac)}{of}{where} (limit {pct(policy.max_memory_fraction, 0)})")
    return None


def _fix_memory(reason: Reason, r: RunRecord, policy, ctx: FixContext) -> str:
    where = " (in validation, which runs at 2x batch)" if ctx.val_peak_is_max else ""
    limit = policy.max_memory_fraction * r.total_gib if _known(r.total_gib) else None
    return f"{where}; {memory_advice(r.batch_per_device, r.device_count, limit, ctx.memory_fit)}"


def _phrase_memory(reason: Reason, r: RunRecord, policy: dict) -> str:
    frac = peak_fraction(r)
    if frac is None or not r.total_gib:
        return f"{reason.code}: {reason.message}"
    where = f" on the largest of its {r.device_count} devices" if r.device_count > 1 else ""
    return f"peaks at {pct(frac)} of {r.total_gib:.0f} GiB{where}"


# --- map_degradation -------------------------------------------------------------------------------

def map_drop(series: dict[int, float], early: Sequence[int], late: Sequence[int]):
    """(early mean, late mean, late epochs used) or None when either window has no value."""
    e = [series[k] for k in range(early[0], early[1] + 1) if k in series and _known(series[k])]
    late_eps = [k for k in range(late[0], late[1] + 1) if k in series and _known(series[k])]
    if not e or not late_eps:
        return None
    return sum(e) / len(e), sum(series[k] for k in late_eps) / len(late_eps), late_eps


def check_map_degradation(r: RunRecord, policy) -> Reason | None:
    early, late = policy.map_early_epochs, policy.map_late_epochs
    if r.map50 is None:
        if r.map50_last_epoch is None:
            return Reason(MAP_DEGRADATION, INFO, "not judged: no val/mAP50 recorded yet")
        return Reason(MAP_DEGRADATION, INFO,
                      f"not judged: val/mAP50 only up to epoch {r.map50_last_epoch} "
                      f"(the later window is {epochs_text(late)})")
    got = map_drop(r.map50, early, late)
    if got is None:
        return Reason(MAP_DEGRADATION, INFO,
                      f"not judged: val/mAP50 lacks {epochs_text(early)} or any of {epochs_text(late)}")
    e_mean, l_mean, used = got
    drop = e_mean - l_mean
    if drop > policy.max_map_drop:
        partial = "" if len(used) == late[1] - late[0] + 1 else f" (only {epochs_text((used[0], used[-1]))} reached)"
        return Reason(MAP_DEGRADATION, REJECT,
                      f"mAP50 fell {drop * 100:.1f} points: {pct(e_mean)} at {epochs_text(early)} → "
                      f"{pct(l_mean)} mean over {epochs_text(late)}{partial} (limit {policy.max_map_drop * 100:.1f})")
    return None


def _phrase_map(reason: Reason, r: RunRecord, policy: dict) -> str:
    if not r.map50:
        return f"{reason.code}: {reason.message}"
    got = map_drop(r.map50, policy["map_early_epochs"], policy["map_late_epochs"])
    a = policy["map_early_epochs"]
    after = f"epoch {a[0]}" if a[0] == a[1] else f"epochs {a[0]}–{a[1]}"
    return f"its mAP@0.5 fell {(got[0] - got[1]) * 100:.1f} points after {after}" if got else reason.message


# --- double_cache ----------------------------------------------------------------------------------

def check_double_cache(r: RunRecord, policy=None) -> Reason | None:
    cached = r.cache_mode in ("ram", "disk")
    if cached and r.data_on_tmpfs is True:
        return Reason(DOUBLE_CACHE, REJECT,
                      f"cache={r.cache_mode} while the images already live on a tmpfs: they are cached twice")
    if r.cache_mode is None and r.data_on_tmpfs is not False:
        return Reason(DOUBLE_CACHE, INFO, "not judged: cache_mode not recorded")
    if cached and r.data_on_tmpfs is None:
        return Reason(DOUBLE_CACHE, INFO, f"not judged: cache={r.cache_mode} but unknown whether data is on a tmpfs")
    return None


# --- memory_leak -----------------------------------------------------------------------------------

def memory_judgeable_before_fetch(r: RunRecord) -> str | None:
    """None when the steady-state memory series is worth judging, else why it cannot be judged.

    Only the sample count is known before the fetch: the time the samples cover is read from the
    series itself afterwards (or from a summary that covers it), never from the run's start time (tools
    that import runs keep the original timestamps, which may precede the run's own start)."""
    if not r.memory_samples:
        return "no memory/used_gib samples recorded"
    if r.memory_samples < 2 * MIN_LEAK_SAMPLES:
        return f"only {r.memory_samples} memory samples (needs {2 * MIN_LEAK_SAMPLES})"
    return None


def summary_covers_memory(r: RunRecord) -> bool:
    """The run's `summary/memory_*` figures describe the very series the store holds (same sample count): a
    killed run's samples after its last epoch end, or a resumed run's earlier sessions, make it not so, and
    then the steady half is read from the series."""
    return r.memory_summary_samples is not None and r.memory_samples is not None \
        and int(r.memory_summary_samples) == r.memory_samples


def _steady(r: RunRecord) -> SteadyMemory | None:
    """The steady half's figures: from the summary when it covers the series, else from the fetched points."""
    if summary_covers_memory(r):
        judged = len(steady_indices(r.memory_samples))
        return SteadyMemory(r.memory_samples, judged, r.memory_steady_span_s or 0.0, r.memory_growth_gib_per_h)
    return steady_memory(r.memory_steady, r.memory_samples) if r.memory_steady is not None else None


def check_memory_leak(r: RunRecord, policy) -> Reason | None:
    why = memory_judgeable_before_fetch(r)
    steady = _steady(r) if why is None else None
    if why is None and steady is None:
        why = "steady-state memory series not loaded"
    if steady is not None:
        span, slope = steady.span_s, steady.growth_gib_per_h
        if steady.samples < MIN_LEAK_SAMPLES:
            why = f"only {steady.samples} steady-state memory samples"
        elif span < policy.min_leak_window_s and span > 0:
            why = f"steady-state memory covers {span / 60:.1f} min (needs {policy.min_leak_window_s / 60:.0f} min)"
        elif span <= 0 or slope is None:
            why = "steady-state memory samples share one timestamp"
        elif slope > policy.max_leak_gib_per_hour:
            return Reason(MEMORY_LEAK, REJECT,
                          f"steady-state memory grows {slope:.2f} GiB/h over {span / 3600:.1f} h "
                          f"(limit {policy.max_leak_gib_per_hour:g} GiB/h)")
        else:
            return None
    return Reason(MEMORY_LEAK, INFO, f"not judged: {why}")


# --- data_bound ------------------------------------------------------------------------------------

def check_data_bound(r: RunRecord, policy) -> Reason | None:
    if not _known(r.data_wait_fraction):
        return Reason(DATA_BOUND, INFO, "not judged: no per-batch data-wait timings")
    if r.data_wait_fraction > policy.max_data_wait_fraction:
        return Reason(DATA_BOUND, WARN,
                      f"{pct(r.data_wait_fraction, 0)} of steady-state batch time is waiting for data "
                      f"(limit {pct(policy.max_data_wait_fraction, 0)})")
    return None


# --- batch_changed ---------------------------------------------------------------------------------

def check_batch_changed(r: RunRecord, policy=None) -> Reason | None:
    """Ultralytics lowered the batch (first-epoch OOM halving). An AutoBatch request (-1, 0.7) asked for
    whatever batch AutoBatch settles on: that is no change."""
    if r.batch_size is None or r.batch_size_effective is None:
        return Reason(BATCH_CHANGED, INFO, "not judged: requested or effective batch size not recorded")
    if r.autobatch:
        return None
    if r.batch_size != r.batch_size_effective:
        return Reason(BATCH_CHANGED, WARN,
                      f"trained at batch {r.batch_size_effective}, not the {_batch_text(r)} requested "
                      f"(the effective one is used)")
    return None


def _fix_batch_changed(reason: Reason, r: RunRecord, policy, ctx: FixContext) -> str:
    return (f"; Ultralytics lowered the batch after running out of memory: restart with --set batch={r.batch} "
            "so the run says what it trains with")


def _fix_text(text: str) -> Callable[[Reason, RunRecord, Any, FixContext], str]:
    return lambda reason, r, policy, ctx: text


# --- the registry (check order = the order findings are listed) ------------------------------------

REGISTRY: dict[str, ReasonSpec] = {s.code: s for s in (
    ReasonSpec(IMPLAUSIBLE, REJECT, "an impossible figure (unreadable tag, NaN/inf, negative time)",
               check_implausible),
    ReasonSpec(INCOMPLETE, REJECT, "run FAILED/KILLED, or lacks the summary it needs", check_incomplete,
               live=False),  # the normal state of a run still training: the guard never reports it
    ReasonSpec(MEMORY_OVER_LIMIT, REJECT, "peak_fraction > max_memory_fraction (on the largest device)",
               check_memory_over_limit, _fix_memory, _phrase_memory, stoppable=True),
    ReasonSpec(MAP_DEGRADATION, REJECT, "mAP50 fell by more than max_map_drop from the early to the late window",
               check_map_degradation,
               _fix_text("; restart from epoch 0 with a smaller batch (the seed recovered at 96 from 128) "
                         "or a lower lr0"), _phrase_map, stoppable=True),
    ReasonSpec(DOUBLE_CACHE, REJECT, "cache_mode ram/disk while data_on_tmpfs", check_double_cache,
               _fix_text("; restart with --set cache=false: the images already live on a tmpfs"),
               lambda reason, r, policy: "caches images a second time that already live on a tmpfs",
               stoppable=True),
    ReasonSpec(MEMORY_LEAK, REJECT, "steady-state memory grows faster than max_leak_gib_per_hour",
               check_memory_leak,
               _fix_text("; look for tensors or caches kept across batches, then resume from last.pt with --resume"),
               stoppable=True),
    ReasonSpec(DATA_BOUND, WARN, "data_wait_fraction > max_data_wait_fraction", check_data_bound,
               _fix_text("; raise workers, or stage the images on /dev/shm with `sai-mlflow stage-shm`")),
    ReasonSpec(BATCH_CHANGED, WARN, "batch_size_effective != batch_size (not for an AutoBatch request)",
               check_batch_changed, _fix_batch_changed),
    ReasonSpec(TOO_SLOW, WARN, "projected time > (1 + max_slowdown) x the fastest run's", None),
    ReasonSpec(NOT_COMPARABLE_CODE, EXCLUDE, "model, imgsz, dataset_digest or gpu differ from the group", None),
)}
REASON_CODES = tuple(REGISTRY)
STOPPABLE = tuple(c for c, s in REGISTRY.items() if s.stoppable)


def check_run(r: RunRecord, policy) -> list[Reason]:
    """The per-run checks, on one record alone: what compare-runs judges each run by, and what the
    live guard (sai_mlflow/training/guard.py) runs on a training's own record after each validation."""
    out: list[Reason] = []
    for spec in REGISTRY.values():
        if spec.check is None:
            continue
        got = spec.check(r, policy)
        out.extend(got if isinstance(got, list) else [got] if got is not None else [])
    return out


def fix(reason: Reason, r: RunRecord, policy, ctx: FixContext = FixContext()) -> str:
    """The one-line fix for a finding ("; …"), with the exact flag to use where one exists."""
    spec = REGISTRY.get(reason.code)
    return spec.fix(reason, r, policy, ctx) if spec is not None and spec.fix is not None else ""


def phrase(reason: Reason, r: RunRecord, policy: dict) -> str:
    """A reject reason in plain words, after the run's name ("batch 128 peaks at 98.6 % of 140 GiB")."""
    spec = REGISTRY.get(reason.code)
    return spec.phrase(reason, r, policy) if spec is not None and spec.phrase is not None \
        else f"{reason.code}: {reason.message}"


class StopOnError(ValueError):
    """guard.stop_on names a code the guard cannot stop on: one sentence (a config error, exit 2)."""


def parse_stop_on(codes: Iterable[str]) -> tuple[str, ...]:
    """Validate `guard.stop_on`: known codes the guard may stop on; raise StopOnError otherwise."""
    out = []
    for code in codes:
        c = str(code).strip()
        if not c:
            continue
        if c not in REGISTRY:
            raise StopOnError(f"guard.stop_on: unknown code '{c}'{closest(c, STOPPABLE)} "
                              f"(codes it can stop on: {', '.join(STOPPABLE)})")
        if c not in STOPPABLE:
            raise StopOnError(f"guard.stop_on: '{c}' is never reject-level, and the guard stops only on "
                              f"reject-level findings (codes it can stop on: {', '.join(STOPPABLE)})")
        out.append(c)
    return tuple(dict.fromkeys(out))
