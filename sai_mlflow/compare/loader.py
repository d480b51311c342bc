"""Tracking store -> run records for compare-runs: summaries and tags first, series only where a reason needs them.

One search (or a read per id) gives every run's tags and latest metrics, which is all most reasons
need (`summary/*` is refreshed at every epoch end). The latest-metric table also tells how far the
per-epoch mAP50 got and how many memory samples exist, so `decision.plan_fetch` can ask for exactly:
- `val/mAP50` per epoch (a hundred-odd points), for runs that reached the later window;
- the steady-state half of `memory/used_gib`, sampled to at most `MEMORY_POINTS` points by MLflow's
  own rule (`sample_indices`), for runs with enough samples to judge a leak.
The store is read by a `backend.read_api.RunReader`: SQL directly, an `mlflow server`'s REST API, else
MLflow's client; all three give the same rows and keep the same points. Functions here take a reader, a
tracking URI or an `MlflowClient` (`as_reader`).
Runs of kind `train`, `import` and `replay` are treated alike. `probe` runs (a few batches long)
are evidence, never candidates: `split_evidence` sets them apart so that they only add points to the
memory fit; `probe_session` parents (no figures of their own) and `decision` runs (compare-runs' own
reports) are left out of an experiment listing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

from .. import keys as K
from ..backend.read_api import MAX_POINTS, BadFilter, NotFound, ReadError, Rows, RunRow, Window, sample_indices  # noqa: F401
from ..importers import ultralytics_mapping as U
from ..telemetry.steady_memory import STEADY_POINTS
from .decision import NEED_MAP50, NEED_MEMORY, plan_fetch
from .record import RunRecord, parse_int, record_from_keys

MEMORY_POINTS = STEADY_POINTS
PLOT_POINTS = 1500
PROGRESS_MIN_RUNS = 10
BULK_MAX_RESULTS = MAX_POINTS


class InputError(ValueError):
    """Bad input to compare-runs (unknown run or experiment, no runs, bad filter): exit 2."""


def as_reader(source):
    """A RunReader for a reader, a tracking URI or an MlflowClient (the fast reader for its URI when
    there is one; one per client)."""
    from ..backend.read_choice import reader_for

    if isinstance(source, str):
        return reader_for(source)
    if hasattr(source, "series") and hasattr(source, "search"):
        return source
    reader = getattr(source, "_sai_reader", None)
    if reader is None:
        reader = reader_for(source.tracking_uri, client=source)
        try:
            source._sai_reader = reader
        except AttributeError:
            pass
    return reader


# --- finding runs ------------------------------------------------------------------------------

def find_runs(source, run_ids: Sequence[str] = (), experiment: str | None = None,
              filter_string: str | None = None) -> list[RunRow]:
    """Runs in the order listed: ids as given, else the experiment's by start time."""
    reader = as_reader(source)
    if run_ids:
        try:
            return reader.runs(list(dict.fromkeys(run_ids)))
        except NotFound as e:
            raise InputError(f"unknown run id '{e}' in {reader.uri}") from None
        except ReadError as e:
            raise InputError(str(e)) from None

    exp_id = reader.experiment_id(experiment) if experiment else None
    if exp_id is None:
        known = sorted(reader.experiment_names())
        hint = f" (experiments here: {', '.join(known)})" if known else " (this store has no experiments)"
        raise InputError(f"no experiment named '{experiment}' in {reader.uri}{hint}")
    try:
        runs = reader.search(exp_id, filter_string or "")
    except BadFilter as e:
        raise InputError(f"bad --filter {filter_string!r}: {e}") from None
    runs = [r for r in runs if r.tags.get(K.TAG_RUN_KIND) not in (K.RUN_KIND_PROBE_SESSION, K.RUN_KIND_DECISION)]
    if not runs:
        what = f" matching {filter_string!r}" if filter_string else ""
        raise InputError(f"experiment '{experiment}' has no runs{what}")
    return runs


_SAFE_TAG_VALUE = re.compile(r"^[\w.\-/ :]+$")


def search_runs(client, experiment_ids: Sequence[str], filter_string: str = "", order_by=None,
                tag_equals: dict[str, Any] | None = None) -> Iterator:
    """Every run (MLflow Run objects) of the experiments matching the filter, page by page (MLflow pages at 1000).

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

def _row(run) -> RunRow:
    if isinstance(run, RunRow):
        return run
    from ..backend.read_mlflow import row_of

    return row_of(run)


def record_from_run(run) -> RunRecord:
    """A RunRow (any reader) or an MLflow Run -> its RunRecord (compare/record.py's factory), plus what the
    latest-step table tells about its series: how far val/mAP50 got and how many memory samples exist."""
    run = _row(run)
    tags, m, latest = run.tags, run.metrics, run.steps
    if U.is_native_run(tags, run.params, m):
        return _native_record(run, latest)
    mem = latest.get(K.MEMORY_USED_GIB)
    mapm = latest.get(K.VAL_MAP50)
    return record_from_keys(
        run.run_id, tags, m, run_name=run.run_name, status=run.status, experiment_id=run.experiment_id,
        map50_last_epoch=(mapm if mapm is not None
                          else parse_int(m.get(K.SUMMARY_EPOCHS_COMPLETED)) if not latest and K.VAL_MAP50 in m
                          else None),
        memory_samples=mem + 1 if mem is not None else None,
    )


def _native_record(run: RunRow, latest: dict[str, int]) -> RunRecord:
    """A run Ultralytics' own MLflow callback logged, from its params (the trainer arguments) and the
    latest step of its per-epoch metrics; the series and results.csv are read by `load_native`."""
    p = run.params
    last = latest.get(U.NATIVE_EPOCH_KEY)
    mapm = latest.get(U.NATIVE_MAP50)
    return record_from_keys(
        run.run_id, {**U.identity_tags(p), K.TAG_RUN_KIND: K.RUN_KIND_ULTRALYTICS}, {},
        run_name=run.run_name, status=run.status,
        epochs_completed=last + 1 if last is not None else None, epochs_planned=U.planned_epochs(p),
        map50_last_epoch=min(mapm, last) + 1 if mapm is not None and last is not None else None,
    )


def _results_csv(reader, run_id: str) -> list[dict[str, float]] | None:
    """The run's results.csv artifact, parsed; None when it has none (a run that did not finish)."""
    text = reader.artifact_text(run_id, U.RESULTS_CSV)
    if text is None:
        return None
    try:
        return U.parse_results(text)
    except U.UltralyticsError:
        return None


def load_native(source, records: Sequence[RunRecord]) -> None:
    """Fill what Ultralytics-native runs hold (in place): mAP50 per 1-based epoch from `metrics/mAP50B`
    without the final best.pt validation, its best, and the projected time from results.csv."""
    native = [r for r in records if r.run_kind == K.RUN_KIND_ULTRALYTICS]
    if not native:
        return
    reader = as_reader(source)
    series = fetch_series(reader, U.NATIVE_MAP50, {r.run_id: None for r in native}, BULK_MAX_RESULTS)
    for r in native:
        last = r.epochs_completed - 1 if r.epochs_completed else None
        r.map50 = U.per_epoch({s: v for s, _, v in _finite(series.get(r.run_id, []))}, last)
        r.map50_last_epoch = max(r.map50, default=None)
        r.best_map50 = max(r.map50.values(), default=None)
        rows = _results_csv(reader, r.run_id)
        times = U.cumulative_times(rows or [])
        if times:
            r.epochs_completed = float(len(times))
            r.eta_full_s = U.projected_time_s(U.epoch_durations(times), r.epochs_planned)


# --- series: one sampling rule, three readers (backend/read_*.py) ---------------------------------

def fetch_series(source, key: str, windows: dict[str, Window], max_points: int, advance=None) -> dict[str, Rows]:
    """`key` of each run within its window, sampled to <= max_points by MLflow's rule, by the store's reader."""
    if not windows:
        return {}
    return as_reader(source).series(key, windows, max(1, min(int(max_points), MAX_POINTS)), advance)


def _finite(rows: Rows) -> Rows:
    return [x for x in rows if math.isfinite(x[2])]


def sampled_history(source, run_id: str, key: str, max_points: int) -> Rows:
    """One run's whole series of `key`, sampled to <= max_points."""
    return _finite(fetch_series(source, key, {run_id: None}, max_points)[run_id])


def map50_histories(source, run_ids: Sequence[str], last_epoch: int | None = None) -> dict[str, dict[int, float]]:
    """Per-epoch val/mAP50 of several runs (epochs up to `last_epoch`, else all)."""
    win = (0, last_epoch) if last_epoch is not None else None
    got = fetch_series(source, K.VAL_MAP50, {rid: win for rid in run_ids}, BULK_MAX_RESULTS)
    return {rid: {s: v for s, _, v in _finite(rows)} for rid, rows in got.items()}


def _progress(total: int, enabled: bool):
    from contextlib import nullcontext

    if not enabled or total < PROGRESS_MIN_RUNS:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)


def load_series(source, records: Sequence[RunRecord], plan: dict[str, set[str]], policy=None,
                progress: bool = True) -> None:
    """Fill the planned series into `records` (in place): each series read once, sampled by one rule."""
    by_id = {r.run_id: r for r in records}
    map_ids = [rid for rid, need in plan.items() if NEED_MAP50 in need]
    mem_ids = [rid for rid, need in plan.items() if NEED_MEMORY in need]
    if map_ids:
        last = policy.map_late_epochs[1] if policy is not None else None
        for rid, series in map50_histories(source, map_ids, last).items():
            by_id[rid].map50 = series
    windows = {}
    for rid in mem_ids:
        n = by_id[rid].memory_samples or 0
        windows[rid] = (n // 2, n - 1)
    with _progress(len(mem_ids), progress) as bar:
        task = bar.add_task("memory series", total=len(mem_ids)) if bar else None
        advance = (lambda: bar.advance(task)) if bar else None
        for rid, rows in fetch_series(source, K.MEMORY_USED_GIB, windows, MEMORY_POINTS, advance).items():
            by_id[rid].memory_steady = [(ts / 1000.0, v) for _, ts, v in _finite(rows)]


def split_evidence(records: Sequence[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
    """(candidates, probes): a probe is a few batches long, so it informs the memory fit but is
    never judged as if it were a finished training."""
    probes = [r for r in records if r.run_kind == K.RUN_KIND_PROBE]
    return [r for r in records if r.run_kind != K.RUN_KIND_PROBE], probes


def load_records(source, run_ids: Sequence[str] = (), experiment: str | None = None,
                 filter_string: str | None = None, policy=None, progress: bool = True) -> list[RunRecord]:
    """Records of the runs asked for, with the series `policy`'s reasons need (`source`: see `as_reader`)."""
    reader = as_reader(source)
    return records_of(reader, find_runs(reader, run_ids, experiment, filter_string), policy, progress)


def records_of(source, runs, policy=None, progress: bool = False) -> list[RunRecord]:
    """Records of RunRows (or MLflow Run objects), with what Ultralytics-native runs hold and the series
    `policy`'s reasons need."""
    reader = as_reader(source)
    records = [record_from_run(r) for r in runs]
    load_native(reader, records)
    if policy is not None:
        load_series(reader, records, plan_fetch(records, policy), policy, progress=progress)
    return records


def plot_series(source, records: Sequence[RunRecord]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """For --plot: per run, memory (hours since its first sample, GiB), s/batch (batch, s) and mAP50
    (epoch, value), each sampled to at most PLOT_POINTS."""
    out = {}
    reader = as_reader(source)
    maps = map50_histories(reader, [r.run_id for r in records if r.run_kind != K.RUN_KIND_ULTRALYTICS])
    for r in records:
        mem = sampled_history(reader, r.run_id, K.MEMORY_USED_GIB, PLOT_POINTS)
        start = min((ts for _, ts, _ in mem), default=0) / 1000.0
        step = sampled_history(reader, r.run_id, K.BATCH_STEP_S, PLOT_POINTS)
        out[r.run_id] = {
            "memory": [((ts / 1000.0 - start) / 3600.0, v) for _, ts, v in mem],
            "step_s": [(s, v) for s, _, v in step],
            "map50": sorted((maps.get(r.run_id) or r.map50 or {}).items()),
        }
    return out
