"""The end of a tracked run: stop sampling, the summary computed once for everything below, the closing
artifacts and the run's own report, the model (bounded wait), and the final flush (bounded)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from .. import keys as K
from ..log import warn
from ..redact import redacted_yaml_copy
from ..tracking.address import probe
from ..tracking.sink import Batch
from ..ultralytics_args import train_imgsz
from .state import dataset_name

REDACTED_DIR = ".sai_mlflow"  # under the Ultralytics run dir: redacted copies of files that are uploaded


def finish(t, trainer, status: str | None) -> bool:
    """Stop sampling, log the closing artifacts, ship everything (bounded wait). True if all arrived."""
    s = t.state
    t.monitor.stop()
    if t.system is not None:
        t.system.stop()
    save_dir = Path(trainer.save_dir)
    summary = s.summary(t.monitor, trainer.batch_size, s.last_train_epoch, trainer.epochs) \
        if s.last_train_epoch else {}  # once, for all below
    try:
        from .run_artifacts import write_batch_table, write_memory_timeline

        table = write_batch_table(save_dir / "batch_timings.csv", s.clock)
        t.publisher.put_artifact(str(table))
        png = write_memory_timeline(save_dir / K.ARTIFACT_MEMORY_TIMELINE, t.monitor.samples,
                                    t.monitor.sampler.total_gib, t.monitor.sampler.source)
        if png:
            t.publisher.put_artifact(str(png))
    except Exception as e:
        warn(f"sai_mlflow: could not write the run's tables/plots ({e})")
    if s.last_train_epoch:
        _write_run_report(t, trainer, save_dir, summary)
    if (save_dir / "results.csv").is_file():
        t.publisher.put_artifact(str(save_dir / "results.csv"))
    if (save_dir / "args.yaml").is_file():  # a redacted copy: args may hold a URL with credentials
        try:
            copy = redacted_yaml_copy(save_dir / "args.yaml", save_dir / REDACTED_DIR / "args.yaml")
            t.publisher.put_artifact(str(copy))
        except Exception as e:
            warn(f"sai_mlflow: args.yaml not uploaded ({type(e).__name__}: {e})")
    for name in ("best.pt", "last.pt"):
        if (Path(trainer.wdir) / name).is_file():
            t.publisher.put_artifact(str(Path(trainer.wdir) / name), "weights")
    if summary:
        t.publisher.put(Batch(metrics=[(k, v, int(time.time() * 1000), 0) for k, v in summary.items()]))
    if status == "FINISHED":
        _log_model(t, trainer, summary)
    complete = t.publisher.close(status, timeout=t.settings.final_flush_timeout_s)
    if not complete:
        warn(f"sai_mlflow: the tracking store did not take everything within "
             f"{t.settings.final_flush_timeout_s:.0f} s; run {t.run_id} is incomplete in MLflow")
    return complete


def _write_run_report(t, trainer, save_dir: Path, summary: dict[str, float]) -> None:
    """The run's own summary.md and run_plot.png (run_artifacts.py), beside memory_timeline.png."""
    try:
        from .run_artifacts import RunFacts, write_run_report

        s = t.state
        rows = list(s.clock.rows)
        t0 = t.monitor.samples[0][0] if t.monitor.samples else 0
        facts = RunFacts(
            run_id=t.run_id, run_name=t.settings.run_name_for(trainer.args.name),
            batch_size=s.setup_tags.get(K.TAG_BATCH_SIZE, s.requested_batch),  # the request as tagged: -1, 0.7
            batch_size_effective=int(trainer.batch_size),
            summary=summary,
            step_s=[(s.clock.offset + i, w + c) for i, (w, c, _) in enumerate(rows)],
            memory=[((ts - t0) / 1000.0, g) for ts, g in t.monitor.samples],
            map50=s.map50, memory_source=t.monitor.sampler.source,
            tags=dict(s.setup_tags))  # cache_mode, data_on_tmpfs, devices: read by the record factory
        for path in write_run_report(save_dir, facts, t.limit_fraction):
            t.publisher.put_artifact(str(path))
    except Exception as e:
        warn(f"sai_mlflow: could not write the run's summary report/plot ({type(e).__name__}: {e})")


def _log_model(t, trainer, summary: dict[str, float]) -> None:
    """best.pt as an MLflow pyfunc model (docs/registry.md), before the run is closed; bounded wait."""
    best = Path(getattr(trainer, "best", "") or "")
    if not (t.settings.log_model and best.is_file()):
        return
    from ..model import model_name_for

    try:
        if t.backend is None:
            raise ConnectionError("the run is spooled locally")
        probe(t.settings.tracking_uri)
    except ConnectionError as e:
        spool_model = getattr(t.sink, "log_model", None)
        if spool_model is not None:
            spool_model(str(best), trainer.data["names"], train_imgsz(trainer.args.imgsz))
            warn(f"sai_mlflow: the model will be logged when the spool is uploaded ({e})")
        else:
            warn(f"sai_mlflow: the model was not logged ({e}); best.pt is in the run's spooled artifacts")
        return
    audit = t.state.audit

    def work() -> None:
        try:
            t.backend.log_model(
                t.run_id, best, trainer.data["names"], train_imgsz(trainer.args.imgsz),
                name=model_name_for(t.settings.run_name_for(trainer.args.name)), metrics=summary,
                dataset=(dataset_name(audit), audit.digest) if audit is not None else None)
        except Exception as e:
            warn(f"sai_mlflow: could not log the model ({type(e).__name__}: {e}); training result unaffected")

    worker = threading.Thread(target=work, name="sai-log-model", daemon=True)
    worker.start()
    worker.join(timeout=max(30.0, t.settings.final_flush_timeout_s))
    if worker.is_alive():
        warn("sai_mlflow: logging the model is taking too long (store slow or down); it was not waited for")
