"""The live guard: compare-runs' per-run checks on a training's own record, after each validation.

No second copy of a rule or threshold: the record so far is a `RunRecord` and the checks are
`compare.decision.check_run` under the same policy (configs/decision.yaml or `train --policy`).
A finding of severity reject or warn is new the first time its code appears: it is printed once,
with its fix, and set as the `sai.alert.<code>` tag. When its code is in `guard.stop_on` and it is
reject-level, training stops cleanly at the end of this epoch (Ultralytics' `trainer.stop`: last.pt
is already saved, the run ends FINISHED) and the run is tagged `sai.stopped_by`. Only the logging
process (rank -1/0) has a guard; under DDP Ultralytics broadcasts rank 0's `stop` to every rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import keys as K
from ..compare.memfit import MemoryFit, fit_peak_memory
from ..compare.reasons import (
    REGISTRY,
    REJECT,
    WARN,
    FixContext,
    Reason,
    StopOnError,
    check_run,
    fix,
    parse_stop_on,
)
from ..compare.record import RunRecord, parse_int, record_from_keys
from ..telemetry.steady_memory import steady_half

GuardConfigError = StopOnError  # the name callers know


@dataclass(frozen=True)
class Alert:
    reason: Reason
    line: str      # message and fix, one line: printed and set as sai.alert.<code>
    stop: bool     # reject-level and in stop_on


def fix_for(reason: Reason, r: RunRecord, policy, val_peak_is_max: bool = False,
            memory_fit: MemoryFit | None = None) -> str:
    """The one-line fix for a finding, with the exact flag to use where one exists (the registry's)."""
    return fix(reason, r, policy, FixContext(val_peak_is_max, memory_fit))


def history_fit(history) -> MemoryFit | None:
    """The memory fit over comparable earlier runs (preflight's `ForecastRecord`s: batch, peak, devices):
    the evidence that lets the guard name a smaller safe batch; None with fewer than two batches."""
    pts = [(r.batch_effective // max(1, getattr(r, "devices", 1) or 1), r.peak_gib) for r in history or ()
           if r.batch_effective and r.peak_gib is not None]
    return fit_peak_memory(pts)


class Guard:
    """Remembers which codes it already reported; `judge` is pure apart from that memory."""

    def __init__(self, policy, stop_on: Sequence[str] = (), memory_fit: MemoryFit | None = None) -> None:
        self.policy = policy
        self.stop_on = parse_stop_on(stop_on)
        self.memory_fit = memory_fit  # comparable runs' fit, when the caller has one (else advice is "probe")
        self.seen: set[str] = set()
        self.stopped_by: str | None = None
        self._map50: dict[int, float] = {}   # epoch -> val/mAP50 so far
        self._peaks = [0.0, 0.0]             # highest train and validation peaks so far

    def judge(self, record: RunRecord, val_peak_is_max: bool = False) -> list[Alert]:
        """New reject/warn findings on the record so far (each code once per run)."""
        alerts = []
        for reason in check_run(record, self.policy):
            if not REGISTRY[reason.code].live or reason.severity not in (REJECT, WARN) or reason.code in self.seen:
                continue
            self.seen.add(reason.code)
            fixed = fix_for(reason, record, self.policy, val_peak_is_max, self.memory_fit)
            line = f"batch {record.batch}: {reason.message}{fixed}"
            stop = reason.severity == REJECT and reason.code in self.stop_on and self.stopped_by is None
            if stop:
                self.stopped_by = reason.code
            alerts.append(Alert(reason, line, stop))
        return alerts

    # --- glue: called by the tracker at the end of a validated epoch (the logging process only) -----
    def after_epoch(self, tracker, trainer, epoch: int, values: dict, summary: dict) -> None:
        """Judge, print, tag, and ask Ultralytics to stop after this epoch when stop_on says so."""
        from ..log import warn
        from ..tracking.sink import Batch

        if values.get(K.VAL_MAP50) is not None:
            self._map50[epoch] = values[K.VAL_MAP50]
        if self.memory_fit is None and getattr(trainer, "sai_memory_history", None):
            self.memory_fit = history_fit(trainer.sai_memory_history)  # train's preflight read them
        record = record_so_far(tracker, trainer, epoch, summary, self._map50)
        alerts = self.judge(record, val_peak_is_max=self._val_peak_is_max(values))
        tags = {}
        for a in alerts:
            warn(f"sai_mlflow guard: {a.line}")
            tags[K.TAG_ALERT_PREFIX + a.reason.code] = a.line[:5000]
            if a.stop:
                tags[K.TAG_STOPPED_BY] = a.reason.code
                trainer.stop = True
                warn(f"sai_mlflow guard: stopping at the end of epoch {epoch} on {a.reason.code} "
                       f"(guard.stop_on); last.pt is saved and the run ends FINISHED")
        if tags:
            tracker.publisher.put(Batch(tags=tags))

    def _val_peak_is_max(self, values: dict) -> bool:
        self._peaks[0] = max(self._peaks[0], values.get(K.EPOCH_TRAIN_PEAK_GIB) or 0.0)
        self._peaks[1] = max(self._peaks[1], values.get(K.EPOCH_VAL_PEAK_GIB) or 0.0)
        return self._peaks[1] > self._peaks[0]


def _steady(samples: Sequence[tuple[int, float]]) -> list[tuple[float, float]]:
    """The second half of (wall ms, GiB) samples as (s, GiB), picked as compare-runs reads a series."""
    return [(ms / 1000.0, g) for ms, g in steady_half(samples)]


def record_so_far(tracker, trainer, epoch: int, summary: dict, map50: dict[int, float]) -> RunRecord:
    """A live run's RunRecord, from the tracker's own state: what compare-runs would load for it now."""
    tags = dict(tracker.state.setup_tags or {})
    tags.setdefault(K.TAG_BATCH_SIZE, tracker.state.requested_batch)  # the request as tagged (AutoBatch: -1, 0.7)
    tags[K.TAG_BATCH_SIZE_EFFECTIVE] = int(trainer.batch_size)  # what it trains with now
    samples = list(tracker.monitor.samples)
    series = dict(map50)
    # judged from the summary's steady-memory figures, as compare-runs will; a resumed run whose steady half
    # began in an earlier session has none, and is judged on this session's samples
    counted = summary.get(K.SUMMARY_MEMORY_SAMPLES)
    return record_from_keys(
        tracker.run_id, tags, summary, status="RUNNING", epochs_completed=float(epoch),
        map50_last_epoch=max(series) if series else None, map50=series or None,
        memory_samples=int(counted) if counted else len(samples) or None,
        memory_steady=None if counted else _steady(samples) if samples else None,
    )


def guard_from_settings(settings) -> Guard:
    """The guard of one training: the policy file of the settings (else configs/decision.yaml) and stop_on."""
    from ..compare.policy import load_policy

    return Guard(load_policy(settings.policy_file or None), [c for c in settings.guard_stop_on.split(",") if c])


# --- replay: a recorded history through the guard, epoch by epoch (docs/probe.md, the seed) --------

def replay(metrics: Sequence[tuple[str, float, int, int]], tags: dict[str, str],
           guard: Guard) -> list[tuple[int, float, list[Alert]]]:
    """(epoch, seconds since start at its end, new alerts) for each completed epoch of a recorded run.

    `metrics` are (key, value, timestamp ms, step) as MLflow holds them; at the end of epoch e the
    guard sees what a live run would have had: batches, memory samples and mAP50 up to then.
    """
    from ..telemetry.summary import SummaryInputs, compute_summary

    by_key: dict[str, list[tuple[int, int, float]]] = {}
    for key, value, ts, step in metrics:
        by_key.setdefault(key, []).append((step, ts, value))
    for rows in by_key.values():
        rows.sort()
    final = {k: rows[-1][2] for k, rows in by_key.items() if k in K.SUMMARY_KEYS}
    ends = {step: ts for step, ts, _ in by_key.get(K.EPOCH_DURATION_S, []) or by_key.get(K.VAL_MAP50, [])}
    t0 = min((ts for rows in by_key.values() for _, ts, _ in rows), default=0)
    eff = parse_int(tags.get(K.TAG_BATCH_SIZE_EFFECTIVE)) or parse_int(tags.get(K.TAG_BATCH_SIZE))
    eff = eff if eff and eff >= 1 else None  # an AutoBatch request (-1, 0.7) is no batch
    out = []
    train_peak = val_peak = 0.0
    for epoch in sorted(ends):
        end = ends[epoch]
        steps = [v for _, ts, v in by_key.get(K.BATCH_STEP_S, []) if ts <= end]
        waits = [v for _, ts, v in by_key.get(K.BATCH_DATA_WAIT_S, []) if ts <= end]
        mem = [(ts, v) for _, ts, v in sorted(by_key.get(K.MEMORY_USED_GIB, []), key=lambda x: x[1]) if ts <= end]
        map50 = {s: v for s, _, v in by_key.get(K.VAL_MAP50, []) if s <= epoch}
        for key, acc in ((K.EPOCH_TRAIN_PEAK_GIB, 0), (K.EPOCH_VAL_PEAK_GIB, 1)):
            v = next((v for s, _, v in by_key.get(key, []) if s == epoch), 0.0)
            if acc == 0:
                train_peak = max(train_peak, v)
            else:
                val_peak = max(val_peak, v)
        summary = compute_summary(SummaryInputs(
            step_s=steps, data_wait_s=waits if len(waits) == len(steps) else (), batch_size_effective=eff,
            peak_gib=max((g for _, g in mem), default=None), total_gib=final.get(K.SUMMARY_TOTAL_GIB),
            map50=[map50[e] for e in sorted(map50)], epochs_completed=epoch,
            epochs_planned=int(final[K.SUMMARY_EPOCHS_PLANNED]) if K.SUMMARY_EPOCHS_PLANNED in final else None,
            batches_per_epoch=int(final[K.SUMMARY_BATCHES_PER_EPOCH]) if K.SUMMARY_BATCHES_PER_EPOCH in final else None,
            memory=mem,
        ))
        record = record_from_keys(
            "replay", {**tags, K.TAG_BATCH_SIZE_EFFECTIVE: eff} if eff else tags, summary, status="RUNNING",
            epochs_completed=float(epoch), map50_last_epoch=max(map50) if map50 else None, map50=map50 or None,
            memory_samples=len(mem) or None,  # the summary's steady-memory figures cover them all
        )
        out.append((epoch, (end - t0) / 1000.0, guard.judge(record, val_peak_is_max=val_peak > train_peak)))
    return out
