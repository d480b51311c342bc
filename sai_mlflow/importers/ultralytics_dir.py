"""import-ultralytics: an existing Ultralytics run dir -> an MLflow run with `run_kind=import`.

What such a dir tells: every trainer argument (args.yaml), per-epoch losses, precision/recall/mAP
and learning rates plus the cumulative wall time (results.csv), and the weights. What it cannot
tell is left absent, so compare-runs says "not judged" instead of guessing: memory (no peak, no
leak check), per-batch speed (no s/batch, images/s, warm-up or data wait), the GPU name, whether
the data lived on a tmpfs, and the batch actually trained with after Ultralytics' first-epoch OOM
halving (args.yaml is written before training).

Projected time: `summary/eta_full_s` = planned epochs x the median measured epoch duration (the
`time` column, validation included), so imported runs can still be ranked by speed.

Idempotent: the run carries `sai.import_fingerprint` = hash of args.yaml + results.csv; importing
the same dir again finds it and logs nothing. A dir that has since trained further has a new
fingerprint and is imported as a new run.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import keys as K
from ..redact import redact_mapping, redacted_yaml_copy
from ..telemetry.summary import SummaryInputs, compute_summary
from ..ultralytics_args import param_text
from . import TAG_IMPORT_SOURCE, ImportFailed, ImportResult, atomic_run, find_imported, fingerprint
from . import ultralytics_mapping as U


def read_results(path: Path) -> list[dict[str, float]]:
    try:
        return U.read_results(path)
    except U.UltralyticsError as e:
        raise ImportFailed(str(e)) from None


def _check_numbers(args: dict, rows: list[dict[str, float]], args_file: Path, csv_file: Path) -> None:
    """NaN/inf where Ultralytics wrote a count is a damaged file: said with its place and the fix, before any write."""
    for key, v in args.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ImportFailed(f"{args_file}: {key}: {v} is not a value Ultralytics trains with; write the number "
                               "the run used, then import again")
    for i, r in enumerate(rows, start=1):
        ep = r["epoch"]
        if not (math.isfinite(ep) and ep >= 0 and ep.is_integer()):
            raise ImportFailed(f"{csv_file}: data row {i} has epoch {ep:g}; every row's epoch is a whole number "
                               "(1, 2, …): fix or delete that row, then import again")


def _digest(data: Any) -> str | None:
    """The dataset digest, when args.yaml's data.yaml still resolves here."""
    if not data or not Path(str(data)).is_file():
        return None
    try:
        from ..data.audit import audit

        return audit(str(data), check_images=False).digest
    except Exception:
        return None


@dataclass(frozen=True)
class RunDir:
    """An Ultralytics run folder read and checked: its arguments and its results rows."""

    path: Path
    args: dict
    rows: list[dict[str, float]]

    @property
    def args_file(self) -> Path:
        return self.path / "args.yaml"

    @property
    def csv_file(self) -> Path:
        return self.path / "results.csv"


def read_run_dir(run_dir: str | Path) -> RunDir:
    """args.yaml and results.csv read and checked, before any store is opened (a refusal creates nothing)."""
    import yaml

    d = Path(run_dir)
    args_file, csv_file = d / "args.yaml", d / "results.csv"
    if not d.is_dir():
        raise ImportFailed(f"{d}: not a directory")
    if not args_file.is_file():
        raise ImportFailed(f"{d}: no args.yaml; not an Ultralytics run dir")
    try:
        args = yaml.safe_load(args_file.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ImportFailed(f"{args_file}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError:
        raise ImportFailed(f"{args_file}: not valid YAML") from None
    if not isinstance(args, dict):
        raise ImportFailed(f"{args_file}: expected a mapping of trainer arguments")
    rows = read_results(csv_file) if csv_file.is_file() else []
    _check_numbers(args, rows, args_file, csv_file)
    return RunDir(d, args, rows)


def import_run_dir(client, run_dir: str | Path | RunDir, experiment: str, weights: bool = True) -> ImportResult:
    from ..backend import log_records, source_tags
    from ..tracking.store import get_or_create_experiment

    read = run_dir if isinstance(run_dir, RunDir) else read_run_dir(run_dir)
    d, args, rows, args_file, csv_file = read.path, read.args, read.rows, read.args_file, read.csv_file
    exp_id = get_or_create_experiment(client, experiment)
    fp = fingerprint("ultralytics-dir", args_file.read_bytes(), csv_file.read_bytes() if csv_file.is_file() else b"")
    old = find_imported(client, exp_id, fp)
    name = args.get("name") or d.name
    if old is not None:
        return ImportResult(old.info.run_id, old.info.run_name, experiment, "already imported", exp_id)

    # times: args.yaml is written when training starts; results.csv's `time` is seconds since then
    t0 = args_file.stat().st_mtime
    times = U.cumulative_times(rows)
    durations = U.epoch_durations(times) if times else []
    metrics: list[tuple[str, float, int, int]] = []

    def add(key: str, value: float, t_s: float, step: int) -> None:
        if value is not None and math.isfinite(value):
            metrics.append((key, float(value), int(t_s * 1000), int(step)))

    for i, r in enumerate(rows):
        ep = int(r["epoch"])
        t_end = t0 + (times[i] if times else i + 1)
        for col, v in r.items():
            key = K.ULTRALYTICS_METRIC_MAP.get(col)
            if key:
                add(key, v, t_end, ep)
        if durations:
            add(K.EPOCH_DURATION_S, durations[i], t_end, ep)

    planned = U.planned_epochs(args)
    maps = [r[U.RESULTS_MAP50] for r in rows if U.RESULTS_MAP50 in r]
    maps95 = [r[U.RESULTS_MAP50_95] for r in rows if U.RESULTS_MAP50_95 in r]
    summary = compute_summary(SummaryInputs(map50=maps, map50_95=maps95, epochs_completed=len(rows),
                                            epochs_planned=planned))
    summary.pop(K.SUMMARY_WARMUP_BATCHES, None)  # no per-batch data: a 0 here would be a guess
    eta = U.projected_time_s(durations, planned)
    if eta is not None:
        summary[K.SUMMARY_ETA_FULL_S] = eta
    t_last = t0 + (times[-1] if times else 0.0)
    for key, v in summary.items():
        add(key, v, t_last, 0)

    # the fingerprint is set last (atomic_run): a failed import leaves none behind
    tags = {K.TAG_RUN_KIND: "import", TAG_IMPORT_SOURCE: str(d.resolve()), **U.identity_tags(args)}
    digest = _digest(args.get("data"))
    if digest:
        tags[K.TAG_DATASET_DIGEST] = digest
    params = redact_mapping({K.sanitize_key(str(k)): param_text(v) for k, v in args.items()})
    if len(params) != len(args):
        raise ImportFailed(f"{args_file}: two argument names become the same MLflow key "
                           f"({_collision(list(args))}); rename one")
    end = max(t_last, csv_file.stat().st_mtime if csv_file.is_file() else t0)

    with (atomic_run(client, exp_id, str(name), int(t0 * 1000), fp, tags=source_tags()) as rid,
          tempfile.TemporaryDirectory() as tmp):
        log_records(client, rid, metrics=metrics, params=params, tags=redact_mapping(tags))
        client.log_artifact(rid, str(redacted_yaml_copy(args_file, Path(tmp) / "args.yaml")))  # never the raw file
        if csv_file.is_file():
            client.log_artifact(rid, str(csv_file))
        if weights and (d / "weights").is_dir():
            for w in sorted((d / "weights").glob("*.pt")):
                client.log_artifact(rid, str(w), artifact_path="weights")
        client.set_terminated(rid, "FINISHED", end_time=int(end * 1000))
    return ImportResult(rid, str(name), experiment, "imported", exp_id)


def _collision(names: list) -> str:
    seen: dict[str, str] = {}
    for n in names:
        k = K.sanitize_key(str(n))
        if k in seen:
            return f"{seen[k]!r} and {n!r} -> {k!r}"
        seen[k] = str(n)
    return ""


__all__ = ["import_run_dir", "read_results"]
