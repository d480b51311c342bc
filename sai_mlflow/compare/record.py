"""RunRecord, what compare-runs knows about one run, and the one factory that builds it from contract keys.

Every reader builds records here: the loader (MLflow runs), the live guard (a training's own state and a
recorded history replayed), the run's own report (run_artifacts) and the benchmarks. Each figure is one
field below whose metadata names its contract key, how the key's text is read, and which values a real
run can record; `record_from_keys` reads them all the same way. A new judged figure is one line here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .. import keys as K
from ..importers.ultralytics_mapping import is_autobatch
from ..telemetry.stats import finite
from .text import HUGE

GROUP_FIELDS = ("model", "imgsz", "dataset_digest", "gpu")


# --- how a tag's text is read (None = recorded but unusable: named in `unreadable`, never guessed) ----

def parse_int(v: Any) -> int | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) else None


def parse_bool(v: Any) -> bool | None:
    """`true`/`false` (also 1/0, yes/no, Python's True/False): the one reading of `data_on_tmpfs`."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    return True if s in ("true", "1", "yes") else False if s in ("false", "0", "no") else None


def parse_number(v: Any) -> float | int | None:
    """A number as recorded (an int when whole); `batch_size` may be AutoBatch's -1 or 0.7."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return int(f) if f == int(f) and abs(f) < 2**53 else f


def _text(v: Any) -> str | None:
    return None if v is None else str(v)


# --- which values a real run can record ---------------------------------------------------------------

def _range(lo: float, hi: float = HUGE, lo_ok: bool = True) -> Callable[[float], bool]:
    return lambda x: (x >= lo if lo_ok else x > lo) and x <= hi


def _batch_request_ok(x: float) -> bool:
    """A whole batch >= 1, or an AutoBatch request (-1, a fraction in (0, 1)): never `implausible` alone."""
    return (x >= 1 and x == int(x)) or is_autobatch(x)


def _tag(key: str, parse: Callable[[Any], Any] = _text, ok: Callable[[float], bool] | None = None, **kw):
    return field(default=None, metadata={"tag": key, "parse": parse, "ok": ok}, **kw)


def _summary(key: str, ok: Callable[[float], bool] | None = None):
    return field(default=None, metadata={"summary": key, "ok": ok})


@dataclass
class RunRecord:
    """What compare-runs knows about one run; None = not recorded (never a guess)."""

    run_id: str
    run_name: str | None = None
    status: str = "FINISHED"  # MLflow run status
    run_kind: str | None = _tag(K.TAG_RUN_KIND)
    experiment_id: str | None = None  # where the run lives (for links into the UI)
    # identity / setup (tags)
    model: str | None = _tag(K.TAG_MODEL)
    imgsz: int | None = _tag(K.TAG_IMGSZ, parse_int, _range(1))
    dataset_digest: str | None = _tag(K.TAG_DATASET_DIGEST)
    gpu: str | None = _tag(K.TAG_GPU)  # several models (a mixed DDP run): joined by keys.GPU_MODELS_SEPARATOR
    batch_size: int | float | None = _tag(K.TAG_BATCH_SIZE, parse_number, _batch_request_ok)  # the request
    batch_size_effective: int | None = _tag(K.TAG_BATCH_SIZE_EFFECTIVE, parse_int, _range(1))
    devices: int | None = _tag(K.TAG_DEVICES, parse_int, _range(1))  # DDP world size; None = absent = 1
    cache_mode: str | None = _tag(K.TAG_CACHE_MODE)
    data_on_tmpfs: bool | None = _tag(K.TAG_DATA_ON_TMPFS, parse_bool)
    memory_source: str | None = _tag(K.TAG_MEMORY_SOURCE)
    # summary/* metrics (memory: the largest device's peak; total: one device's)
    step_s_steady: float | None = _summary(K.SUMMARY_STEP_S_STEADY, _range(0, lo_ok=False))
    images_per_s: float | None = _summary(K.SUMMARY_IMAGES_PER_S, _range(0, lo_ok=False))
    warmup_batches: float | None = _summary(K.SUMMARY_WARMUP_BATCHES, _range(0))
    data_wait_fraction: float | None = _summary(K.SUMMARY_DATA_WAIT_FRACTION, _range(0, 1))
    peak_gib: float | None = _summary(K.SUMMARY_PEAK_GIB, _range(0))
    total_gib: float | None = _summary(K.SUMMARY_TOTAL_GIB, _range(0, lo_ok=False))
    peak_fraction: float | None = _summary(K.SUMMARY_PEAK_FRACTION, _range(0, 100))
    best_map50: float | None = _summary(K.SUMMARY_BEST_MAP50, _range(0, 1))
    eta_full_s: float | None = _summary(K.SUMMARY_ETA_FULL_S, _range(0, lo_ok=False))
    epochs_completed: float | None = _summary(K.SUMMARY_EPOCHS_COMPLETED, _range(0))
    epochs_planned: float | None = _summary(K.SUMMARY_EPOCHS_PLANNED, _range(0))
    # the steady half of memory/used_gib as the trainer saw it (reasons.summary_covers_memory says when usable)
    memory_summary_samples: float | None = _summary(K.SUMMARY_MEMORY_SAMPLES, _range(0))
    memory_steady_span_s: float | None = _summary(K.SUMMARY_MEMORY_STEADY_SPAN_S, _range(0))
    memory_growth_gib_per_h: float | None = _summary(K.SUMMARY_MEMORY_GROWTH_GIB_PER_H, _range(-HUGE))
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

    @property
    def device_count(self) -> int:
        """Devices trained on: the `devices` tag, 1 when absent."""
        return self.devices if isinstance(self.devices, int) and self.devices >= 1 else 1

    @property
    def autobatch(self) -> bool:
        """The batch was AutoBatch's choice (`batch_size` records the request: -1 or a fraction)."""
        return is_autobatch(self.batch_size)

    @property
    def batch(self) -> int | None:
        """The total batch trained with: `batch_size_effective`, else a whole requested batch (never
        an AutoBatch request, which is no batch)."""
        if self.batch_size_effective:
            return self.batch_size_effective
        b = self.batch_size
        return int(b) if isinstance(b, (int, float)) and b >= 1 and b == int(b) else None

    @property
    def batch_per_device(self) -> int | None:
        """What one device holds: the total // devices (Ultralytics gives each rank batch // world size)."""
        b = self.batch
        return None if b is None else b // self.device_count


def _norm(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def peak_fraction(r: RunRecord) -> float | None:
    """summary/peak_fraction, else peak / total (the largest device's peak over one device's total)."""
    if r.peak_fraction is not None:
        return r.peak_fraction
    if r.peak_gib is not None and r.total_gib:
        return r.peak_gib / r.total_gib
    return None


def plausibility(r: RunRecord) -> dict[str, Callable[[float], bool]]:
    """field name -> the values a real run can record, for every field that has a rule."""
    return {f.name: f.metadata["ok"] for f in fields(r) if f.metadata.get("ok") is not None}


_TAGGED = tuple((f.name, f.metadata["tag"], f.metadata["parse"]) for f in fields(RunRecord) if "tag" in f.metadata)
_SUMMED = tuple((f.name, f.metadata["summary"]) for f in fields(RunRecord) if "summary" in f.metadata)


def record_from_keys(run_id: str, tags: Mapping[str, Any], metrics: Mapping[str, Any], **info: Any) -> RunRecord:
    """A RunRecord from a run's contract tags and summary metrics; `info` sets the rest (name, status,
    series, and figures the caller knows better than a tag, e.g. a live run's batch).

    A tag that cannot be read and a summary metric that is NaN/inf are kept in `unreadable` under their
    key (compare-runs' `implausible`), never guessed; an absent one is None."""
    values: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    for name, key, parse in _TAGGED:
        raw = tags.get(key)
        if raw is None:
            continue
        v = parse(raw)
        if v is None and parse is not _text:
            unreadable[key] = str(raw)[:40]
        values[name] = v
    for name, key in _SUMMED:
        values[name] = finite(metrics.get(key))
    for key, v in metrics.items():
        if key.startswith("summary/") and isinstance(v, (int, float)) and not math.isfinite(v):
            unreadable[key] = str(v)
    values.update(info)
    return RunRecord(run_id=run_id, unreadable=unreadable, **values)
