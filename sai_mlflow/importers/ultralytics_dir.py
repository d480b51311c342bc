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

import csv
import io
import math
import tempfile
from pathlib import Path
from typing import Any

from .. import keys as K
from ..redact import redact_mapping, redacted_yaml_copy
from ..telemetry.stats import median
from ..telemetry.summary import SummaryInputs, compute_summary
from ..ultralytics_args import cache_mode, param_text, train_imgsz
from . import TAG_IMPORT_SOURCE, ImportFailed, ImportResult, atomic_run, find_imported, fingerprint


def read_results(path: Path) -> list[dict[str, float]]:
    """results.csv rows as {column: float}; headers stripped (older versions pad them)."""
    rows = []
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ImportFailed(f"{path}: not UTF-8 text (byte {e.start}); not an Ultralytics results.csv") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    if "epoch" not in header:
        raise ImportFailed(f"{path}: no 'epoch' column; not an Ultralytics results.csv")
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


def _digest_and_tmpfs(data: Any) -> tuple[str | None, bool | None]:
    """The dataset digest and tmpfs flag, when args.yaml's data.yaml still resolves here."""
    if not data or not Path(str(data)).is_file():
        return None, None
    try:
        from ..data.audit import audit

        a = audit(str(data), check_images=False)
        return a.digest, a.on_tmpfs
    except Exception:
        return None, None


def import_run_dir(client, run_dir: str | Path, experiment: str, weights: bool = True) -> ImportResult:
    import yaml
    from mlflow.entities import Metric, Param, RunTag

    from ..tracking.batching import log_batch_chunked
    from ..tracking.store import get_or_create_experiment

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

    exp_id = get_or_create_experiment(client, experiment)
    fp = fingerprint("ultralytics-dir", args_file.read_bytes(), csv_file.read_bytes() if csv_file.is_file() else b"")
    old = find_imported(client, exp_id, fp)
    name = args.get("name") or d.name
    if old is not None:
        return ImportResult(old.info.run_id, old.info.run_name, experiment, "already imported")

    # times: args.yaml is written when training starts; results.csv's `time` is seconds since then
    t0 = args_file.stat().st_mtime
    times = [r.get("time") for r in rows]
    have_time = bool(rows) and all(t is not None and math.isfinite(t) and t >= 0 for t in times)
    metrics: list[Metric] = []

    def add(key: str, value: float, t_s: float, step: int) -> None:
        if value is not None and math.isfinite(value):
            metrics.append(Metric(key, float(value), int(t_s * 1000), int(step)))

    durations = []
    prev = 0.0
    for i, r in enumerate(rows):
        ep = int(r["epoch"])
        t_end = t0 + (r["time"] if have_time else i + 1)
        for col, v in r.items():
            key = K.ULTRALYTICS_METRIC_MAP.get(col)
            if key:
                add(key, v, t_end, ep)
        if have_time:
            # a clock that goes back restarted (Ultralytics restarts it on --resume): that epoch took `time`
            took = r["time"] - prev if r["time"] >= prev else r["time"]
            durations.append(took)
            add(K.EPOCH_DURATION_S, took, t_end, ep)
            prev = r["time"]

    batch = args.get("batch")
    batch = int(batch) if isinstance(batch, (int, float)) and batch >= 1 else None
    planned = int(args["epochs"]) if isinstance(args.get("epochs"), (int, float)) else None
    maps = [r[c] for r in rows for c in ("metrics/mAP50(B)",) if c in r]
    maps95 = [r[c] for r in rows for c in ("metrics/mAP50-95(B)",) if c in r]
    summary = compute_summary(SummaryInputs(map50=maps, map50_95=maps95, epochs_completed=len(rows),
                                            epochs_planned=planned))
    summary.pop(K.SUMMARY_WARMUP_BATCHES, None)  # no per-batch data: a 0 here would be a guess
    if durations and planned:
        summary[K.SUMMARY_ETA_FULL_S] = planned * median(durations)
    t_last = t0 + (rows[-1]["time"] if have_time and rows else 0.0)
    for key, v in summary.items():
        add(key, v, t_last, 0)

    digest, on_tmpfs = _digest_and_tmpfs(args.get("data"))
    tags = {K.TAG_RUN_KIND: "import", TAG_IMPORT_SOURCE: str(d.resolve())}  # the fingerprint is set last
    if batch:
        tags[K.TAG_BATCH_SIZE] = str(batch)
    tags[K.TAG_CACHE_MODE] = cache_mode(args.get("cache"))
    if args.get("model"):
        tags[K.TAG_MODEL] = Path(str(args["model"])).name
    imgsz = train_imgsz(args.get("imgsz"))
    if imgsz:
        tags[K.TAG_IMGSZ] = str(imgsz)
    if digest:
        tags[K.TAG_DATASET_DIGEST] = digest
    if on_tmpfs is not None:
        tags[K.TAG_DATA_ON_TMPFS] = str(on_tmpfs).lower()
    params = redact_mapping({K.sanitize_key(str(k)): param_text(v) for k, v in args.items()})
    if len(params) != len(args):
        raise ImportFailed(f"{args_file}: two argument names become the same MLflow key "
                           f"({_collision(list(args))}); rename one")
    end = max(t_last, csv_file.stat().st_mtime if csv_file.is_file() else t0)

    with atomic_run(client, exp_id, str(name), int(t0 * 1000), fp) as rid, tempfile.TemporaryDirectory() as tmp:
        log_batch_chunked(client, rid, metrics=metrics, params=[Param(k, v) for k, v in params.items()],
                          tags=[RunTag(k, v) for k, v in tags.items()])
        client.log_artifact(rid, str(redacted_yaml_copy(args_file, Path(tmp) / "args.yaml")))  # never the raw file
        if csv_file.is_file():
            client.log_artifact(rid, str(csv_file))
        if weights and (d / "weights").is_dir():
            for w in sorted((d / "weights").glob("*.pt")):
                client.log_artifact(rid, str(w), artifact_path="weights")
        client.set_terminated(rid, "FINISHED", end_time=int(end * 1000))
    return ImportResult(rid, str(name), experiment, "imported")


def _collision(names: list) -> str:
    seen: dict[str, str] = {}
    for n in names:
        k = K.sanitize_key(str(n))
        if k in seen:
            return f"{seen[k]!r} and {n!r} -> {k!r}"
        seen[k] = str(n)
    return ""


__all__ = ["import_run_dir", "read_results"]
