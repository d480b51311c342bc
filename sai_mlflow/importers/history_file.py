"""import-history: a YAML file describing runs trained elsewhere -> MLflow runs with `run_kind=replay`.

Each run is logged with the keys a live run has: contract tags, params, per-batch `batch/step_s`,
`batch/data_wait_s`, `batch/compute_s` (with a warm-up shape), `memory/used_gib` samples on a wall
clock, `memory/window_peak_gib`, per-epoch metrics and phase peaks, and `summary/*` computed by
`telemetry.summary.compute_summary` exactly as for a live run. The file gives measured numbers; the
shapes between them (warm-up decay, memory ramp, jitter) are generated deterministically. A figure
the file does not give is not logged. Format: docs/history-format.md.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import keys as K
from ..compare.policy import memory_limit_fraction
from ..redact import redact_mapping, redact_text, redacted_yaml_copy
from ..telemetry.memory import memory_points
from ..telemetry.stats import median
from ..telemetry.summary import SummaryInputs, compute_summary
from ..ultralytics_args import cache_ambiguous, cache_mode, param_text
from . import TAG_IMPORT_SOURCE, ImportFailed, ImportResult, atomic_run, find_imported, fingerprint
from .ultralytics_mapping import batch_request, batch_text, is_autobatch

FORMAT = "sai-history/1"
# Bounds that keep an import from hanging or exhausting memory (a typo like interval_s: 1e-6 or batches: 3e8)
MAX_BATCHES = 1_000_000
MAX_MEMORY_SAMPLES = 1_000_000
MIN_INTERVAL_S = 0.01
EARLIEST_START = datetime(1970, 1, 1, tzinfo=UTC)  # MLflow timestamps are ms since 1970, never negative


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN/inf are never a measurement


class Warmup(_Strict):
    batches: int = Field(0, ge=0)              # slow batches before the steady speed (first included)
    first_s: float | None = Field(None, gt=0)  # the first batch's seconds (CUDA context, cuDNN autotune)
    level: float = Field(1.5, ge=1.0)          # the other warm-up batches run at level x step_s


class Speed(_Strict):
    step_s: float | list[float]         # steady s/batch, or the whole measured series

    @field_validator("step_s")
    @classmethod
    def _positive(cls, v: float | list[float]) -> float | list[float]:
        values = v if isinstance(v, list) else [v]
        if not values:
            raise ValueError("step_s: give a positive number or a non-empty list")
        if len(values) > MAX_BATCHES:
            raise ValueError(f"step_s: {len(values)} batches, more than the {MAX_BATCHES:,} an import takes")
        bad = next((x for x in values if x <= 0), None)
        if bad is not None:
            raise ValueError(f"step_s must be > 0 seconds, not {bad}")
        return v
    batches: int | None = Field(None, ge=1, le=MAX_BATCHES)  # batches recorded (generated); default: all epochs'
    warmup: Warmup = Warmup()
    jitter: float = Field(0.02, ge=0, le=0.5)  # relative noise on generated batches
    data_wait_fraction: float | None = Field(None, ge=0, le=1)  # of each batch; absent = not recorded


class Memory(_Strict):
    total_gib: float | None = Field(None, gt=0)
    interval_s: float = Field(10.0, ge=MIN_INTERVAL_S)
    # (seconds since start, GiB): piecewise-linear, held after the last point; or `samples` measured
    ramp: list[tuple[float, float]] | None = None
    samples: list[tuple[float, float]] | None = None
    val_gib: float | None = Field(None, gt=0)  # level during each validation phase (2x batch)
    leak_gib_per_hour: float = 0.0
    source: str = "nvml"

    @model_validator(mode="after")
    def _one(self) -> Memory:
        if (self.ramp is None) == (self.samples is None):
            raise ValueError("give exactly one of memory.ramp or memory.samples")
        points = self.ramp if self.ramp is not None else self.samples
        which = "ramp" if self.ramp is not None else "samples"
        if not points:
            raise ValueError(f"memory.{which} is empty: give at least one (seconds, GiB) point")
        if len(points) > MAX_MEMORY_SAMPLES:
            raise ValueError(f"memory.{which}: {len(points)} points, "
                             f"more than the {MAX_MEMORY_SAMPLES:,} an import takes")
        if any(t < 0 or g < 0 for t, g in points):
            raise ValueError(f"memory.{which}: seconds and GiB must be >= 0")
        return self


class RunSpec(_Strict):
    name: str
    status: str = "FINISHED"
    start: datetime
    batch: int | float  # the request: a batch >= 1, or AutoBatch's -1 or a fraction such as 0.7
    batch_effective: int | None = Field(None, ge=1)  # what it trained with (required after an AutoBatch request)
    devices: int | None = Field(None, ge=1)  # DDP world size; batch is the total, memory the largest device's
    cache: str = "none"
    train_images: int | None = Field(None, ge=1)
    batches_per_epoch: int | None = Field(None, ge=1)
    epochs_planned: int | None = Field(None, ge=1)
    epochs_completed: int = Field(0, ge=0)
    validation_s: float | None = Field(None, ge=0)  # per epoch
    speed: Speed | None = None
    memory: Memory | None = None
    epochs: dict[str, list[float | None]] = {}   # contract epoch key -> values for epochs 1..n
    tags: dict[str, Any] = {}
    params: dict[str, Any] = {}

    @field_validator("cache", mode="before")
    @classmethod
    def _ultralytics_cache(cls, v: Any) -> Any:
        """Ultralytics' own values are read as Ultralytics reads them (True = RAM); ambiguous ones are refused."""
        if cache_ambiguous(v):
            raise ValueError(f"cache={v!r} is ambiguous (Ultralytics versions read it differently): write none, "
                             "ram or disk")
        if v is None or isinstance(v, bool):
            return cache_mode(v)
        if isinstance(v, str) and v.strip().lower() == "false":
            return "none"
        return v

    @field_validator("batch", mode="before")
    @classmethod
    def _batch_request(cls, v: Any) -> Any:
        """A whole batch, or an AutoBatch request (Ultralytics' -1, or a fraction in (0, 1))."""
        got = batch_request(v)
        if got is None:
            raise ValueError(f"batch must be a whole number >= 1, or AutoBatch's -1 or a fraction in (0, 1), not {v!r}")
        return got

    @model_validator(mode="after")
    def _check(self) -> RunSpec:
        if is_autobatch(self.batch) and self.batch_effective is None:
            raise ValueError(f"batch {self.batch:g} is an AutoBatch request: give batch_effective, the batch it "
                             "settled on (Ultralytics prints it: 'AutoBatch: Using batch-size N')")
        if self.status not in ("FINISHED", "FAILED", "KILLED", "RUNNING"):
            raise ValueError(f"status must be FINISHED, FAILED, KILLED or RUNNING, not {self.status}")
        if self.cache not in K.CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(K.CACHE_MODES)}, not {self.cache!r}")
        for key in self.epochs:
            if key not in K.EPOCH_KEYS + K.GPU_ONLY_EPOCH_KEYS:
                raise ValueError(f"epochs: unknown metric key {key!r} (use the contract's names, e.g. {K.VAL_MAP50})")
        start = self.start if self.start.tzinfo else self.start.replace(tzinfo=UTC)
        if start < EARLIEST_START:
            raise ValueError(f"start {self.start.isoformat()} is before 1970-01-01 (MLflow cannot store it)")
        if start.timestamp() > datetime.now(UTC).timestamp() + 86400:
            raise ValueError(f"start {self.start.isoformat()} is in the future")
        for what, items in (("params", self.params), ("tags", self.tags)):
            seen: dict[str, str] = {}
            for k in items:
                sk = K.sanitize_key(str(k))
                if sk in seen:
                    raise ValueError(f"{what}: {seen[sk]!r} and {k!r} both become {sk!r} in MLflow; rename one")
                seen[sk] = str(k)
        return self


class HistoryFile(_Strict):
    format: str = FORMAT
    experiment: str | None = None
    defaults: dict[str, Any] = {}
    runs: list[dict[str, Any]]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _err_text(e: ValidationError, where: str) -> str:
    errors = e.errors()
    # of a union's branch errors (float | list[float]) the telling one, not "should be a list"
    err = next((x for x in errors if x.get("type") not in ("float_type", "list_type", "float_parsing")), errors[0])
    loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("float", "list[float]"))
    msg = err["msg"].removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    return f"{where}{'.' + loc if loc else ''}: {msg}"


def parse(path: str | Path) -> tuple[HistoryFile, list[RunSpec]]:
    from ..yaml_file import load_mapping

    p = Path(path)
    raw = load_mapping(p, ImportFailed, "history file", expected="a mapping with 'runs:'")
    try:
        hf = HistoryFile(**raw)
    except ValidationError as e:
        raise ImportFailed(f"{p}: {_err_text(e, 'file')}") from None
    except TypeError as e:
        raise ImportFailed(f"{p}: {e}") from None
    if hf.format != FORMAT:
        raise ImportFailed(f"{p}: format {hf.format!r} is not {FORMAT!r}")
    if not hf.runs:
        raise ImportFailed(f"{p}: no runs")
    specs = []
    for i, r in enumerate(hf.runs):
        if not isinstance(r, dict):
            raise ImportFailed(f"{p}: runs[{i}] is not a mapping")
        try:
            specs.append(RunSpec(**_merge(hf.defaults, r)))
        except ValidationError as e:
            raise ImportFailed(f"{p}: {_err_text(e, f'runs[{i}]')}") from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ImportFailed(f"{p}: run names must be unique")
    return hf, specs


# --- generating the series ---------------------------------------------------------------------

class Timeline:
    """Everything a replayed run logs, as plain lists: (key, value, timestamp_ms, step)."""

    def __init__(self) -> None:
        self.metrics: list[tuple[str, float, int, int]] = []

    def add(self, key: str, value: float, t_s: float, step: int) -> None:
        if value is None or not math.isfinite(value):
            return
        self.metrics.append((key, float(value), int(round(t_s * 1000)), int(step)))


def _step_series(spec: RunSpec, n_batches: int, rng: random.Random) -> list[float]:
    sp = spec.speed
    if isinstance(sp.step_s, list):
        return [float(x) for x in sp.step_s]
    steady = float(sp.step_s)
    w = sp.warmup
    out = []
    for k in range(n_batches):
        if k == 0 and w.batches and w.first_s is not None:
            base = w.first_s
        elif k < w.batches:
            base = steady * w.level
        else:
            base = steady
        out.append(base * (1.0 + rng.uniform(-sp.jitter, sp.jitter)))
    return out


def _interp(ramp: list[tuple[float, float]], t: float) -> float:
    if t <= ramp[0][0]:
        return ramp[0][1]
    for (t0, g0), (t1, g1) in zip(ramp, ramp[1:]):
        if t <= t1:
            return g0 + (g1 - g0) * (t - t0) / (t1 - t0) if t1 > t0 else g1
    return ramp[-1][1]


@dataclass
class _Clock:
    """The generated wall clock: batches back to back, a validation phase after each completed epoch."""

    step_s: list[float]
    wait_frac: float | None
    val_phases: list[tuple[float, float]]
    epoch_end: dict[int, float]
    epoch_steps: dict[int, list[float]]
    duration: float


def build(spec: RunSpec) -> tuple[Timeline, dict[str, float], float]:
    """The run's metrics (incl. summary/*) and its duration in seconds."""
    rng = random.Random(f"sai-history:{spec.name}")
    tl = Timeline()
    eff = spec.batch_effective or spec.batch
    bpe = spec.batches_per_epoch or (math.ceil(spec.train_images / eff) if spec.train_images else None)
    clock = _batches(spec, tl, bpe, rng)
    mem = _memory(spec, tl, clock)
    _epochs(spec, tl, clock, mem)
    m = spec.memory
    done, val_s = spec.epochs_completed, spec.validation_s
    maps = [v for v in spec.epochs.get(K.VAL_MAP50, []) if v is not None]
    maps95 = [v for v in spec.epochs.get(K.VAL_MAP50_95, []) if v is not None]
    summary = compute_summary(SummaryInputs(
        step_s=clock.step_s,
        data_wait_s=[s * clock.wait_frac for s in clock.step_s] if clock.wait_frac is not None else (),
        batch_size_effective=eff,
        peak_gib=max((g for _, g in mem), default=None),
        total_gib=m.total_gib if m else None,
        map50=maps, map50_95=maps95,
        epochs_completed=done, epochs_planned=spec.epochs_planned, batches_per_epoch=bpe,
        val_s=[val_s] * done if val_s is not None and done else [],
        memory=[(t * 1000.0, g) for t, g in mem],
    ))
    for key, v in summary.items():
        tl.add(key, v, clock.duration, 0)
    return tl, summary, clock.duration


def _batches(spec: RunSpec, tl: Timeline, bpe: int | None, rng: random.Random) -> _Clock:
    """The per-batch series and the wall clock they define."""
    done = spec.epochs_completed
    step_s: list[float] = []
    if spec.speed is not None:
        n = spec.speed.batches or (bpe * max(done, 1) if bpe else None)
        if n is None and not isinstance(spec.speed.step_s, list):
            raise ImportFailed(f"run {spec.name}: speed.batches needed (no batches_per_epoch/train_images)")
        if n is not None and n > MAX_BATCHES:
            raise ImportFailed(f"run {spec.name}: {n:,} batches to generate, more than the {MAX_BATCHES:,} an "
                               "import takes; give speed.batches (a sample of the run is enough for its speed)")
        step_s = _step_series(spec, n or 0, rng)
    wait_frac = spec.speed.data_wait_fraction if spec.speed else None
    val_s = spec.validation_s or 0.0
    t = 0.0
    val_phases: list[tuple[float, float]] = []
    epoch_end: dict[int, float] = {}
    epoch_steps: dict[int, list[float]] = {}
    for i, s in enumerate(step_s):
        t += s
        tl.add(K.BATCH_STEP_S, s, t, i)
        if wait_frac is not None:
            tl.add(K.BATCH_DATA_WAIT_S, s * wait_frac, t, i)
            tl.add(K.BATCH_COMPUTE_S, s * (1 - wait_frac), t, i)
        if bpe:
            ep = i // bpe + 1
            epoch_steps.setdefault(ep, []).append(s)
            if (i + 1) % bpe == 0 and ep <= done:
                val_phases.append((t, t + val_s))
                t += val_s
                epoch_end[ep] = t
    for ep in range(1, done + 1):  # epochs without per-batch data (speed not given)
        epoch_end.setdefault(ep, max(epoch_end.values(), default=0.0) + 1.0)
    duration = max(t, max(epoch_end.values(), default=0.0))
    return _Clock(step_s, wait_frac, val_phases, epoch_end, epoch_steps, duration)


def _memory(spec: RunSpec, tl: Timeline, clock: _Clock) -> list[tuple[float, float]]:
    """Memory samples (given, or drawn from the ramp with validation peaks), logged with their reference lines."""
    mem: list[tuple[float, float]] = []
    m = spec.memory
    if m is None:
        return mem
    if m.samples is not None:
        mem = [(float(a), float(b)) for a, b in m.samples]
    else:
        ramp = sorted((float(a), float(b)) for a, b in m.ramp)
        k, ts = 0, 0.0
        end = max(clock.duration, ramp[-1][0])
        if end / m.interval_s > MAX_MEMORY_SAMPLES:
            raise ImportFailed(f"run {spec.name}: memory.interval_s {m.interval_s:g} over {end:,.0f} s gives "
                               f"{end / m.interval_s:,.0f} samples, more than the {MAX_MEMORY_SAMPLES:,} an import "
                               "takes; use a longer interval_s")
        while ts <= end + 1e-9:
            in_val = any(a <= ts < b for a, b in clock.val_phases)
            g = m.val_gib if (in_val and m.val_gib is not None) else _interp(ramp, ts)
            g += m.leak_gib_per_hour * max(0.0, ts - ramp[-1][0]) / 3600.0
            mem.append((ts, g))
            k += 1
            ts = k * m.interval_s
    fraction = memory_limit_fraction()
    for i, (ts, g) in enumerate(mem):
        for point in memory_points(g, m.total_gib, fraction, ts, i):
            tl.add(*point)
    per_window = 6
    for j in range(0, len(mem), per_window):
        win = mem[j:j + per_window]
        tl.add(K.MEMORY_WINDOW_PEAK_GIB, max(g for _, g in win), win[-1][0], j // per_window)
    return mem


def _epochs(spec: RunSpec, tl: Timeline, clock: _Clock, mem: list[tuple[float, float]]) -> None:
    """The file's per-epoch metrics, and speed, duration and phase peaks per completed epoch."""
    for key, values in spec.epochs.items():
        for ep, v in enumerate(values, start=1):
            if v is not None:
                tl.add(key, v, clock.epoch_end.get(ep, clock.duration), ep)
    prev = 0.0
    for ep in range(1, spec.epochs_completed + 1):
        end_t = clock.epoch_end[ep]
        if ep in clock.epoch_steps and ep in clock.epoch_end:
            tl.add(K.EPOCH_STEP_S_MEDIAN, median(clock.epoch_steps[ep]), end_t, ep)
            tl.add(K.EPOCH_DURATION_S, end_t - prev, end_t, ep)
        if mem:
            vs, ve = clock.val_phases[ep - 1] if ep - 1 < len(clock.val_phases) else (end_t, end_t)
            train = [g for ts, g in mem if prev <= ts < vs]
            val = [g for ts, g in mem if vs <= ts < ve]
            if train:
                tl.add(K.EPOCH_TRAIN_PEAK_GIB, max(train), end_t, ep)
            if val:
                tl.add(K.EPOCH_VAL_PEAK_GIB, max(val), end_t, ep)
        prev = end_t


def _tags(spec: RunSpec) -> dict[str, str]:
    tags = {
        K.TAG_BATCH_SIZE: batch_text(spec.batch),
        K.TAG_BATCH_SIZE_EFFECTIVE: str(spec.batch_effective or spec.batch),
        K.TAG_CACHE_MODE: spec.cache,
        K.TAG_RUN_KIND: "replay",
    }
    if spec.devices is not None:
        tags[K.TAG_DEVICES] = str(spec.devices)
    if spec.memory is not None:
        tags[K.TAG_MEMORY_SOURCE] = spec.memory.source
    for k, v in spec.tags.items():
        if k == K.TAG_RUN_KIND:
            continue
        tags[K.sanitize_key(str(k))] = str(v).lower() if isinstance(v, bool) else str(v)
    return redact_mapping(tags)


@dataclass(frozen=True)
class ReadHistory:
    """A history file validated and every run built: nothing is left that can refuse it but the store."""

    path: Path
    file: HistoryFile
    built: list


def read_history_file(path: str | Path) -> ReadHistory:
    """The whole file validated and every run built, before any store is opened (a refusal creates nothing)."""
    hf, specs = parse(path)
    try:
        return ReadHistory(Path(path), hf, [(spec, *build(spec)) for spec in specs])
    except ImportFailed as e:
        raise ImportFailed(f"{path}: {e}") from None


def import_history_file(client, path: str | Path | ReadHistory, experiment: str | None = None) -> list[ImportResult]:
    """Log every run of the file; a run already imported (same fingerprint) is skipped.

    The whole file is validated and every run built before anything is written (`read_history_file`); a run
    whose writing fails is deleted again (its fingerprint is the last thing set), so importing again works.
    """
    from ..backend import log_records, source_tags
    from ..tracking.store import get_or_create_experiment, resolve_experiment
    from . import provenance

    read = path if isinstance(path, ReadHistory) else read_history_file(path)
    path, hf, built = read.path, read.file, read.built
    exp_name = experiment or hf.experiment or resolve_experiment(None)
    exp_id = get_or_create_experiment(client, exp_name)
    results = []
    for index, (spec, tl, _summary, duration) in enumerate(built):
        fp = fingerprint(FORMAT, json.dumps(spec.model_dump(mode="json"), sort_keys=True))
        old = find_imported(client, exp_id, fp)
        if old is not None:
            results.append(ImportResult(old.info.run_id, spec.name, exp_name, "already imported", exp_id))
            continue
        start = spec.start if spec.start.tzinfo else spec.start.replace(tzinfo=UTC)
        t0 = start.timestamp()
        tags = {**_tags(spec), TAG_IMPORT_SOURCE: str(Path(path).resolve()),
                K.TAG_DESCRIPTION: provenance.description(path, index, spec)}
        generated = provenance.generated_series(spec)
        if generated:
            tags[K.TAG_GENERATED_SERIES] = ",".join(generated)
        cache = "False" if spec.cache == "none" else spec.cache
        params = {"batch": batch_text(spec.batch), "cache": cache, **spec.params}
        if spec.epochs_planned:
            params.setdefault("epochs", spec.epochs_planned)
        params = redact_mapping({K.sanitize_key(str(k)): param_text(v) for k, v in params.items()})
        metrics = [(k, v, int(t0 * 1000) + ts, step) for k, v, ts, step in tl.metrics]
        with atomic_run(client, exp_id, spec.name, int(t0 * 1000), fp, tags=source_tags()) as rid:
            log_records(client, rid, metrics=metrics, params=params, tags=redact_mapping(tags))
            with tempfile.TemporaryDirectory() as tmp:  # a redacted copy, same lines: never the raw file
                copy = redacted_yaml_copy(path, Path(tmp) / redact_text(Path(path).name))
                client.log_artifact(rid, str(copy), K.ARTIFACT_HISTORY_DIR)
            if spec.status != "RUNNING":
                client.set_terminated(rid, spec.status, end_time=int((t0 + duration) * 1000))
        results.append(ImportResult(rid, spec.name, exp_name, "imported", exp_id))
    return results
