"""Records + policy -> verdicts: the pure core of compare-runs (no mlflow, torch, pandas or I/O).

The rule (contract, docs/compare-runs.md):
1. the group compared is the largest set of mutually comparable runs (same model, imgsz,
   dataset_digest, gpu; ties: the group holding the first run listed); the rest are `not_comparable`;
2. a run with any reason of severity `reject` is `rejected`;
3. of the rest, the shortest projected time (`eta_full_s`, else the highest `images_per_s`) is
   `recommended`, ties to the higher best mAP50; the others are `acceptable`.

A missing figure is never invented. When a check cannot be judged, the run carries that check's
code with severity `info` and a message saying why ("not judged: ..."). `info` never changes a
verdict; it is this module's one addition to the contract's severities (reject/warn/exclude), and
also carries the note that a RUNNING run is judged on what it has so far.

History loading is two-phase so that series are fetched only where a reason needs them:
`plan_fetch` says which runs need which series (per-epoch mAP50, steady-state memory), the loader
fetches those, and `decide` judges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import keys as K
from .memfit import MemoryFit, fit_peak_memory
from ..telemetry.stats import median

# verdicts
RECOMMENDED = "recommended"
ACCEPTABLE = "acceptable"
REJECTED = "rejected"
NOT_COMPARABLE = "not_comparable"
VERDICTS = (RECOMMENDED, ACCEPTABLE, REJECTED, NOT_COMPARABLE)

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
REASON_CODES = (MEMORY_OVER_LIMIT, MAP_DEGRADATION, DOUBLE_CACHE, MEMORY_LEAK, INCOMPLETE, IMPLAUSIBLE,
                DATA_BOUND, BATCH_CHANGED, TOO_SLOW, NOT_COMPARABLE_CODE)

# severities: the contract's three, plus `info` (could not be judged / a note; never changes a verdict)
REJECT = "reject"
WARN = "warn"
EXCLUDE = "exclude"
INFO = "info"
SEVERITIES = (REJECT, WARN, EXCLUDE, INFO)

# series a reason may need (fetched by the loader only when planned)
NEED_MAP50 = K.VAL_MAP50
NEED_MEMORY = K.MEMORY_USED_GIB

GROUP_FIELDS = ("model", "imgsz", "dataset_digest", "gpu")
ENDED_BADLY = ("FAILED", "KILLED")
MIN_LEAK_SAMPLES = 10


@dataclass
class RunRecord:
    """What compare-runs knows about one run; None = not recorded (never a guess)."""

    run_id: str
    run_name: str | None = None
    status: str = "FINISHED"  # MLflow run status
    run_kind: str | None = None
    experiment_id: str | None = None  # where the run lives (for links into the UI)
    # identity / setup (tags)
    model: str | None = None
    imgsz: int | None = None
    dataset_digest: str | None = None
    gpu: str | None = None
    batch_size: int | None = None
    batch_size_effective: int | None = None
    cache_mode: str | None = None
    data_on_tmpfs: bool | None = None
    memory_source: str | None = None
    # summary/* metrics
    step_s_steady: float | None = None
    images_per_s: float | None = None
    warmup_batches: float | None = None
    data_wait_fraction: float | None = None
    peak_gib: float | None = None
    total_gib: float | None = None
    peak_fraction: float | None = None
    best_map50: float | None = None
    eta_full_s: float | None = None
    epochs_completed: float | None = None
    epochs_planned: float | None = None
    # what the latest-metric table says about series (known without fetching them)
    map50_last_epoch: int | None = None          # step of the latest val/mAP50
    memory_samples: int | None = None            # latest memory/used_gib step + 1
    # series, filled by the loader only when plan_fetch asked for them
    map50: dict[int, float] | None = None                    # epoch -> value
    # recorded but unusable (a tag `batch_size='abc'`, a summary metric NaN): name -> the value as recorded
    unreadable: dict[str, str] = field(default_factory=dict)
    memory_steady: list[tuple[float, float]] | None = None   # (time s, GiB), the second half of samples

    @property
    def group_key(self) -> tuple:
        return tuple(_norm(getattr(self, f)) for f in GROUP_FIELDS)

    @property
    def label(self) -> str:
        return self.run_name or self.run_id[:8]


@dataclass(frozen=True)
class Reason:
    code: str
    severity: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


@dataclass
class Verdict:
    record: RunRecord
    verdict: str = ACCEPTABLE
    reasons: list[Reason] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def codes(self, *severities: str) -> list[str]:
        sev = severities or (REJECT, WARN, EXCLUDE)
        return [r.code for r in self.reasons if r.severity in sev]

    def reason(self, code: str, severity: str | None = None) -> Reason | None:
        for r in self.reasons:
            if r.code == code and (severity is None or r.severity == severity):
                return r
        return None


@dataclass
class Decision:
    policy: dict[str, Any]
    verdicts: list[Verdict]               # in the order the runs were listed
    group_key: tuple | None
    recommended: Verdict | None
    suggested_batch: int | None
    fit: MemoryFit | None
    limit_gib: float | None
    evidence: list[RunRecord] = field(default_factory=list)  # probes whose points joined the fit

    @property
    def exit_code(self) -> int:
        return 0 if self.recommended is not None else 3

    def by_id(self, run_id: str) -> Verdict:
        return next(v for v in self.verdicts if v.run_id == run_id)


# --- helpers ------------------------------------------------------------------------------------

def _norm(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _known(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def duration_text(seconds: float) -> str:
    """A duration in the unit a person reads it in: 45 s, 12.5 min, 10.4 h."""
    if not math.isfinite(seconds) or abs(seconds) >= 3.6e9:  # a sane width, even for +-1.8e308
        return f"{seconds / 3600:.3g} h"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def pct(fraction: float, digits: int = 1) -> str:
    if not math.isfinite(fraction) or abs(fraction) >= 1e4:
        return f"{fraction * 100:.3g} %"
    return f"{fraction * 100:.{digits}f} %"


def _epochs(window: Sequence[int]) -> str:
    a, b = window
    return f"epoch {a}" if a == b else f"epochs {a}–{b}"


def memory_slope_gib_per_hour(samples: Sequence[tuple[float, float]]) -> float | None:
    """Robust growth of (time s, GiB) samples in GiB/hour: the median of the last third minus the
    median of the first third, over the time between the thirds' middles. Medians ignore the
    periodic validation peaks (2x batch) that a least-squares line would read as a trend when one
    falls near an end. None with < 3 samples or no time between the thirds."""
    pts = sorted((float(t), float(g)) for t, g in samples if _known(t) and _known(g))
    n = len(pts)
    if n < 3:
        return None
    k = max(1, n // 3)
    first, last = pts[:k], pts[-k:]
    dt = median([t for t, _ in last]) - median([t for t, _ in first])
    if dt <= 0:
        return None
    return (median([g for _, g in last]) - median([g for _, g in first])) / dt * 3600.0


# --- grouping ----------------------------------------------------------------------------------

def choose_group(records: Sequence[RunRecord]) -> tuple | None:
    """The key of the largest set of mutually comparable runs; ties -> the group of the first run listed."""
    if not records:
        return None
    counts: dict[tuple, int] = {}
    first_at: dict[tuple, int] = {}
    for i, r in enumerate(records):
        k = r.group_key
        counts[k] = counts.get(k, 0) + 1
        first_at.setdefault(k, i)
    best = max(counts.values())
    return min((k for k, c in counts.items() if c == best), key=lambda k: first_at[k])


def _not_comparable_message(r: RunRecord, group: tuple) -> str:
    diffs = []
    for name, mine, theirs in zip(GROUP_FIELDS, r.group_key, group):
        if mine != theirs:
            diffs.append(f"{name} {mine or 'unknown'} ≠ {theirs or 'unknown'}")
    return "differs from the group compared: " + "; ".join(diffs)


# --- two-phase loading ---------------------------------------------------------------------------

def plan_fetch(records: Sequence[RunRecord], policy) -> dict[str, set[str]]:
    """run_id -> series keys a reason needs. Only runs of the compared group, only series the
    latest-metric table shows exist and could be judged (enough epochs, enough samples), and only
    those not already loaded (Ultralytics-native runs come with their mAP50 per epoch)."""
    group = choose_group(records)
    plan: dict[str, set[str]] = {}
    late_first = policy.map_late_epochs[0]
    for r in records:
        if r.group_key != group:
            continue
        need: set[str] = set()
        if r.map50 is None and r.map50_last_epoch is not None and r.map50_last_epoch >= late_first:
            need.add(NEED_MAP50)
        if _memory_judgeable_before_fetch(r, policy) is None:
            need.add(NEED_MEMORY)
        if need:
            plan[r.run_id] = need
    return plan


def _memory_judgeable_before_fetch(r: RunRecord, policy) -> str | None:
    """None when the steady-state memory series is worth fetching, else why it cannot be judged.

    Only the sample count is known before the fetch: the time the samples cover is read from the
    series itself afterwards, never from the run's start time (tools that import runs keep the
    original timestamps, which may precede the run's own start)."""
    if not r.memory_samples:
        return "no memory/used_gib samples recorded"
    if r.memory_samples < 2 * MIN_LEAK_SAMPLES:
        return f"only {r.memory_samples} memory samples (needs {2 * MIN_LEAK_SAMPLES})"
    return None


def series_span_s(points: Sequence[tuple[float, float]]) -> float:
    """Seconds between the first and last timestamps of (time s, value) points; 0 when fewer than two
    or when the timestamps do not move forward (never negative)."""
    times = [t for t, _ in points if _known(t)]
    return max(0.0, max(times) - min(times)) if len(times) >= 2 else 0.0


# --- the checks --------------------------------------------------------------------------------

HUGE = 1e300  # SQL stores keep +-inf as +-1.8e308: a figure this large is no measurement
# figure -> (lowest, highest, lowest allowed itself): what a real run can record
PLAUSIBLE = {
    "batch_size": (1, HUGE, True), "batch_size_effective": (1, HUGE, True), "imgsz": (1, HUGE, True),
    "step_s_steady": (0, HUGE, False), "images_per_s": (0, HUGE, False), "eta_full_s": (0, HUGE, False),
    "warmup_batches": (0, HUGE, True), "data_wait_fraction": (0, 1, True), "peak_gib": (0, HUGE, True),
    "total_gib": (0, HUGE, False), "peak_fraction": (0, 100, True), "best_map50": (0, 1, True),
    "epochs_completed": (0, HUGE, True), "epochs_planned": (0, HUGE, True),
}


def _check_implausible(r: RunRecord) -> Reason | None:
    """Figures no real run records (unparseable tags, NaN/inf, negative or backward times): never ranked."""
    problems = [f"{k}={v!r} is not a usable value" for k, v in r.unreadable.items()]
    if r.cache_mode is not None and r.cache_mode not in K.CACHE_MODES:
        problems.append(f"cache_mode={r.cache_mode!r} is not one of {'/'.join(K.CACHE_MODES)}")
    for name, (lo, hi, lo_ok) in PLAUSIBLE.items():
        x = getattr(r, name)
        if x is None:
            continue
        if not (isinstance(x, (int, float)) and math.isfinite(x)) or abs(x) >= HUGE:
            problems.append(f"{name} is infinite")
        elif x < lo or (x == lo and not lo_ok) or x > hi:
            problems.append(f"{name}={x:.6g} is impossible")
    if not problems:
        return None
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return Reason(IMPLAUSIBLE, REJECT, "not judged: " + "; ".join(problems[:3]) + more + "; fix or re-log the run")


def _check_incomplete(r: RunRecord) -> list[Reason]:
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


def _check_memory_over_limit(r: RunRecord, policy) -> Reason | None:
    frac = r.peak_fraction
    if not _known(frac) and _known(r.peak_gib) and _known(r.total_gib) and r.total_gib > 0:
        frac = r.peak_gib / r.total_gib
    if not _known(frac):
        missing = "no peak memory recorded" if not _known(r.peak_gib) else "device total memory unknown"
        return Reason(MEMORY_OVER_LIMIT, INFO, f"not judged: {missing}")
    if frac > policy.max_memory_fraction:
        of = f" of {r.total_gib:.0f} GiB" if _known(r.total_gib) else ""
        peak = f"{r.peak_gib:.1f} GiB, " if _known(r.peak_gib) else ""
        return Reason(MEMORY_OVER_LIMIT, REJECT,
                      f"peaks at {peak}{pct(frac)}{of} (limit {pct(policy.max_memory_fraction, 0)})")
    return None


def map_drop(series: dict[int, float], early: Sequence[int], late: Sequence[int]):
    """(early mean, late mean, late epochs used) or None when either window has no value."""
    e = [series[k] for k in range(early[0], early[1] + 1) if k in series and _known(series[k])]
    late_eps = [k for k in range(late[0], late[1] + 1) if k in series and _known(series[k])]
    if not e or not late_eps:
        return None
    return sum(e) / len(e), sum(series[k] for k in late_eps) / len(late_eps), late_eps


def _check_map_degradation(r: RunRecord, policy) -> Reason | None:
    early, late = policy.map_early_epochs, policy.map_late_epochs
    if r.map50 is None:
        if r.map50_last_epoch is None:
            return Reason(MAP_DEGRADATION, INFO, "not judged: no val/mAP50 recorded yet")
        return Reason(MAP_DEGRADATION, INFO,
                      f"not judged: val/mAP50 only up to epoch {r.map50_last_epoch} "
                      f"(the later window is {_epochs(late)})")
    got = map_drop(r.map50, early, late)
    if got is None:
        return Reason(MAP_DEGRADATION, INFO,
                      f"not judged: val/mAP50 lacks {_epochs(early)} or any of {_epochs(late)}")
    e_mean, l_mean, used = got
    drop = e_mean - l_mean
    if drop > policy.max_map_drop:
        partial = "" if len(used) == late[1] - late[0] + 1 else f" (only {_epochs((used[0], used[-1]))} reached)"
        return Reason(MAP_DEGRADATION, REJECT,
                      f"mAP50 fell {drop * 100:.1f} points: {pct(e_mean)} at {_epochs(early)} → "
                      f"{pct(l_mean)} mean over {_epochs(late)}{partial} (limit {policy.max_map_drop * 100:.1f})")
    return None


def _check_double_cache(r: RunRecord) -> Reason | None:
    cached = r.cache_mode in ("ram", "disk")
    if cached and r.data_on_tmpfs is True:
        return Reason(DOUBLE_CACHE, REJECT,
                      f"cache={r.cache_mode} while the images already live on a tmpfs: they are cached twice")
    if r.cache_mode is None and r.data_on_tmpfs is not False:
        return Reason(DOUBLE_CACHE, INFO, "not judged: cache_mode not recorded")
    if cached and r.data_on_tmpfs is None:
        return Reason(DOUBLE_CACHE, INFO, f"not judged: cache={r.cache_mode} but unknown whether data is on a tmpfs")
    return None


def _check_memory_leak(r: RunRecord, policy) -> Reason | None:
    why = _memory_judgeable_before_fetch(r, policy)
    if why is None and r.memory_steady is None:
        why = "steady-state memory series not loaded"
    if why is None:
        pts = r.memory_steady or []
        span = series_span_s(pts)
        if len(pts) < MIN_LEAK_SAMPLES:
            why = f"only {len(pts)} steady-state memory samples"
        elif span <= 0:
            why = "steady-state memory samples share one timestamp"
        elif span < policy.min_leak_window_s:
            why = f"steady-state memory covers {span / 60:.1f} min (needs {policy.min_leak_window_s / 60:.0f} min)"
        else:
            slope = memory_slope_gib_per_hour(pts)
            if slope is None:
                why = "steady-state memory samples share one timestamp"
            elif slope > policy.max_leak_gib_per_hour:
                return Reason(MEMORY_LEAK, REJECT,
                              f"steady-state memory grows {slope:.2f} GiB/h over {span / 3600:.1f} h "
                              f"(limit {policy.max_leak_gib_per_hour:g} GiB/h)")
            else:
                return None
    return Reason(MEMORY_LEAK, INFO, f"not judged: {why}")


def _check_data_bound(r: RunRecord, policy) -> Reason | None:
    if not _known(r.data_wait_fraction):
        return Reason(DATA_BOUND, INFO, "not judged: no per-batch data-wait timings")
    if r.data_wait_fraction > policy.max_data_wait_fraction:
        return Reason(DATA_BOUND, WARN,
                      f"{pct(r.data_wait_fraction, 0)} of steady-state batch time is waiting for data "
                      f"(limit {pct(policy.max_data_wait_fraction, 0)})")
    return None


def _check_batch_changed(r: RunRecord) -> Reason | None:
    if r.batch_size is None or r.batch_size_effective is None:
        return Reason(BATCH_CHANGED, INFO, "not judged: requested or effective batch size not recorded")
    if r.batch_size != r.batch_size_effective:
        return Reason(BATCH_CHANGED, WARN,
                      f"trained at batch {r.batch_size_effective}, not the {r.batch_size} requested "
                      f"(the effective one is used)")
    return None


# --- decide --------------------------------------------------------------------------------------

def check_run(r: RunRecord, policy) -> list[Reason]:
    """The per-run checks, on one record alone: what compare-runs judges each run by, and what the
    live guard (sai_mlflow/guard.py) runs on a training's own record after each validation."""
    implausible = _check_implausible(r)
    reasons = ([implausible] if implausible is not None else []) + _check_incomplete(r)
    for reason in (_check_memory_over_limit(r, policy), _check_map_degradation(r, policy),
                   _check_double_cache(r), _check_memory_leak(r, policy),
                   _check_data_bound(r, policy), _check_batch_changed(r)):
        if reason is not None:
            reasons.append(reason)
    return reasons


def _rank_key(v: Verdict, use_eta: bool, order: int):
    r = v.record
    if use_eta:
        speed = r.eta_full_s
    else:
        speed = -r.images_per_s if _known(r.images_per_s) else None
    speed = round(speed, 3) if _known(speed) else math.inf
    m = r.best_map50 if _known(r.best_map50) else -math.inf
    return (speed, -m, order)


def decide(records: Sequence[RunRecord], policy, evidence: Sequence[RunRecord] = ()) -> Decision:
    """Judge `records` (in the order listed) under `policy`.

    `evidence` (probe runs, in compare-runs) is never judged nor recommended: those of the compared
    group only add their (batch, peak) points to the memory fit behind `suggested_batch`."""
    group = choose_group(records)
    verdicts: list[Verdict] = []
    for r in records:
        v = Verdict(r)
        if r.group_key != group:
            v.verdict = NOT_COMPARABLE
            v.reasons.append(Reason(NOT_COMPARABLE_CODE, EXCLUDE, _not_comparable_message(r, group)))
            verdicts.append(v)
            continue
        v.reasons.extend(check_run(r, policy))
        verdicts.append(v)

    members = [v for v in verdicts if v.verdict != NOT_COMPARABLE]
    trusted = [v for v in members if v.reason(IMPLAUSIBLE) is None]  # an impossible figure sets no yardstick
    # too_slow: against the fastest projected time in the group (rejected runs included: the
    # warning is the price of the safer choice)
    etas = [(v.record.eta_full_s, v) for v in trusted if _known(v.record.eta_full_s)]
    if etas:
        fastest_s, fastest = min(etas, key=lambda p: p[0])
        for v in trusted:
            eta = v.record.eta_full_s
            if not _known(eta):
                v.reasons.append(Reason(TOO_SLOW, INFO, "not judged: no projected time (summary/eta_full_s)"))
            elif fastest_s > 0 and eta > (1 + policy.max_slowdown) * fastest_s:
                v.reasons.append(Reason(
                    TOO_SLOW, WARN,
                    f"projected {duration_text(eta)} is {eta / fastest_s:.2f}× the fastest ({duration_text(fastest_s)}, "
                    f"{fastest.record.label}; limit {1 + policy.max_slowdown:.2f}×)"))
    else:
        for v in members:
            v.reasons.append(Reason(TOO_SLOW, INFO, "not judged: no run in the group has a projected time"))

    for v in members:
        if any(r.severity == REJECT for r in v.reasons):
            v.verdict = REJECTED
    candidates = [v for v in members if v.verdict != REJECTED]
    recommended = None
    if candidates:
        use_eta = all(_known(v.record.eta_full_s) for v in candidates)
        if not use_eta and not all(_known(v.record.images_per_s) for v in candidates):
            use_eta = any(_known(v.record.eta_full_s) for v in candidates)
        order = {id(v): i for i, v in enumerate(verdicts)}
        ranked = sorted(candidates, key=lambda v: _rank_key(v, use_eta, order[id(v)]))
        recommended = ranked[0]
        recommended.verdict = RECOMMENDED
        for v in ranked[1:]:
            v.verdict = ACCEPTABLE

    used = [r for r in evidence if r.group_key == group and _check_implausible(r) is None]
    fit, limit, suggested = suggest_batch(trusted + [Verdict(r) for r in used], policy)
    return Decision(policy=policy.as_dict(), verdicts=verdicts, group_key=group, recommended=recommended,
                    suggested_batch=suggested, fit=fit, limit_gib=limit, evidence=used)


def suggest_batch(members: Sequence[Verdict], policy) -> tuple[MemoryFit | None, float | None, int | None]:
    """Fit peak memory (validation included) against effective batch over the group; the largest
    batch predicted at or under max_memory_fraction x device total. None with < 2 distinct batches."""
    points = [(v.record.batch_size_effective, v.record.peak_gib) for v in members
              if v.record.batch_size_effective and _known(v.record.peak_gib)]
    fit = fit_peak_memory(points)
    totals = [v.record.total_gib for v in members if _known(v.record.total_gib) and v.record.total_gib > 0]
    if fit is None or not totals:
        return fit, None, None
    limit = policy.max_memory_fraction * min(totals)
    return fit, limit, fit.largest_batch_under(limit)
