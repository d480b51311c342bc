"""One reading of the Ultralytics training arguments the product reasons about.

The tracker, preflight, the importers, the compare loader and the registry all ask the same questions —
which cache will Ultralytics build, at which square side will it train, what did a checkpoint train with —
so each is answered here once. `tests/test_ultralytics_args.py` checks the readings against Ultralytics'
own dataset code, so an Ultralytics upgrade that changes them fails a test instead of a verdict.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .tracking.batching import MAX_PARAM_CHARS  # MLflow's param value limit

STRIDE = 32  # YOLOv8/11 max stride: Ultralytics rounds imgsz up to a multiple of it (check_imgsz)
# Above this side one image of a YOLOv8s needs more than an H200's 141 GiB (1.08 GiB per image at 1440,
# growing with the pixels): a typo, never a training.
MAX_IMGSZ = 16384
TRUNCATED = "…[truncated]"


def cache_mode(value: Any) -> str:
    """The cache Ultralytics 8.4 builds for `cache=value`: 'ram', 'disk' or 'none'.

    Its dataset reads `cache.lower() if str else 'ram' if cache is True else None`: True and 'ram'
    (any case) cache in RAM, 'disk' on disk; 1, 'true', 'True' and '1' cache nothing.
    """
    if value is True:
        return "ram"
    if isinstance(value, str):
        v = value.strip().lower()
        return v if v in ("ram", "disk") else "none"
    return "none"


def cache_ambiguous(value: Any) -> bool:
    """A truthy `cache` that 8.4 reads as no cache but that means RAM to a reader (or another version).

    `cache=1` or `cache: 'True'` are typed meaning "cache", and older Ultralytics cached in RAM for any
    truthy value; preflight treats them as a RAM cache wherever a double cache would be the cost.
    """
    if value is True or value is None or value is False:
        return False
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    try:
        return bool(value) and cache_mode(value) == "none"
    except Exception:
        return False


def _integral(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def imgsz_problem(value: Any) -> str | None:
    """Why `imgsz=value` is not a size to train at (None when it is): one side, or [width, height], in pixels.

    Ultralytics itself takes any list and any side (a 0 becomes 32, [640, 640, 640] trains at 640): such a
    value is a typo, so it is refused here with the fix.
    """
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    sides = list(value) if isinstance(value, (list, tuple)) else [value]
    if not 1 <= len(sides) <= 2:
        return f"{len(sides)} values; give one side (imgsz: 640) or [width, height] (imgsz: [1440, 808])"
    if not all(_integral(v) for v in sides):
        return "give whole pixels: one side (imgsz: 640) or [width, height] (imgsz: [1440, 808])"
    if min(sides) < 1:
        return "every side must be at least 1 pixel, e.g. imgsz: 640 (Ultralytics would quietly replace a 0)"
    if max(sides) > MAX_IMGSZ:
        return (f"{int(max(sides))} pixels is more than {MAX_IMGSZ}, where one image no longer fits a 141 GiB GPU; "
                "give the training size, e.g. imgsz: 640")
    return None


def train_imgsz(value: Any, stride: int = STRIDE) -> int | None:
    """The square side Ultralytics trains at: a list's largest side, rounded up to the stride; None if invalid.

    [1440, 808] trains at 1440 (square letterbox and mosaic), 1.78x the pixels of 1440x808.
    """
    if imgsz_problem(value) is not None:
        return None
    if isinstance(value, str):
        value = int(value.strip())
    side = int(max(value)) if isinstance(value, (list, tuple)) else int(value)
    return max(stride, math.ceil(side / stride) * stride)


def param_text(value: Any, limit: int = MAX_PARAM_CHARS) -> str:
    """A param value MLflow accepts: cut to its limit with a visible marker, never silently."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def checkpoint_args(path: str | Path) -> dict:
    """The training arguments stored in an Ultralytics checkpoint (last.pt): ckpt['train_args']; {} if absent."""
    import torch

    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    args = ckpt.get("train_args") if isinstance(ckpt, dict) else None
    if isinstance(args, dict):
        return dict(args)
    return dict(vars(args)) if args is not None and hasattr(args, "__dict__") else {}


def checkpoint_batch(path: str | Path) -> int | None:
    """The train batch stored in an Ultralytics checkpoint (last.pt); None if absent."""
    batch = checkpoint_args(path).get("batch")
    if batch is None:
        return None
    try:
        return int(batch)
    except (TypeError, ValueError):
        return None


def is_autobatch(batch: Any) -> bool:
    """Ultralytics' AutoBatch request: -1 (its default share of GPU memory) or a fraction 0 < f < 1 of it."""
    return isinstance(batch, int | float) and not isinstance(batch, bool) and (batch == -1 or 0 < batch < 1)


def batch_request_tag(batch: Any) -> str:
    """The `batch_size` tag: the batch as asked (`96`, AutoBatch's `-1` or `0.7`); the settled one is
    `batch_size_effective`."""
    if isinstance(batch, float) and batch.is_integer():
        return str(int(batch))
    return str(batch)
