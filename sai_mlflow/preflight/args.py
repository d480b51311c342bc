"""Ultralytics training arguments, normalised once for the checks; a bad value becomes a problem, never a raise."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..ultralytics_args import cache_ambiguous, cache_mode, train_imgsz

# Ultralytics' defaults for the arguments the checks read (ultralytics/cfg/default.yaml, 8.4).
ULTRALYTICS_DEFAULTS: dict[str, Any] = {
    "batch": 16, "imgsz": 640, "cache": False, "workers": 8, "device": None, "resume": False,
    "epochs": 100, "model": None, "data": None,
}


@dataclass
class Args:
    data: str | None = None
    batch: int | None = None  # None: AutoBatch or invalid
    batch_auto: bool = False
    imgsz_raw: Any = None
    imgsz: int | None = None  # what Ultralytics trains at (max side, rounded up to the stride)
    cache: str = "none"  # none | ram | disk
    cache_raw: Any = False
    workers: int | None = None
    cuda: list[int] | None = None  # CUDA indices; [] = CPU/MPS; None = auto (first GPU if any)
    device_raw: Any = None
    model: str | None = None
    resume: Any = False
    problems: list[str] = field(default_factory=list)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)



def _parse_device(value: Any) -> tuple[list[int] | None, str | None]:
    """(CUDA indices | [] for cpu/mps | None for auto, problem)."""
    if value is None or value == "":
        return None, None
    if _is_int(value):
        return (None, None) if value < 0 else ([value], None)
    if isinstance(value, (list, tuple)):
        if all(_is_int(v) for v in value) and value:
            return (None, None) if any(v < 0 for v in value) else (list(value), None)
        return None, f"device={value!r}: a list of CUDA indices, e.g. [0, 1]"
    if isinstance(value, str):
        v = value.strip().lower().replace("cuda:", "")
        if v in ("cpu", "mps") or v.startswith(("npu", "xpu", "mps")):
            return [], None
        parts = [p.strip() for p in v.split(",") if p.strip()]
        if parts and all(p.lstrip("-").isdigit() for p in parts):
            ids = [int(p) for p in parts]
            return (None, None) if any(i < 0 for i in ids) else (ids, None)
    return None, f"device={value!r}: use 0, '0,1', [0, 1], 'cpu' or 'mps'"


def normalise_args(args: Any) -> Args:
    a = Args()
    if not isinstance(args, dict):
        a.problems.append(f"train arguments must be a mapping, got {type(args).__name__}")
        args = {}
    get = lambda k: args.get(k, ULTRALYTICS_DEFAULTS.get(k))  # noqa: E731

    data = get("data")
    if data is not None and not isinstance(data, (str, os.PathLike)):
        a.problems.append(f"data={data!r}: the path of a data.yaml")
    elif data:
        a.data = os.fspath(data)

    batch = get("batch")
    if _is_int(batch) and batch >= 1:
        a.batch = batch
    elif batch == -1 or (isinstance(batch, float) and 0.0 < batch < 1.0):
        a.batch_auto = True
    elif isinstance(batch, float) and batch.is_integer() and batch >= 1:
        a.batch = int(batch)
    else:
        a.problems.append(f"batch={batch!r}: a positive integer, -1 (AutoBatch) or a fraction in (0, 1)")

    a.imgsz_raw = get("imgsz")
    a.imgsz = train_imgsz(a.imgsz_raw)
    if a.imgsz is None:
        a.problems.append(f"imgsz={a.imgsz_raw!r}: a positive integer or a list like [1440, 808]")

    a.cache_raw = get("cache")
    a.cache = cache_mode(a.cache_raw)
    if cache_ambiguous(a.cache_raw):
        a.problems.append(f"cache={a.cache_raw!r}: Ultralytics 8.4 builds no cache for this, other versions and "
                          "readers take it as RAM; write false, 'ram' or 'disk'")
    elif not (a.cache_raw is None or isinstance(a.cache_raw, (bool, str))):
        a.problems.append(f"cache={a.cache_raw!r}: use false, true/'ram' or 'disk'")
    elif isinstance(a.cache_raw, str) and a.cache_raw.strip().lower() not in ("ram", "disk", "false", "none", ""):
        a.problems.append(f"cache={a.cache_raw!r}: Ultralytics reads this as no cache; use false, 'ram' or 'disk'")

    workers = get("workers")
    if _is_int(workers) and workers >= 0:
        a.workers = workers
    else:
        a.problems.append(f"workers={workers!r}: a non-negative integer")

    a.device_raw = get("device")
    a.cuda, problem = _parse_device(a.device_raw)
    if problem:
        a.problems.append(problem)
    model = get("model")
    a.model = os.fspath(model) if isinstance(model, (str, os.PathLike)) and model else None
    a.resume = get("resume")
    return a
