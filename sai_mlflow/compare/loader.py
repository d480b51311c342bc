"""MLflow -> run records for compare-runs: summaries and tags first, series only where a reason needs them.

One `search_runs` (or `get_run` per id) gives every run's tags and latest metrics, which is all
most reasons need (`summary/*` is refreshed at every epoch end). The latest-metric table also
tells how far the per-epoch mAP50 got and how many memory samples exist, so
`decision.plan_fetch` can ask for exactly:
- `val/mAP50` per epoch (a hundred-odd points), for runs that reached the later window;
- the steady-state half of `memory/used_gib`, sampled to at most `MEMORY_POINTS` points in SQL
  (MLflow's `get_metric_history_bulk_interval`), for runs long enough to judge a leak.
Runs of kind `train`, `import` and `replay` are treated alike. `probe` runs (a few batches long)
are evidence, never candidates: `split_evidence` sets them apart so that they only add points to the
memory fit; `probe_session` parents (no figures of their own) are left out of an experiment listing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .. import keys as K
from ..telemetry.stats import finite
from ..tracking.mlflow_errors import is_not_found
from .decision import NEED_MAP50, NEED_MEMORY, RunRecord, plan_fetch

MEMORY_POINTS = 500
PLOT_POINTS = 1500
PROGRESS_MIN_RUNS = 10


class InputError(ValueError):
    """Bad input to compare-runs (unknown run or experiment, no runs, bad filter): exit 2."""


# --- finding runs ------------------------------------------------------------------------------

def find_runs(client, run_ids: Sequence[str] = (), experiment: str | None = None,
              filter_string: str | None = None) -> list:
    """MLflow Run objects in the order listed: ids as given, else the experiment's by start time."""
    from mlflow.exceptions import MlflowException

    if run_ids:
        runs, seen = [], set()
        for rid in run_ids:
            if rid in seen:
                continue
            seen.add(rid)
            try:
                runs.append(client.get_run(rid))
            except MlflowException as e:
                if is_not_found(e):
                    raise InputError(f"unknown run id '{rid}' in {client.tracking_uri}") from None
                raise InputError(f"cannot read run '{rid}': {e.message if hasattr(e, 'message') else e}") from None
        return runs

    exp = client.get_experiment_by_name(experiment) if experiment else None
    if exp is None or exp.lifecycle_stage == "deleted":
        known = sorted(e.name for e in client.search_experiments())
        hint = f" (experiments here: {', '.join(known)})" if known else " (this store has no experiments)"
        raise InputError(f"no experiment named '{experiment}' in {client.tracking_uri}{hint}")
    try:
        runs = list(search_runs(client, [exp.experiment_id], filter_string or "",
                                order_by=["attributes.start_time ASC"]))
    except MlflowException as e:
        raise InputError(f"bad --filter {filter_string!r}: {getattr(e, 'message', e)}") from None
    runs = [r for r in runs if r.data.tags.get(K.TAG_RUN_KIND) != K.RUN_KIND_PROBE_SESSION]
    if not runs:
        what = f" matching {filter_string!r}" if filter_string else ""
        raise InputError(f"experiment '{experiment}' has no runs{what}")
    return runs


_SAFE_TAG_VALUE = re.compile(r"^[\w.\-/ :]+$")


def search_runs(client, experiment_ids: Sequence[str], filter_string: str = "", order_by=None,
                tag_equals: dict[str, Any] | None = None) -> Iterator:
    """Every run of the experiments matching the filter, page by page (MLflow pages at 1000).

    `tag_equals` adds `tags.K = 'V'` clauses for values that are safe to quote (others are not filtered
    on here: the caller checks them on the records).
    """
    clauses = [filter_string] if filter_string else []
    for tag, value in (tag_equals or {}).items():
        if value is not None and _SAFE_TAG_VALUE.match(str(value)):
            clauses.append(f"tags.{tag} = '{value}'")
    token = None
    while True:
        page = client.search_runs([str(e) for e in experiment_ids], filter_string=" and ".join(clauses),
                                  max_results=1000, order_by=order_by, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


# --- one record per run ------------------------------------------------------------------------

def _int(v: Any) -> int | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) else None


def _bool(v: Any) -> bool | None:
    if v is None:
        return None
    s = str(v).strip().lower()
    return True if s in ("true", "1", "yes") else False if s in ("false", "0", "no") else None


def _num(metrics: dict, key: str) -> float | None:
    return finite(metrics.get(key))


def _unreadable(tags: dict, m: dict) -> dict[str, str]:
    """Tags and summary metrics that are recorded but unusable (batch_size='abc', NaN): named, never guessed."""
    out = {}
    for tag, parse in ((K.TAG_BATCH_SIZE, _int), (K.TAG_BATCH_SIZE_EFFECTIVE, _int), (K.TAG_IMGSZ, _int),
                       (K.TAG_DATA_ON_TMPFS, _bool)):
        if tags.get(tag) is not None and parse(tags[tag]) is None:
            out[tag] = str(tags[tag])[:40]
    for key, v in m.items():
        if key.startswith("summary/") and not math.isfinite(v):
            out[key] = str(v)
    return out


def record_from_run(run) -> RunRecord:
    tags, m = run.data.tags, run.data.metrics
    latest = {x.key: x for x in getattr(run.data, "_metric_objs", [])}
    mem = latest.get(K.MEMORY_USED_GIB)
    mapm = latest.get(K.VAL_MAP50)
    return RunRecord(
        run_id=run.info.run_id,
        run_name=run.info.run_name,
        status=run.info.status,
        run_kind=tags.get(K.TAG_RUN_KIND),
        model=tags.get(K.TAG_MODEL),
        imgsz=_int(tags.get(K.TAG_IMGSZ)),
        dataset_digest=tags.get(K.TAG_DATASET_DIGEST),
        gpu=tags.get(K.TAG_GPU),
        batch_size=_int(tags.get(K.TAG_BATCH_SIZE)),
        batch_size_effective=_int(tags.get(K.TAG_BATCH_SIZE_EFFECTIVE)),
        cache_mode=tags.get(K.TAG_CACHE_MODE),
        data_on_tmpfs=_bool(tags.get(K.TAG_DATA_ON_TMPFS)),
        memory_source=tags.get(K.TAG_MEMORY_SOURCE),
        step_s_steady=_num(m, K.SUMMARY_STEP_S_STEADY),
        images_per_s=_num(m, K.SUMMARY_IMAGES_PER_S),
        warmup_batches=_num(m, K.SUMMARY_WARMUP_BATCHES),
        data_wait_fraction=_num(m, K.SUMMARY_DATA_WAIT_FRACTION),
        peak_gib=_num(m, K.SUMMARY_PEAK_GIB),
        total_gib=_num(m, K.SUMMARY_TOTAL_GIB),
        peak_fraction=_num(m, K.SUMMARY_PEAK_FRACTION),
        best_map50=_num(m, K.SUMMARY_BEST_MAP50),
        eta_full_s=_num(m, K.SUMMARY_ETA_FULL_S),
        epochs_completed=_num(m, K.SUMMARY_EPOCHS_COMPLETED),
        epochs_planned=_num(m, K.SUMMARY_EPOCHS_PLANNED),
        start_time_s=run.info.start_time / 1000.0 if run.info.start_time else None,
        map50_last_epoch=(int(mapm.step) if mapm is not None
                          else _int(m.get(K.SUMMARY_EPOCHS_COMPLETED)) if not latest and K.VAL_MAP50 in m else None),
        memory_samples=int(mem.step) + 1 if mem is not None else None,
        memory_last_time_s=mem.timestamp / 1000.0 if mem is not None else None,
        unreadable=_unreadable(tags, m),
    )


# --- series ------------------------------------------------------------------------------------

def _store(client):
    tc = getattr(client, "_tracking_client", None)
    return getattr(tc, "store", None)


def sampled_history(client, run_id: str, key: str, max_points: int,
                    start_step: int | None = None, end_step: int | None = None) -> list:
    """Metric entities of `key` within [start_step, end_step], evenly sampled to <= max_points
    (in SQL where the store supports it), ordered by step."""
    store = _store(client)
    fn = getattr(store, "get_metric_history_bulk_interval", None)
    if fn is not None:
        try:
            got = fn([run_id], key, max_points, start_step, end_step)
            return sorted((x.metric if hasattr(x, "metric") else x for x in got), key=lambda m: (m.step, m.timestamp))
        except NotImplementedError:
            pass
    hist = client.get_metric_history(run_id, key)
    if start_step is not None:
        hist = [m for m in hist if start_step <= m.step <= end_step]
    hist.sort(key=lambda m: (m.step, m.timestamp))
    if len(hist) > max_points:
        stride = (len(hist) - 1) / (max_points - 1)
        hist = [hist[round(i * stride)] for i in range(max_points)]
    return hist


def map50_histories(client, run_ids: Sequence[str]) -> dict[str, dict[int, float]]:
    """Per-epoch val/mAP50 of several runs; one bulk query where the store has it."""
    out: dict[str, dict[int, float]] = {rid: {} for rid in run_ids}
    store = _store(client)
    bulk = getattr(store, "get_metric_history_bulk", None)
    if bulk is not None and run_ids:
        try:
            for x in bulk(list(run_ids), K.VAL_MAP50, 1_000_000):
                out[x.run_id][int(x.metric.step)] = float(x.metric.value)
            return out
        except (NotImplementedError, AttributeError):
            pass
    for rid in run_ids:
        for m in client.get_metric_history(rid, K.VAL_MAP50):
            out[rid][int(m.step)] = float(m.value)
    return out


def _progress(total: int, enabled: bool):
    from contextlib import nullcontext

    if not enabled or total < PROGRESS_MIN_RUNS:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)


def _sql_store(client):
    """The client's SqlAlchemyStore (sqlite, postgres, mysql...), or None for other stores (HTTP)."""
    store = _store(client)
    return store if hasattr(store, "ManagedSessionMaker") and hasattr(store, "engine") else None


def _sql_windows(store, key: str, windows: dict[str, tuple[int, int, int]],
                advance=None) -> dict[str, list[tuple[int, int, float]]]:
    """Fast path for SQL stores: for each run, (step, timestamp ms, value) of `key` with lo <= step <= hi and
    (step - lo) % stride == 0 -- a plain range scan on MLflow's (run_uuid, key, step) index, rows
    read as tuples in one session. MLflow's own sampling API builds ORM entities and window-function
    subqueries per run (~25 ms each), which at 100 runs is most of compare-runs' time."""
    from sqlalchemy import select
    from mlflow.store.tracking.dbmodels.models import SqlMetric

    out: dict[str, list[tuple[int, int, float]]] = {}
    with store.ManagedSessionMaker() as session:
        for rid, (lo, hi, stride) in windows.items():
            q = select(SqlMetric.step, SqlMetric.timestamp, SqlMetric.value).where(
                SqlMetric.run_uuid == rid, SqlMetric.key == key, SqlMetric.step >= lo, SqlMetric.step <= hi,
                SqlMetric.is_nan.is_(False))
            if stride > 1:
                q = q.where((SqlMetric.step - lo) % stride == 0)
            out[rid] = sorted((int(a), int(b), float(c)) for a, b, c in session.execute(q).all())
            if advance:
                advance()
    return out


def load_series(client, records: Sequence[RunRecord], plan: dict[str, set[str]], policy=None,
                progress: bool = True) -> None:
    """Fill the planned series into `records` (in place)."""
    by_id = {r.run_id: r for r in records}
    map_ids = [rid for rid, need in plan.items() if NEED_MAP50 in need]
    mem_ids = [rid for rid, need in plan.items() if NEED_MEMORY in need]
    with _progress(len(mem_ids), progress) as bar:
        task = bar.add_task("memory series", total=len(mem_ids)) if bar else None
        advance = (lambda: bar.advance(task)) if bar else None
        sql = _sql_store(client)
        if sql is not None:
            try:
                if map_ids:
                    last = policy.map_late_epochs[1] if policy is not None else 10**9
                    got = _sql_windows(sql, K.VAL_MAP50, {rid: (0, last, 1) for rid in map_ids})
                    for rid, rows in got.items():
                        by_id[rid].map50 = {step: v for step, _, v in rows}
                windows = {}
                for rid in mem_ids:
                    n = by_id[rid].memory_samples or 0
                    lo, hi = n // 2, n - 1
                    windows[rid] = (lo, hi, max(1, math.ceil((hi - lo + 1) / MEMORY_POINTS)))
                for rid, rows in _sql_windows(sql, K.MEMORY_USED_GIB, windows, advance).items():
                    by_id[rid].memory_steady = [(ts / 1000.0, v) for _, ts, v in rows]
                return
            except Exception:  # an MLflow whose schema moved on: take the public API below
                for r in records:
                    r.map50 = r.memory_steady = None
                if bar:
                    bar.reset(task)
        if map_ids:
            for rid, series in map50_histories(client, map_ids).items():
                by_id[rid].map50 = series
        for rid in mem_ids:
            r = by_id[rid]
            n = r.memory_samples or 0
            pts = sampled_history(client, rid, K.MEMORY_USED_GIB, MEMORY_POINTS, n // 2, n - 1)
            r.memory_steady = [(m.timestamp / 1000.0, float(m.value)) for m in pts if math.isfinite(m.value)]
            if advance:
                advance()

def split_evidence(records: Sequence[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
    """(candidates, probes): a probe is a few batches long, so it informs the memory fit but is
    never judged as if it were a finished training."""
    probes = [r for r in records if r.run_kind == K.RUN_KIND_PROBE]
    return [r for r in records if r.run_kind != K.RUN_KIND_PROBE], probes


def load_records(client, run_ids: Sequence[str] = (), experiment: str | None = None,
                 filter_string: str | None = None, policy=None, progress: bool = True) -> list[RunRecord]:
    """Records of the runs asked for, with the series `policy`'s reasons need."""
    runs = find_runs(client, run_ids, experiment, filter_string)
    records = [record_from_run(r) for r in runs]
    if policy is not None:
        load_series(client, records, plan_fetch(records, policy), policy, progress=progress)
    return records


def to_frame(records: Iterable[RunRecord]):
    """One row per run (pandas), series left out."""
    import dataclasses

    import pandas as pd

    rows = []
    for r in records:
        d = dataclasses.asdict(r)
        d.pop("map50")
        d.pop("memory_steady")
        rows.append(d)
    return pd.DataFrame(rows).set_index("run_id") if rows else pd.DataFrame()


def plot_series(client, records: Sequence[RunRecord]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """For --plot: per run, memory (hours since start, GiB), s/batch (batch, s) and mAP50 (epoch, value),
    each sampled to at most PLOT_POINTS."""
    out = {}
    maps = map50_histories(client, [r.run_id for r in records])
    for r in records:
        start = r.start_time_s or 0.0
        mem = sampled_history(client, r.run_id, K.MEMORY_USED_GIB, PLOT_POINTS)
        step = sampled_history(client, r.run_id, K.BATCH_STEP_S, PLOT_POINTS)
        out[r.run_id] = {
            "memory": [((m.timestamp / 1000.0 - start) / 3600.0, m.value) for m in mem],
            "step_s": [(m.step, m.value) for m in step],
            "map50": sorted(maps.get(r.run_id, {}).items()),
        }
    return out
