"""The glue between Ultralytics' trainer and MLflow: one tracked run inside a training process.

It reads the trainer's state at setup, batch and epoch boundaries, turns it into contract
keys and hands batches to the background publisher. The per-batch methods touch only the
clock; everything else happens a few times per epoch or on the publisher's thread.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from . import keys as K
from .compare.policy import memory_limit_fraction
from .env_info import environment_params
from .log import warn
from .redact import redact_text, redacted_yaml_copy
from .telemetry.clock import BatchClock
from .telemetry.epoch import EpochInputs, epoch_metrics
from .telemetry.memory import memory_points, sampler_for
from .telemetry.monitor import MemoryMonitor
from .telemetry.summary import SummaryInputs, compute_summary
from .tracking.publisher import Publisher
from .tracking.run_open import open_run
from .tracking.settings import TrackingSettings
from .tracking.sink import Batch, Sink
from .tracking.store import probe
from .ultralytics_args import batch_request_tag, cache_mode, is_autobatch, train_imgsz

SPOOL_WRITE_INTERVAL_S = 0.5  # every per-batch point older than 1 s is in the spool (docs/durability.md)
REDACTED_DIR = ".sai_mlflow"  # under the Ultralytics run dir: redacted copies of files that are uploaded


def devices_of(trainer) -> int:
    """The `devices` tag: Ultralytics' world size (0 on the CPU, 1 on one GPU) as a device count."""
    return max(int(getattr(trainer, "world_size", 1) or 1), 1)


def dataset_name(audit) -> str:
    """The name a run's dataset input (and its logged model's metrics) carry: the data.yaml's folder, redacted."""
    return redact_text(Path(audit.data_yaml).parent.name) or "dataset"


class RunTracker:
    """Created in the process that logs (rank -1 or 0); `sink` may be given (tests), else MLflow."""

    def __init__(self, trainer, settings: TrackingSettings | None = None, sink: Sink | None = None) -> None:
        self.settings = settings or TrackingSettings.from_env()
        self._failed_hooks: set[str] = set()
        self.clock = BatchClock()
        self.requested_batch: int | None = None
        # the batch as asked: AutoBatch (-1, 0.7) rewrites trainer.args.batch in _setup_train, after this
        self.batch_request = getattr(getattr(trainer, "args", None), "batch", None)
        self.batches_per_epoch: int | None = None
        self.epoch_rows_start = 0
        self.epoch_wall_start = time.time()
        self.val_wall_start = 0.0
        self.val_seconds: list[float] = []
        self.epoch_seconds: list[float] = []
        self.map50: list[float] = []
        self.map50_95: list[float] = []
        self.last_train_epoch = 0
        self.train_peak = 0.0
        self.audit = getattr(trainer, "sai_audit", None)
        self._batch_cursor = 0
        self._mem_cursor = 0
        self.guard = self._make_guard()
        self.window_index = 0
        self._window_cursor = 0
        self.mem_offset = 0
        self.setup_tags: dict[str, str] = {}
        # drawn as memory/limit_gib: the limit compare-runs judges by
        self.limit_fraction = memory_limit_fraction(self.settings.policy_file)
        system_offset = 0
        if sink is not None:  # tests: an in-memory sink, no store
            self.client, self.run_id, self.sink, self.experiment_id = None, "", sink, ""
            self.resumed, self.existing_params = False, {}
        else:  # may raise (caller: tracking off); nothing is started before it
            opened = open_run(trainer, self.settings)
            self.client, self.run_id, self.sink = opened.client, opened.run_id, opened.sink
            self.experiment_id = opened.experiment_id
            self.resumed, self.existing_params = opened.resumed, opened.existing_params
            self.clock.offset, self.mem_offset, self.window_index, system_offset = opened.next_steps
        self.monitor = MemoryMonitor(sampler_for(trainer.device, getattr(trainer.args, "device", None)),
                                     self.settings.memory_interval_s,
                                     report=warn).start()
        self.system = self._start_system_metrics(system_offset)
        self.publisher = Publisher(
            self.sink, [self._collect_batches, self._collect_memory, self._collect_system],
            interval_s=self.settings.publish_interval_s, report=warn,
            write_interval_s=SPOOL_WRITE_INTERVAL_S, window_collectors=[self._collect_memory_window],
        ).start()

    def _start_system_metrics(self, step_offset: int):
        """MLflow's system metrics (telemetry/system.py) unless `tracking.system_metrics` is off."""
        if not self.settings.system_metrics:
            return None
        try:
            from .telemetry.system import SystemSampler

            return SystemSampler(self.settings.system_metrics_interval_s, step_offset).start()
        except Exception as e:
            warn(f"sai_mlflow: MLflow's system metrics are off for this run ({type(e).__name__}: {e})")

    def _make_guard(self):
        """The live guard (guard.py); a policy that cannot be read turns the guard off, never training."""
        try:
            from .guard import guard_from_settings

            return guard_from_settings(self.settings)
        except Exception as e:
            warn(f"sai_mlflow: the live guard is off for this run ({type(e).__name__}: {e})")
            return None

    # --- collectors (publisher thread) --------------------------------------------------------------
    def _collect_batches(self) -> Batch:
        rows = self.clock.rows
        n = len(rows)
        start, self._batch_cursor = self._batch_cursor, n
        base = self.clock.offset
        wall = self.clock.wall_ms
        pts = []
        for i in range(start, n):
            wait, compute, end = rows[i]
            ts, step = wall(end), base + i
            pts.append((K.BATCH_STEP_S, wait + compute, ts, step))
            pts.append((K.BATCH_DATA_WAIT_S, wait, ts, step))
            pts.append((K.BATCH_COMPUTE_S, compute, ts, step))
        return Batch(metrics=pts)

    def _collect_memory(self) -> Batch:
        samples = self.monitor.samples
        n = len(samples)
        start, self._mem_cursor = self._mem_cursor, n
        total = self.monitor.sampler.total_gib
        pts = [p for i, (ts, gib) in enumerate(samples[start:n])
               for p in memory_points(gib, total, self.limit_fraction, ts, self.mem_offset + start + i)]
        indices = self.monitor.indices
        if len(indices) > 1:  # DDP: each device at the same steps (the monitor keeps them at least as long)
            each = self.monitor.device_samples
            pts += [(K.memory_device_used_gib(d), gib, samples[start + i][0], self.mem_offset + start + i)
                    for i, row in enumerate(each[start:n]) for d, gib in zip(indices, row)]
        return Batch(metrics=pts)

    def _collect_memory_window(self) -> Batch:
        """Once per publish window (5 s), not per spool write: the window's highest sample."""
        samples = self.monitor.samples
        n = len(samples)
        start, self._window_cursor = self._window_cursor, n
        if start == n:
            return Batch()
        new = samples[start:n]
        self.window_index += 1
        return Batch(metrics=[(K.MEMORY_WINDOW_PEAK_GIB, max(g for _, g in new), new[-1][0], self.window_index - 1)])

    def _collect_system(self) -> Batch:
        return Batch(metrics=self.system.drain()) if self.system is not None else Batch()

    # --- setup ------------------------------------------------------------------------------------
    def on_setup_done(self, trainer) -> None:
        """After Ultralytics resolved every argument and built the loaders: params and tags."""
        args = vars(trainer.args)
        self.requested_batch = int(args.get("batch") or trainer.batch_size)
        params = {**args, **environment_params(trainer.device)}  # redacted by Publisher.put
        if self.existing_params:  # resume: MLflow refuses changed values; keep the originals
            params = {k: v for k, v in params.items() if k not in self.existing_params}
        train_path = (trainer.data or {}).get("train")
        on_tmpfs = False
        preset = self.audit or getattr(trainer, "sai_audit", None)
        if preset is not None:  # audited before (train's preflight, a probe): where the real images live
            on_tmpfs = bool(preset.on_tmpfs)
        elif train_path:
            from .data.audit import is_on_tmpfs

            first = train_path[0] if isinstance(train_path, list) else train_path
            on_tmpfs = is_on_tmpfs(first)
        tags = {
            K.TAG_BATCH_SIZE: batch_request_tag(self.batch_request) if is_autobatch(self.batch_request)
            else str(self.requested_batch),
            K.TAG_BATCH_SIZE_EFFECTIVE: str(trainer.batch_size),
            K.TAG_CACHE_MODE: cache_mode(args.get("cache")),
            K.TAG_DATA_ON_TMPFS: str(on_tmpfs).lower(),
            K.TAG_GPU: self.monitor.sampler.name,
            K.TAG_MODEL: Path(str(args.get("model"))).name,
            K.TAG_IMGSZ: str(train_imgsz(args.get("imgsz"))),
            K.TAG_STAGE: self.settings.stage,
            K.TAG_RUN_KIND: self.settings.run_kind,
            K.TAG_MEMORY_SOURCE: self.monitor.sampler.source,
            K.TAG_DEVICES: str(devices_of(trainer)),
        }
        self.setup_tags = tags
        # train's preflight findings (`preflight.<code>`): set on the trainer before the run existed
        self.publisher.put(Batch(params=params, tags={**getattr(trainer, "sai_preflight_tags", {}), **tags}))
        data_yaml = args.get("data")
        self.audit = self.audit or getattr(trainer, "sai_audit", None)  # a preflight may have audited already
        if self.audit is not None:
            self._publish_audit(self.audit)
        elif data_yaml:
            self._audit_now(str(data_yaml))

    def _audit_now(self, data_yaml: str) -> None:
        """Before the first batch, not beside it: on a small CPU box a background scan slowed training ~5 %."""
        try:
            from .data.audit import audit

            self.audit = audit(data_yaml, check_images=True)
            self._publish_audit(self.audit)
        except Exception as e:
            warn(f"sai_mlflow: dataset audit of {data_yaml} failed ({e}); data.* params and dataset_digest not logged")

    def _publish_audit(self, a) -> None:
        params = {k: v for k, v in a.as_params().items() if k not in self.existing_params}
        self.publisher.put(Batch(params=params, tags={K.TAG_DATASET_DIGEST: a.digest}))
        if self.client is not None and not self.resumed:
            try:
                from mlflow.entities import Dataset, DatasetInput, InputTag

                ds = Dataset(name=dataset_name(a), digest=a.digest,
                             source_type="local", source=redact_text(a.data_yaml))
                self.client.log_inputs(self.run_id, datasets=[DatasetInput(
                    ds, tags=[InputTag("mlflow.data.context", "train")])])
            except Exception as e:
                warn(f"sai_mlflow: could not log the dataset input ({e})")

    def on_train_start(self, trainer) -> None:
        self.batches_per_epoch = len(trainer.train_loader)
        self.clock.offset = max(self.clock.offset, trainer.start_epoch * self.batches_per_epoch)

    # --- epochs -----------------------------------------------------------------------------------
    def on_epoch_start(self, trainer) -> None:
        self.epoch_rows_start = len(self.clock.rows)
        self.epoch_wall_start = time.time()
        self.monitor.end_phase()  # setup or the idle gap before this epoch ends; training starts
        self.clock.epoch_start()

    def on_train_epoch_end(self, trainer) -> None:
        self.train_peak = self.monitor.end_phase()  # validation starts
        self.val_wall_start = time.time()
        self.last_train_epoch = trainer.epoch + 1

    def on_fit_epoch_end(self, trainer, torch_peaks: tuple[float, float] | None = None) -> None:
        """`torch_peaks`: the CUDA allocator peaks of this epoch, the largest over every rank (trainer.py)."""
        epoch = trainer.epoch + 1
        if epoch > self.last_train_epoch:
            return  # Ultralytics' final validation of best.pt (logged at epochs+1): not an epoch
        now = time.time()
        val_peak = self.monitor.end_phase()
        ts = int(now * 1000)
        validated = bool(trainer.args.val) or epoch >= trainer.epochs or getattr(trainer, "stop", False) \
            or getattr(getattr(trainer, "stopper", None), "possible_stop", False)
        duration = now - self.epoch_wall_start
        self.epoch_seconds.append(duration)
        self.val_seconds.append(now - self.val_wall_start)
        values = epoch_metrics(EpochInputs(
            epoch=epoch, epochs_planned=int(trainer.epochs),
            losses=trainer.label_loss_items(trainer.tloss, prefix="train"),
            val_metrics=(trainer.metrics or {}) if validated else None,
            lr=getattr(trainer, "lr", None) or {},
            train_peak_gib=self.train_peak, val_peak_gib=val_peak, torch_peaks_gib=torch_peaks,
            step_s=[w + c for w, c, _ in self.clock.rows[self.epoch_rows_start:]],
            duration_s=duration, epoch_durations_s=self.epoch_seconds,
        ))
        if K.VAL_MAP50 in values:
            self.map50.append(values[K.VAL_MAP50])
        if K.VAL_MAP50_95 in values:
            self.map50_95.append(values[K.VAL_MAP50_95])
        points = [(k, v, ts, epoch) for k, v in values.items()]
        summary = self._summary(trainer, epoch)
        points += [(k, v, ts, 0) for k, v in summary.items()]
        self.publisher.put(Batch(metrics=points, tags={K.TAG_BATCH_SIZE_EFFECTIVE: str(trainer.batch_size)}))
        if self.guard is not None and validated:
            self.guard.after_epoch(self, trainer, epoch, values, summary)

    def _summary(self, trainer, epochs_completed: int) -> dict[str, float]:
        rows = list(self.clock.rows)
        return compute_summary(SummaryInputs(
            step_s=[w + c for w, c, _ in rows],
            data_wait_s=[w for w, _, _ in rows],
            batch_size_effective=int(trainer.batch_size),
            peak_gib=self.monitor.peak_gib or None,
            total_gib=self.monitor.sampler.total_gib,
            map50=self.map50, map50_95=self.map50_95,
            epochs_completed=epochs_completed,
            epochs_planned=int(trainer.epochs),
            batches_per_epoch=self.batches_per_epoch,
            val_s=self.val_seconds,
        ))

    # --- the end ------------------------------------------------------------------------------------
    def finish(self, trainer, status: str | None) -> bool:
        """Stop sampling, log the closing artifacts, ship everything (bounded wait). True if all arrived."""
        self.monitor.stop()
        if self.system is not None:
            self.system.stop()
        save_dir = Path(trainer.save_dir)
        summary = self._summary(trainer, self.last_train_epoch) if self.last_train_epoch else {}  # once, for all below
        try:
            from .run_artifacts import write_batch_table, write_memory_timeline

            table = write_batch_table(save_dir / "batch_timings.csv", self.clock)
            self.publisher.put_artifact(str(table))
            png = write_memory_timeline(save_dir / K.ARTIFACT_MEMORY_TIMELINE, self.monitor.samples,
                                        self.monitor.sampler.total_gib, self.monitor.sampler.source)
            if png:
                self.publisher.put_artifact(str(png))
        except Exception as e:
            warn(f"sai_mlflow: could not write the run's tables/plots ({e})")
        if self.last_train_epoch:
            self._write_run_report(trainer, save_dir, summary)
        if (save_dir / "results.csv").is_file():
            self.publisher.put_artifact(str(save_dir / "results.csv"))
        if (save_dir / "args.yaml").is_file():  # a redacted copy: args may hold a URL with credentials
            try:
                self.publisher.put_artifact(str(redacted_yaml_copy(save_dir / "args.yaml",
                                                                   save_dir / REDACTED_DIR / "args.yaml")))
            except Exception as e:
                warn(f"sai_mlflow: args.yaml not uploaded ({type(e).__name__}: {e})")
        for name in ("best.pt", "last.pt"):
            if (Path(trainer.wdir) / name).is_file():
                self.publisher.put_artifact(str(Path(trainer.wdir) / name), "weights")
        if summary:
            self.publisher.put(Batch(metrics=[(k, v, int(time.time() * 1000), 0) for k, v in summary.items()]))
        if status == "FINISHED":
            self._log_model(trainer, summary)
        complete = self.publisher.close(status, timeout=self.settings.final_flush_timeout_s)
        if not complete:
            warn(f"sai_mlflow: the tracking store did not take everything within "
                   f"{self.settings.final_flush_timeout_s:.0f} s; run {self.run_id} is incomplete in MLflow")
        return complete

    def _write_run_report(self, trainer, save_dir: Path, summary: dict[str, float]) -> None:
        """The run's own summary.md and run_plot.png (run_artifacts.py), beside memory_timeline.png."""
        try:
            from .run_artifacts import RunFacts, write_run_report

            rows = list(self.clock.rows)
            t0 = self.monitor.samples[0][0] if self.monitor.samples else 0
            facts = RunFacts(
                run_id=self.run_id, run_name=self.settings.run_name or str(trainer.args.name),
                batch_size=self.requested_batch, batch_size_effective=int(trainer.batch_size),
                summary=summary,
                step_s=[(self.clock.offset + i, w + c) for i, (w, c, _) in enumerate(rows)],
                memory=[((ts - t0) / 1000.0, g) for ts, g in self.monitor.samples],
                map50=self.map50, memory_source=self.monitor.sampler.source,
                tags=dict(self.setup_tags))  # cache_mode, data_on_tmpfs, devices: read by the record factory
            for path in write_run_report(save_dir, facts, self.limit_fraction):
                self.publisher.put_artifact(str(path))
        except Exception as e:
            warn(f"sai_mlflow: could not write the run's summary report/plot ({type(e).__name__}: {e})")

    def _log_model(self, trainer, summary: dict[str, float]) -> None:
        """best.pt as an MLflow pyfunc model (docs/registry.md), before the run is closed; bounded wait."""
        best = Path(getattr(trainer, "best", "") or "")
        if not (self.settings.log_model and best.is_file()):
            return
        from .model import log_detector_model, model_name_for

        try:
            if self.client is None:
                raise ConnectionError("the run is spooled locally")
            probe(self.settings.tracking_uri)
        except ConnectionError as e:
            spool_model = getattr(self.sink, "log_model", None)
            if spool_model is not None:
                spool_model(str(best), trainer.data["names"], train_imgsz(trainer.args.imgsz))
                warn(f"sai_mlflow: the model will be logged when the spool is uploaded ({e})")
            else:
                warn(f"sai_mlflow: the model was not logged ({e}); best.pt is in the run's spooled artifacts")
            return

        def work() -> None:
            try:
                log_detector_model(
                    self.client, self.run_id, best, trainer.data["names"], train_imgsz(trainer.args.imgsz),
                    name=model_name_for(self.settings.run_name or str(trainer.args.name)), metrics=summary,
                    dataset=(dataset_name(self.audit), self.audit.digest) if self.audit is not None else None)
            except Exception as e:
                warn(f"sai_mlflow: could not log the model ({type(e).__name__}: {e}); training result unaffected")

        worker = threading.Thread(target=work, name="sai-log-model", daemon=True)
        worker.start()
        worker.join(timeout=max(30.0, self.settings.final_flush_timeout_s))
        if worker.is_alive():
            warn("sai_mlflow: logging the model is taking too long (store slow or down); it was not waited for")

    def hook_failed(self, hook: str, error: BaseException) -> None:
        """Tracking never kills training: a hook that fails is reported once and training goes on."""
        if hook not in self._failed_hooks:
            self._failed_hooks.add(hook)
            warn(f"sai_mlflow: tracking hook {hook} failed ({type(error).__name__}: {error}); training continues")
