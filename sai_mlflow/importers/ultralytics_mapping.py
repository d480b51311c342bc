"""What Ultralytics' own records tell, in the contract's terms: written once for both readers.

- `import-ultralytics` reads a run dir: args.yaml + results.csv + weights/;
- compare-runs and promote read runs logged by Ultralytics' own MLflow callback (`run_kind`
  shown as `ultralytics`): every trainer argument as a param (a string), per-epoch metrics named
  like results.csv's columns with the parentheses stripped (`metrics/mAP50B`) at step = 0-based
  epoch plus one more step for the final validation of best.pt, and the artifacts results.csv,
  args.yaml and weights/.

Both hold the same facts: the requested batch, cache mode, model, imgsz and data.yaml (tmpfs is
known when that path resolves on this machine), the mAP per epoch, and the cumulative wall time at
each epoch end (results.csv's `time` column, validation included). Neither holds memory, per-batch
speed, the GPU or the batch trained after Ultralytics' first-epoch OOM halving: those stay unknown.
"""

from __future__ import annotations

import ast
import csv
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import keys as K
from ..telemetry.stats import median
from ..ultralytics_args import cache_mode, train_imgsz

RESULTS_CSV = "results.csv"
BEST_WEIGHTS = "weights/best.pt"
RESULTS_MAP50 = "metrics/mAP50(B)"
RESULTS_MAP50_95 = "metrics/mAP50-95(B)"


def native_key(column: str) -> str:
    """The name Ultralytics' MLflow callback logs a results column under (parentheses stripped)."""
    return column.replace("(", "").replace(")", "")


NATIVE_MAP50 = native_key(RESULTS_MAP50)          # metrics/mAP50B
NATIVE_EPOCH_KEY = K.TRAIN_LOSSES[0]              # train/box_loss: logged once per trained epoch only


class UltralyticsError(ValueError):
    """A results.csv that is not one."""


# --- trainer arguments ----------------------------------------------------------------------------

def arg_value(v: Any) -> Any:
    """A trainer argument as Ultralytics had it: params are strings (`"True"`, `"[640, 480]"`)."""
    if not isinstance(v, str):
        return v
    try:
        return ast.literal_eval(v.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return v.strip()


def batch(v: Any) -> int | None:
    """The requested batch; None for AutoBatch (-1) or a memory fraction (0.7)."""
    v = arg_value(v)
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1 and v == int(v) else None


def is_autobatch(x: Any) -> bool:
    """Ultralytics' AutoBatch request: -1 (its default share of device memory) or a fraction in (0, 1)."""
    return (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
            and (x == -1 or 0 < x < 1))


def batch_request(v: Any) -> int | float | None:
    """`batch` as requested: a whole number >= 1, or an AutoBatch request (-1, 0.7); None otherwise.
    Written as the `batch_size` tag as given, so the request is never lost; the batch trained with is
    `batch_size_effective` (AutoBatch's choice)."""
    v = arg_value(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    if v >= 1 and v == int(v):
        return int(v)
    return -1 if v == -1 else float(v) if is_autobatch(v) else None


def batch_text(x: int | float) -> str:
    """A batch request as a tag/cell: 128, -1, 0.7."""
    return str(int(x)) if float(x) == int(x) else f"{x:g}"


def device_count(v: Any) -> int | None:
    """Devices Ultralytics trains on for its `device` argument: "0,1,2,3" or [0, 1] -> DDP over that
    many; "0", "cuda:0", "cpu", "mps", -1 -> 1. None when not given (unknown)."""
    v = arg_value(v)
    if v is None or isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in ("", "none")):
        return None
    if isinstance(v, (list, tuple)):
        return len([x for x in v if str(x).strip()]) or None
    if isinstance(v, (int, float)):
        return 1
    parts = [p for p in str(v).strip().strip("[]()").split(",") if p.strip()]
    return len(parts) or None


def imgsz(v: Any) -> int | None:
    """The size trained at (ultralytics_args.train_imgsz), from a param string too."""
    return train_imgsz(arg_value(v))


def cache(v: Any) -> str:
    """The cache Ultralytics built (ultralytics_args.cache_mode), from a param string too."""
    return cache_mode(arg_value(v))


def model_name(v: Any) -> str | None:
    return Path(str(v)).name if v not in (None, "", "None") else None


@lru_cache(maxsize=64)
def data_on_tmpfs(data: str | None) -> bool | None:
    """Whether the data.yaml's training images live on a tmpfs, when that file resolves here; else None."""
    if not data or data == "None" or not Path(data).is_file():
        return None
    try:
        from ..data.audit import is_on_tmpfs
        from ..data.layout import resolve

        layout = resolve(data)
    except Exception:  # an unreadable or foreign data.yaml: unknown, never a guess
        return None
    train = layout.splits.get("train") or []
    return is_on_tmpfs(train[0] if train else layout.root)


def identity_tags(args: Mapping[str, Any]) -> dict[str, str]:
    """The contract tags the trainer arguments give: batch_size (as requested: AutoBatch's -1 or 0.7 too),
    devices (from `device`), cache_mode, model, imgsz, data_on_tmpfs."""
    tags: dict[str, str] = {}
    b = batch_request(args.get("batch"))
    if b is not None:
        tags[K.TAG_BATCH_SIZE] = batch_text(b)
    n = device_count(args.get("device"))
    if n is not None:
        tags[K.TAG_DEVICES] = str(n)
    if "cache" in args:
        tags[K.TAG_CACHE_MODE] = cache(args.get("cache"))
    m = model_name(args.get("model"))
    if m:
        tags[K.TAG_MODEL] = m
    s = imgsz(args.get("imgsz"))
    if s:
        tags[K.TAG_IMGSZ] = str(s)
    tmpfs = data_on_tmpfs(str(arg_value(args.get("data"))) if args.get("data") else None)
    if tmpfs is not None:
        tags[K.TAG_DATA_ON_TMPFS] = str(tmpfs).lower()
    return tags


def planned_epochs(args: Mapping[str, Any]) -> int | None:
    v = arg_value(args.get("epochs"))
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1 else None


# --- results.csv --------------------------------------------------------------------------------

def parse_results(text: str, where: str = RESULTS_CSV) -> list[dict[str, float]]:
    """results.csv rows as {column: float}; headers stripped (older versions pad them)."""
    reader = csv.reader(text.splitlines())
    header = [h.strip() for h in next(reader, [])]
    if "epoch" not in header:
        raise UltralyticsError(f"{where}: no 'epoch' column; not an Ultralytics results.csv")
    rows = []
    for line in reader:
        if not line or not any(c.strip() for c in line):
            continue
        row = {}
        for h, c in zip(header, line):
            try:
                row[h] = float(c)
            except ValueError:
                continue
        if "epoch" in row:
            rows.append(row)
    return rows


def read_results(path: str | Path) -> list[dict[str, float]]:
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UltralyticsError(f"{path}: not UTF-8 text (byte {e.start}); not an Ultralytics results.csv") from None
    return parse_results(text, str(path))


def cumulative_times(rows: Sequence[Mapping[str, float]]) -> list[float] | None:
    """The `time` column (seconds since training started, at each epoch end), when every row has a real,
    non-negative one; None otherwise (an impossible clock is not judged, never ranked)."""
    times = [r.get("time") for r in rows]
    return times if rows and all(t is not None and math.isfinite(t) and t >= 0 for t in times) else None


def epoch_durations(times: Sequence[float]) -> list[float]:
    """Per-epoch wall seconds (validation included) from cumulative times. A clock that goes back
    restarted (Ultralytics restarts it on --resume): that epoch took its own `time`."""
    out, prev = [], 0.0
    for t in times:
        out.append(t - prev if t >= prev else t)
        prev = t
    return out


def projected_time_s(durations: Sequence[float], planned: int | None) -> float | None:
    """All planned epochs at the median measured epoch: how imported and native runs are ranked."""
    return planned * median(durations) if durations and planned else None


# --- the callback's per-epoch series ---------------------------------------------------------------

def per_epoch(series: Mapping[int, float], last_epoch_step: int | None) -> dict[int, float]:
    """0-based epoch steps -> 1-based epochs, without the final validation of best.pt (logged one
    step after the last trained epoch, so beyond `last_epoch_step`, the latest `train/box_loss` step)."""
    if last_epoch_step is None:
        return {}
    return {int(s) + 1: v for s, v in series.items() if 0 <= int(s) <= last_epoch_step}


def is_native_run(tags: Mapping[str, str], params: Mapping[str, str], metric_keys) -> bool:
    """Logged by Ultralytics' own MLflow callback: no run_kind of ours, its metric or its arguments."""
    if tags.get(K.TAG_RUN_KIND):
        return False
    return NATIVE_MAP50 in metric_keys or {"imgsz", "batch", "data", "model"} <= set(params)
