"""MLflow -> run records for compare-runs: summaries and tags first, series only where a reason needs them.

One `search_runs` (or `get_run` per id) gives every run's tags and latest metrics, which is all
most reasons need (`summary/*` is refreshed at every epoch end). The latest-metric table also
tells how far the per-epoch mAP50 got and how many memory samples exist, so
`decision.plan_fetch` can ask for exactly:
- `val/mAP50` per epoch (a hundred-odd points), for runs that reached the later window;
- the steady-state half of `memory/used_gib`, sampled to at most `MEMORY_POINTS` points by MLflow's
  own rule (`sample_indices`), for runs with enough samples to judge a leak.
Series are read directly from SQL stores, through an `mlflow server`'s bulk endpoint (sampled in SQL
on the server, 100 runs a request), else through the public API; all three keep the same points.
Runs of kind `train`, `import` and `replay` are treated alike. `probe` runs (a few batches long)
are evidence, never candidates: `split_evidence` sets them apart so that they only add points to the
memory fit; `probe_session` parents (no figures of their own) and `decision` runs (compare-runs' own
reports) are left out of an experiment listing.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .. import keys as K
from ..importers import ultralytics_mapping as U
from ..tracking.mlflow_errors import is_not_found
from .decision import NEED_MAP50, NEED_MEMORY, plan_fetch
from .record import RunRecord, parse_int, record_from_keys

MEMORY_POINTS = 200
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
    runs = [r for r in runs if r.data.tags.get(K.TAG_RUN_KIND) not in (K.RUN_KIND_PROBE_SESSION, K.RUN_KIND_DECISION)]
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

def record_from_run(run) -> RunRecord:
    """An MLflow Run -> its RunRecord (compare/record.py's factory), plus what the latest-metric table
    tells about its series: how far val/mAP50 got and how many memory samples exist."""
    tags, m = run.data.tags, run.data.metrics
    latest = {x.key: x for x in getattr(run.data, "_metric_objs", [])}
    if U.is_native_run(tags, run.data.params, m):
        return _native_record(run, latest)
    mem = latest.get(K.MEMORY_USED_GIB)
    mapm = latest.get(K.VAL_MAP50)
    return record_from_keys(
        run.info.run_id, tags, m, run_name=run.info.run_name, status=run.info.status,
        experiment_id=run.info.experiment_id,
        map50_last_epoch=(int(mapm.step) if mapm is not None
                          else parse_int(m.get(K.SUMMARY_EPOCHS_COMPLETED)) if not latest and K.VAL_MAP50 in m
                          else None),
        memory_samples=int(mem.step) + 1 if mem is not None else None,
    )


def _native_record(run, latest: dict) -> RunRecord:
    """A run Ultralytics' own MLflow callback logged, from its params (the trainer arguments) and the
    latest step of its per-epoch metrics; the series and results.csv are read by `load_native`."""
    p = run.data.params
    trained = latest.get(U.NATIVE_EPOCH_KEY)
    mapm = latest.get(U.NATIVE_MAP50)
    last = int(trained.step) if trained is not None else None
    return record_from_keys(
        run.info.run_id, {**U.identity_tags(p), K.TAG_RUN_KIND: K.RUN_KIND_ULTRALYTICS}, {},
        run_name=run.info.run_name, status=run.info.status,
        epochs_completed=last + 1 if last is not None else None, epochs_planned=U.planned_epochs(p),
        map50_last_epoch=min(int(mapm.step), last) + 1 if mapm is not None and last is not None else None,
    )


def _results_csv(client, run_id: str) -> list[dict[str, float]] | None:
    """The run's results.csv artifact, parsed; None when it has none (a run that did not finish)."""
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="sai_results_") as tmp:
        try:
            path = client.download_artifacts(run_id, U.RESULTS_CSV, tmp)
            return U.read_results(path)
        except (MlflowException, OSError, U.UltralyticsError):
            return None


def load_native(client, records: Sequence[RunRecord]) -> None:
    """Fill what Ultralytics-native runs hold (in place): mAP50 per 1-based epoch from `metrics/mAP50B`
    without the final best.pt validation, its best, and the projected time from results.csv."""
    native = [r for r in records if r.run_kind == K.RUN_KIND_ULTRALYTICS]
    if not native:
        return
    series = fetch_series(client, U.NATIVE_MAP50, {r.run_id: None for r in native}, BULK_MAX_RESULTS)
    for r in native:
        last = r.epochs_completed - 1 if r.epochs_completed else None
        r.map50 = U.per_epoch({s: v for s, _, v in _finite(series.get(r.run_id, []))}, last)
        r.map50_last_epoch = max(r.map50, default=None)
        r.best_map50 = max(r.map50.values(), default=None)
        rows = _results_csv(client, r.run_id)
        times = U.cumulative_times(rows or [])
        if times:
            r.epochs_completed = float(len(times))
            r.eta_full_s = U.projected_time_s(U.epoch_durations(times), r.epochs_planned)


# --- series: one sampling rule, three readers -------------------------------------------------------

Rows = list[tuple[int, int, float]]  # (step, timestamp ms, value), ordered; NaN kept as nan
Window = tuple[int, int] | None      # steps [lo, hi], None = the whole series

BULK_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
BULK_MAX_RUNS = 100        # the server's limit of run ids per request
BULK_MAX_RESULTS = 2500    # the server's limit of points per run
BULK_PARALLEL = 8          # requests in flight at once
SQL_RUNS = 25             # runs per SQL round trip (SQLite allows 500 terms in a UNION)
BULK_MIN_RUNS = 5          # fewer runs a request would cost more in round trips than it saves
_said: set[str] = set()


def _say_once(message: str) -> None:
    """A note on stderr, once per process (the loader is the edge that knows; the CLI stays thin)."""
    if message not in _said:
        _said.add(message)
        print(f"Note: {message}", file=sys.stderr)


def sample_indices(n: int, max_points: int) -> list[int]:
    """Which of `n` ordered rows MLflow's own sampler keeps: the first row of each of NTILE(max_points)
    buckets, with the last row always kept (`SqlAlchemyStore.get_metric_history_bulk_interval`, which
    the server's bulk endpoint runs). Every reader below keeps exactly these rows, so a verdict never
    depends on the kind of store."""
    if n <= max_points:
        return list(range(n))
    q, r = divmod(n, max_points)
    picks = [i * (q + 1) if i < r else r * (q + 1) + (i - r) * q for i in range(max_points)]
    picks[-1] = n - 1
    return picks


def _ordered(rows) -> Rows:
    return sorted(((int(s), int(t), float(v)) for s, t, v in rows),
                  key=lambda x: (x[0], x[1], x[2] if math.isfinite(x[2]) else math.inf))


def _store(client):
    tc = getattr(client, "_tracking_client", None)
    return getattr(tc, "store", None)


def _sql_store(client):
    """The client's SqlAlchemyStore (sqlite, postgres, mysql...), or None for other stores (HTTP)."""
    store = _store(client)
    return store if hasattr(store, "ManagedSessionMaker") and hasattr(store, "engine") else None


def _rest_store(client):
    """The client's RestStore (an `mlflow server`), or None."""
    store = _store(client)
    return store if hasattr(store, "get_host_creds") and _sql_store(client) is None else None


def _sql_series(store, key: str, windows: dict[str, Window], max_points: int, advance=None) -> dict[str, Rows]:
    """Direct SQL stores, `SQL_RUNS` runs a round trip: a count per run on MLflow's (run_uuid, key, step)
    index, then only the rows the sampling rule keeps. When a window holds one row per step (every
    series this project logs) those rows are found by arithmetic on the step; otherwise MLflow's own
    sampler is asked. (MLflow's sampler alone builds ORM entities and window-function subqueries,
    ~25 ms a run; a round trip per query costs as much again on a busy database host.)"""
    from sqlalchemy import and_, func, literal, or_, select, union_all
    from mlflow.store.tracking.dbmodels.models import SqlMetric as M

    def where(rid: str, win: Window) -> list:
        w = [M.run_uuid == rid, M.key == key]
        return w + [M.step >= win[0], M.step <= win[1]] if win is not None else w

    def run(selects: list):
        return [] if not selects else (selects[0] if len(selects) == 1 else union_all(*selects))

    out: dict[str, Rows] = {}
    items = list(windows.items())
    with store.ManagedSessionMaker() as session:
        for i in range(0, len(items), SQL_RUNS):
            chunk = items[i:i + SQL_RUNS]
            counts = run([select(literal(rid).label("rid"), func.count(), func.count(M.step.distinct()),
                                 func.min(M.step), func.max(M.step)).where(*where(rid, win)) for rid, win in chunk])
            stats = {row[0]: row[1:] for row in session.execute(counts)}
            selects, keep, by_mlflow = [], {}, []
            for rid, win in chunk:
                n, distinct, lo, hi = stats[rid]
                cols = select(literal(rid).label("rid"), M.step, M.timestamp, M.value, M.is_nan)
                if not n:
                    continue
                if n <= max_points:
                    selects.append(cols.where(*where(rid, win)))
                elif n == distinct == hi - lo + 1:
                    q, r = divmod(n, max_points)
                    a, k = r * (q + 1), M.step - lo
                    selects.append(cols.where(*where(rid, win), or_(
                        and_(k < a, k % (q + 1) == 0), and_(k >= a, (k - a) % q == 0), M.step == hi)))
                    keep[rid] = {lo + j for j in sample_indices(n, max_points)}
                else:
                    by_mlflow.append((rid, win))
            got: dict[str, list] = {}
            if selects:
                for rid, step, ts, value, nan in session.execute(run(selects)):
                    if rid not in keep or step in keep[rid]:
                        got.setdefault(rid, []).append((step, ts, math.nan if nan else value))
            for rid, win in by_mlflow:
                got[rid] = [(x.step, x.timestamp, x.value) for x in
                            store.get_metric_history_bulk_interval([rid], key, max_points, *(win or (None, None)))]
            for rid, _ in chunk:
                out[rid] = _ordered(got.get(rid, []))
                if advance:
                    advance()
    return out


def _rest_series(store, key: str, windows: dict[str, Window], max_points: int, advance=None) -> dict[str, Rows] | None:
    """An `mlflow server`: its bulk endpoint samples in SQL, up to 100 runs a request, each series read
    once, with the client's own credentials (MLflow's request helper and host creds). None when the
    server predates the endpoint."""
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.utils.rest_utils import http_request, verify_rest_response

    groups: dict[Window, list[str]] = {}
    for rid, win in windows.items():
        groups.setdefault(win, []).append(rid)
    # a few requests side by side: a server with several workers samples them in parallel
    size = max(BULK_MIN_RUNS, min(BULK_MAX_RUNS, math.ceil(len(windows) / BULK_PARALLEL)))
    requests = [(win, rids[i:i + size]) for win, rids in groups.items() for i in range(0, len(rids), size)]

    def one(req):
        win, rids = req
        params = [("run_ids", r) for r in rids] + [("metric_key", key), ("max_results", str(max_points))]
        if win is not None:
            params += [("start_step", str(win[0])), ("end_step", str(win[1]))]
        resp = http_request(store.get_host_creds(), BULK_ENDPOINT, "GET", params=params)
        if resp.status_code == 404:
            return None
        verify_rest_response(resp, BULK_ENDPOINT)
        got: dict[str, list] = {r: [] for r in rids}
        for m in resp.json().get("metrics", []):
            got.setdefault(m["run_id"], []).append((m.get("step", 0), m.get("timestamp", 0), m.get("value", 0.0)))
        if advance:
            for _ in rids:
                advance()
        return got

    out: dict[str, Rows] = {}
    with ThreadPoolExecutor(max_workers=min(BULK_PARALLEL, len(requests) or 1)) as pool:
        for got in pool.map(one, requests):
            if got is None:
                return None
            out.update({rid: _ordered(rows) for rid, rows in got.items()})
    return out


def _public_series(client, key: str, windows: dict[str, Window], max_points: int, advance=None) -> dict[str, Rows]:
    """Any other store (or an old server): full histories through the public API, sampled here by the same rule."""
    out: dict[str, Rows] = {}
    for rid, win in windows.items():
        rows = _ordered((m.step, m.timestamp, m.value) for m in client.get_metric_history(rid, key)
                        if win is None or win[0] <= m.step <= win[1])
        out[rid] = [rows[i] for i in sample_indices(len(rows), max_points)]
        if advance:
            advance()
    return out


def fetch_series(client, key: str, windows: dict[str, Window], max_points: int, advance=None) -> dict[str, Rows]:
    """`key` of each run within its window, sampled to <= max_points by MLflow's rule, from the fastest
    reader the store offers: SQL directly, a server's bulk endpoint, else the public API."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    if not windows:
        return {}
    max_points = max(1, min(int(max_points), BULK_MAX_RESULTS))
    sql = _sql_store(client)
    if sql is not None:
        try:
            return _sql_series(sql, key, windows, max_points, advance)
        except (SQLAlchemyError, MlflowException) as e:  # a schema this MLflow no longer has: the public API
            _say_once(f"reading series through MLflow's API instead of SQL ({type(e).__name__})")
    rest = _rest_store(client)
    if rest is not None:
        got = _rest_series(rest, key, windows, max_points, advance)
        if got is not None:
            return got
        _say_once(f"{client.tracking_uri} has no sampled-history endpoint (an MLflow server older than 2.x); "
                  f"reading full histories instead, which is slower")
    return _public_series(client, key, windows, max_points, advance)


def _finite(rows: Rows) -> Rows:
    return [x for x in rows if math.isfinite(x[2])]


def sampled_history(client, run_id: str, key: str, max_points: int) -> Rows:
    """One run's whole series of `key`, sampled to <= max_points."""
    return _finite(fetch_series(client, key, {run_id: None}, max_points)[run_id])


def map50_histories(client, run_ids: Sequence[str], last_epoch: int | None = None) -> dict[str, dict[int, float]]:
    """Per-epoch val/mAP50 of several runs (epochs up to `last_epoch`, else all)."""
    win = (0, last_epoch) if last_epoch is not None else None
    got = fetch_series(client, K.VAL_MAP50, {rid: win for rid in run_ids}, BULK_MAX_RESULTS)
    return {rid: {s: v for s, _, v in _finite(rows)} for rid, rows in got.items()}


def _progress(total: int, enabled: bool):
    from contextlib import nullcontext

    if not enabled or total < PROGRESS_MIN_RUNS:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)


def load_series(client, records: Sequence[RunRecord], plan: dict[str, set[str]], policy=None,
                progress: bool = True) -> None:
    """Fill the planned series into `records` (in place): each series read once, sampled by one rule."""
    by_id = {r.run_id: r for r in records}
    map_ids = [rid for rid, need in plan.items() if NEED_MAP50 in need]
    mem_ids = [rid for rid, need in plan.items() if NEED_MEMORY in need]
    if map_ids:
        last = policy.map_late_epochs[1] if policy is not None else None
        for rid, series in map50_histories(client, map_ids, last).items():
            by_id[rid].map50 = series
    windows = {}
    for rid in mem_ids:
        n = by_id[rid].memory_samples or 0
        windows[rid] = (n // 2, n - 1)
    with _progress(len(mem_ids), progress) as bar:
        task = bar.add_task("memory series", total=len(mem_ids)) if bar else None
        advance = (lambda: bar.advance(task)) if bar else None
        for rid, rows in fetch_series(client, K.MEMORY_USED_GIB, windows, MEMORY_POINTS, advance).items():
            by_id[rid].memory_steady = [(ts / 1000.0, v) for _, ts, v in _finite(rows)]


def split_evidence(records: Sequence[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
    """(candidates, probes): a probe is a few batches long, so it informs the memory fit but is
    never judged as if it were a finished training."""
    probes = [r for r in records if r.run_kind == K.RUN_KIND_PROBE]
    return [r for r in records if r.run_kind != K.RUN_KIND_PROBE], probes


def load_records(client, run_ids: Sequence[str] = (), experiment: str | None = None,
                 filter_string: str | None = None, policy=None, progress: bool = True) -> list[RunRecord]:
    """Records of the runs asked for, with the series `policy`'s reasons need."""
    return records_of(client, find_runs(client, run_ids, experiment, filter_string), policy, progress)


def records_of(client, runs, policy=None, progress: bool = False) -> list[RunRecord]:
    """Records of MLflow Run objects, with what Ultralytics-native runs hold and the series `policy`'s reasons need."""
    records = [record_from_run(r) for r in runs]
    load_native(client, records)
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
    """For --plot: per run, memory (hours since its first sample, GiB), s/batch (batch, s) and mAP50
    (epoch, value), each sampled to at most PLOT_POINTS."""
    out = {}
    maps = map50_histories(client, [r.run_id for r in records if r.run_kind != K.RUN_KIND_ULTRALYTICS])
    for r in records:
        mem = sampled_history(client, r.run_id, K.MEMORY_USED_GIB, PLOT_POINTS)
        start = min((ts for _, ts, _ in mem), default=0) / 1000.0
        step = sampled_history(client, r.run_id, K.BATCH_STEP_S, PLOT_POINTS)
        out[r.run_id] = {
            "memory": [((ts / 1000.0 - start) / 3600.0, v) for _, ts, v in mem],
            "step_s": [(s, v) for s, _, v in step],
            "map50": sorted((maps.get(r.run_id) or r.map50 or {}).items()),
        }
    return out
