"""Records + policy -> verdicts: the pure core of compare-runs (no mlflow, torch, pandas or I/O).

The rule (contract, docs/compare-runs.md):
1. the group compared is the largest set of mutually comparable runs (same model, imgsz,
   dataset_digest, gpu; ties: the group holding the first run listed); the rest are `not_comparable`.
   The device count is no part of it: a 1-GPU and a 4-GPU run are compared by projected time;
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
from .reasons import (  # noqa: F401  (re-exported: the codes and checks live in the registry)
    BATCH_CHANGED,
    DATA_BOUND,
    DOUBLE_CACHE,
    ENDED_BADLY,
    EXCLUDE,
    IMPLAUSIBLE,
    INCOMPLETE,
    INFO,
    MAP_DEGRADATION,
    MEMORY_LEAK,
    MEMORY_OVER_LIMIT,
    MIN_LEAK_SAMPLES,
    NOT_COMPARABLE_CODE,
    REASON_CODES,
    REJECT,
    SEVERITIES,
    TOO_SLOW,
    WARN,
    Reason,
    check_implausible,
    check_run,
    map_drop,
    memory_judgeable_before_fetch,
    summary_covers_memory,
)
from .record import GROUP_FIELDS, HUGE, RunRecord  # noqa: F401
from .text import duration_text, pct  # noqa: F401

# verdicts
RECOMMENDED = "recommended"
ACCEPTABLE = "acceptable"
REJECTED = "rejected"
NOT_COMPARABLE = "not_comparable"
VERDICTS = (RECOMMENDED, ACCEPTABLE, REJECTED, NOT_COMPARABLE)

# series a reason may need (fetched by the loader only when planned)
NEED_MAP50 = K.VAL_MAP50
NEED_MEMORY = K.MEMORY_USED_GIB


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
    suggested_batch: int | None           # the total for `suggested_devices` devices
    fit: MemoryFit | None                 # peak per device against batch per device
    limit_gib: float | None
    evidence: list[RunRecord] = field(default_factory=list)  # probes whose points joined the fit
    suggested_batch_per_device: int | None = None
    suggested_devices: int | None = None  # the device count suggested_batch is for

    @property
    def exit_code(self) -> int:
        return 0 if self.recommended is not None else 3

    def by_id(self, run_id: str) -> Verdict:
        return next(v for v in self.verdicts if v.run_id == run_id)


# --- helpers ------------------------------------------------------------------------------------

def _known(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


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
        if memory_judgeable_before_fetch(r) is None and not summary_covers_memory(r):
            need.add(NEED_MEMORY)
        if need:
            plan[r.run_id] = need
    return plan


# --- decide --------------------------------------------------------------------------------------

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
                    f"projected {duration_text(eta)} is {eta / fastest_s:.2f}× the fastest "
                    f"({duration_text(fastest_s)}, "
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
        if len({v.record.device_count for v in candidates}) > 1:  # different device counts: by projected time
            use_eta = use_eta or any(_known(v.record.eta_full_s) for v in candidates)
        order = {id(v): i for i, v in enumerate(verdicts)}
        ranked = sorted(candidates, key=lambda v: _rank_key(v, use_eta, order[id(v)]))
        recommended = ranked[0]
        recommended.verdict = RECOMMENDED
        for v in ranked[1:]:
            v.verdict = ACCEPTABLE

    used = [r for r in evidence if r.group_key == group and check_implausible(r) is None]
    fit, limit, per_device = suggest_batch(trusted + [Verdict(r) for r in used], policy)
    counts = {v.record.device_count for v in trusted}
    devices = (recommended.record.device_count if recommended is not None
               else counts.pop() if len(counts) == 1 else None)
    suggested = per_device * devices if per_device is not None and devices is not None else None
    return Decision(policy=policy.as_dict(), verdicts=verdicts, group_key=group, recommended=recommended,
                    suggested_batch=suggested, fit=fit, limit_gib=limit, evidence=used,
                    suggested_batch_per_device=per_device, suggested_devices=devices)


def fit_point(r: RunRecord) -> tuple[int, float] | None:
    """(batch per device, peak GiB) of a run for the memory fit: its effective batch over its devices
    against its peak (the largest device's); None when either is not recorded."""
    if not r.batch_size_effective or not _known(r.peak_gib):
        return None
    return r.batch_size_effective // r.device_count, r.peak_gib


def suggest_batch(members: Sequence[Verdict], policy) -> tuple[MemoryFit | None, float | None, int | None]:
    """Fit peak memory per device (validation included) against the batch per device over the group; the
    largest batch per device predicted at or under max_memory_fraction x one device's total. None with
    < 2 distinct batches, and None when memory barely grows with the batch (`MemoryFit.flat`)."""
    points = [p for p in (fit_point(v.record) for v in members) if p is not None]
    fit = fit_peak_memory(points)
    totals = [v.record.total_gib for v in members if _known(v.record.total_gib) and v.record.total_gib > 0]
    if fit is None or not totals:
        return fit, None, None
    limit = policy.max_memory_fraction * min(totals)
    return fit, limit, None if fit.flat else fit.largest_batch_under(limit)
