"""The gates a run passes before its model may hold an alias (docs/registry.md); judging reads, never writes.

- `run_finished`: the run's status is FINISHED;
- `comparator`: compare-runs' evaluation of the run (decision.decide) gives it no reject reason;
- `map_improvement`: its `summary/best_mAP50` beats the alias holder's by at least the policy's
  `min_improvement` (passes when nothing holds the alias);
- `same_dataset`: same `dataset_digest` tag as the holder's run (waived by `allow_dataset_change`);
- `batch_unchanged`: tag `batch_size_effective` == `batch_size`;
- `memory_fraction`: `summary/peak_fraction` <= the policy's `max_memory_fraction` (missing = fail).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import keys as K
from ..backend import is_store_error
from ..telemetry.stats import finite
from ..tracking.mlflow_errors import is_not_found
from .names import PromotionError, check_names

NONE = "none"
GATES = ("run_finished", "comparator", "map_improvement", "same_dataset", "batch_unchanged", "memory_fraction")


@dataclass
class Gate:
    name: str
    value: str
    threshold: str
    passed: bool
    note: str = ""


@dataclass
class Holder:
    version: str
    run_id: str | None
    best_map50: float | None = None
    dataset_digest: str | None = None


@dataclass
class Evaluation:
    run_id: str
    model_name: str
    alias: str
    model_uri: str
    holder: Holder | None
    gates: list[Gate] = field(default_factory=list)
    best_map50: float | None = None  # the candidate's summary/best_mAP50

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failed(self) -> list[str]:
        return [g.name for g in self.gates if not g.passed]


# --- reading the run and the holder -------------------------------------------------------------------

def fmt(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def get_run(client, run_id: str):
    try:
        return client.get_run(run_id)
    except Exception as e:
        if not is_store_error(e):
            raise
        if is_not_found(e):
            raise PromotionError(f"unknown run id '{run_id}' in {client.tracking_uri}") from None
        raise PromotionError(f"cannot read run '{run_id}': {getattr(e, 'message', e)}") from None


def current_holder(client, model_name: str, alias: str):
    """The ModelVersion holding `alias`, or None (no such model, or alias unset)."""
    try:
        rm = client.get_registered_model(model_name)
    except Exception as e:
        if is_store_error(e) and is_not_found(e):
            return None
        raise
    version = (rm.aliases or {}).get(alias)
    return client.get_model_version(model_name, str(version)) if version is not None else None


def _holder_info(client, mv) -> Holder | None:
    if mv is None:
        return None
    h = Holder(version=str(mv.version), run_id=mv.run_id or None)
    if h.run_id:
        try:
            run = client.get_run(h.run_id)
            h.best_map50 = finite(run.data.metrics.get(K.SUMMARY_BEST_MAP50))
            h.dataset_digest = run.data.tags.get(K.TAG_DATASET_DIGEST)
        except Exception:
            pass  # the holder's run was deleted: its figures stay unknown (and the gates say so)
    return h


# --- the gates --------------------------------------------------------------------------------------

def judge(client, run, holder: Holder | None, policy, allow_dataset_change: bool = False) -> list[Gate]:
    """The gate table for `run` against `holder` (None: nothing holds the alias). Reads only."""
    from ..compare.decision import REJECT, decide
    from ..compare.loader import records_of

    tags, metrics = run.data.tags, run.data.metrics
    gates: list[Gate] = []

    status = run.info.status
    gates.append(Gate("run_finished", status, "FINISHED", status == "FINISHED"))

    # the comparator's own evaluation of this run (one-run group: every reason but too_slow applies)
    record = records_of(client, [run], policy)[0]
    verdict = decide([record], policy).verdicts[0]
    rejects = [r for r in verdict.reasons if r.severity == REJECT]
    gates.append(Gate("comparator", ", ".join(r.code for r in rejects) or NONE, "no reject reason", not rejects,
                      "; ".join(r.message for r in rejects)))

    best = finite(metrics.get(K.SUMMARY_BEST_MAP50))
    gain = policy.min_improvement
    if holder is None:
        gates.append(Gate("map_improvement", fmt(best), "no holder", True, "nothing holds the alias"))
    elif best is None:
        gates.append(Gate("map_improvement", "—", f"holder v{holder.version} + {gain:g}", False,
                          f"run has no {K.SUMMARY_BEST_MAP50}"))
    elif holder.best_map50 is None:
        gates.append(Gate("map_improvement", fmt(best), f"holder v{holder.version} + {gain:g}", False,
                          f"the holder's {K.SUMMARY_BEST_MAP50} is unknown (run {holder.run_id or 'not recorded'})"))
    else:
        need = holder.best_map50 + gain
        gates.append(Gate("map_improvement", fmt(best),
                          f">= {fmt(need)} (v{holder.version} {fmt(holder.best_map50)} + {gain:g})",
                          best - holder.best_map50 >= gain - 1e-12,
                          f"gain {best - holder.best_map50:+.4f}"))

    digest = tags.get(K.TAG_DATASET_DIGEST)
    if holder is None:
        gates.append(Gate("same_dataset", digest or "—", "no holder", True))
    else:
        same = digest is not None and digest == holder.dataset_digest
        note = "waived: --allow-dataset-change" if (allow_dataset_change and not same) else ""
        gates.append(Gate("same_dataset", digest or "—", holder.dataset_digest or "unknown",
                          same or allow_dataset_change, note))

    bs, eff = tags.get(K.TAG_BATCH_SIZE), tags.get(K.TAG_BATCH_SIZE_EFFECTIVE)
    gates.append(Gate("batch_unchanged", eff or "—", f"== batch_size {bs or '—'}",
                      bs is not None and eff is not None and str(eff).strip() == str(bs).strip(),
                      "" if bs and eff else "batch_size or batch_size_effective not recorded"))

    frac = finite(metrics.get(K.SUMMARY_PEAK_FRACTION))
    gates.append(Gate("memory_fraction", fmt(frac, 3), f"<= {policy.max_memory_fraction:g}",
                      frac is not None and frac <= policy.max_memory_fraction,
                      "" if frac is not None else f"{K.SUMMARY_PEAK_FRACTION} not recorded"))
    return gates


def evaluate(client, run_id: str, model_name: str, alias: str, policy,
             allow_dataset_change: bool = False) -> Evaluation:
    """Gate table of `run_id` against the current holder of `model_name@alias`. Reads only."""
    from ..model import ModelNotFound, find_run_model

    check_names(model_name, alias)
    run = get_run(client, run_id)
    try:
        model_uri = find_run_model(client, run)
    except ModelNotFound as e:
        raise PromotionError(str(e)) from None
    holder = _holder_info(client, current_holder(client, model_name, alias))
    return Evaluation(run_id, model_name, alias, model_uri, holder,
                      judge(client, run, holder, policy, allow_dataset_change),
                      finite(run.data.metrics.get(K.SUMMARY_BEST_MAP50)))
