"""Value cleaning: map keys MLflow refuses, cut long texts, set aside what cannot be a metric. Never raises."""

from __future__ import annotations

import math
import posixpath
import time
from dataclasses import dataclass, field

from ...keys import sanitize_key
from ...ultralytics_args import param_text
from ..batching import MAX_PARAM_CHARS
from ..sink import Batch

MAX_TAG_CHARS = 8000
_INT64 = 2**63 - 1


def safe_key(key) -> str:
    """A key MLflow accepts: its character rule (keys.sanitize_key) and no path tricks (`a//b`, `/a`, `..`)."""
    try:
        k = sanitize_key(str(key))
    except Exception:
        k = "_"
    k = k.replace("\n", "_").replace("\r", "_")
    if posixpath.normpath(k) != k or k in (".", "..") or k.startswith(("/", "..")):
        parts = [p for p in k.split("/") if p not in ("", ".", "..")]
        k = "/".join(parts) or "_"
        if posixpath.normpath(k) != k or k.startswith(".."):
            k = k.replace("/", "_").replace("..", "_") or "_"
    return k[:250]


def _text(value, limit: int) -> str | None:
    """The value as text MLflow accepts, cut with the one visible marker; None when it has no text."""
    try:
        return param_text(value, limit)
    except Exception:
        return None


@dataclass
class Cleaned:
    metrics: list[list] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    set_aside: list[list] = field(default_factory=list)  # [kind, key, repr(value), reason]
    infinite: set[str] = field(default_factory=set)
    mapped: dict[str, str] = field(default_factory=dict)


def _repr(v) -> str:
    try:
        return repr(v)[:200]
    except Exception:
        return "<unrepresentable>"


def clean_batch(batch: Batch, now_ms: int | None = None) -> Cleaned:
    """Map keys, cut long texts, keep NaN/inf (noted), set aside what cannot be a metric. Never raises."""
    out = Cleaned()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms

    def key_of(k):
        sk = safe_key(k)
        if not isinstance(k, str) or sk != k:
            out.mapped[_repr(k) if not isinstance(k, str) else k[:100]] = sk
        return sk

    for point in list(getattr(batch, "metrics", None) or []):
        try:
            k, v, ts, step = point
        except Exception:
            out.set_aside.append(["metric", "?", _repr(point), "not a (key, value, ts, step) point"])
            continue
        key = key_of(k)
        if isinstance(v, bool) or v is None or isinstance(v, str | bytes):
            out.set_aside.append(["metric", key, _repr(v), "non-numeric value"])
            continue
        try:
            value = float(v)
        except Exception:
            out.set_aside.append(["metric", key, _repr(v), "non-numeric value"])
            continue
        try:
            ts_i = int(ts)
            if not 0 <= ts_i <= _INT64:
                ts_i = now_ms
        except Exception:
            ts_i = now_ms
        try:
            step_i = int(step)
        except Exception:
            out.set_aside.append(["metric", key, _repr(v), f"non-integer step {_repr(step)}"])
            continue
        if not -_INT64 - 1 <= step_i <= _INT64:
            out.set_aside.append(["metric", key, _repr(v), f"step {step_i} outside int64"])
            continue
        if math.isinf(value):
            out.infinite.add(key)
        out.metrics.append([key, value, ts_i, step_i])
    for src, dst, limit in ((getattr(batch, "params", None), out.params, MAX_PARAM_CHARS),
                            (getattr(batch, "tags", None), out.tags, MAX_TAG_CHARS)):
        try:
            items = list((src or {}).items())
        except Exception:
            items = []
        for k, v in items:
            text = _text(v, limit)
            if text is None:
                out.set_aside.append(["param" if dst is out.params else "tag", safe_key(k), "<str() failed>",
                                      "value cannot be turned into text"])
                continue
            dst[key_of(k)] = text
    return out
