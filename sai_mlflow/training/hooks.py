"""The Ultralytics hook adapter: the trainer's state at setup, train start and epoch boundaries → the run's
state (state.py) and contract keys for the publisher. A few calls per epoch; the per-batch hooks only touch the
clock (trainer.py)."""

from __future__ import annotations

import time
from pathlib import Path

from .. import keys as K
from ..compare.record import parse_number
from ..log import warn
from ..redact import redact_text
from ..telemetry.epoch import EpochInputs, epoch_metrics
from ..tracking.sink import Batch
from ..ultralytics_args import batch_request_tag, cache_mode, is_autobatch, train_imgsz
from .env_info import environment_params
from .state import dataset_name


def devices_of(trainer) -> int:
    """The `devices` tag: Ultralytics' world size (0 on the CPU, 1 on one GPU) as a device count."""
    return max(int(getattr(trainer, "world_size", 1) or 1), 1)


def setup_done(t, trainer) -> None:
    """After Ultralytics resolved every argument and built the loaders: params and tags."""
    s = t.state
    args = vars(trainer.args)
    s.requested_batch = int(args.get("batch") or trainer.batch_size)
    params = {**args, **environment_params(trainer.device)}  # redacted by Publisher.put
    if t.existing_params:  # resume: MLflow refuses changed values; keep the originals
        params = {k: v for k, v in params.items() if k not in t.existing_params}
    train_path = (trainer.data or {}).get("train")
    on_tmpfs = False
    preset = s.audit or getattr(trainer, "sai_audit", None)
    if preset is not None:  # audited before (train's preflight, a probe): where the real images live
        on_tmpfs = bool(preset.on_tmpfs)
    elif train_path:
        from ..data.audit import is_on_tmpfs

        first = train_path[0] if isinstance(train_path, list) else train_path
        on_tmpfs = is_on_tmpfs(first)
    tags = {
        K.TAG_BATCH_SIZE: batch_request_tag(s.batch_request) if is_autobatch(s.batch_request)
        else str(s.requested_batch),
        K.TAG_BATCH_SIZE_EFFECTIVE: str(trainer.batch_size),
        K.TAG_CACHE_MODE: cache_mode(args.get("cache")),
        K.TAG_DATA_ON_TMPFS: str(on_tmpfs).lower(),
        K.TAG_GPU: t.monitor.sampler.name,
        K.TAG_MODEL: Path(str(args.get("model"))).name,
        K.TAG_IMGSZ: str(train_imgsz(args.get("imgsz"))),
        K.TAG_STAGE: t.settings.stage,
        K.TAG_RUN_KIND: t.settings.run_kind,
        K.TAG_MEMORY_SOURCE: t.monitor.sampler.source,
        K.TAG_DEVICES: str(devices_of(trainer)),
    }
    if t.resumed and is_autobatch(parse_number(t.existing_tags.get(K.TAG_BATCH_SIZE))):
        # --resume of an AutoBatch run: the checkpoint's args hold the settled batch; the request stays as asked
        tags[K.TAG_BATCH_SIZE] = t.existing_tags[K.TAG_BATCH_SIZE]
    s.setup_tags = tags
    # train's preflight findings (`preflight.<code>`): set on the trainer before the run existed
    t.publisher.put(Batch(params=params, tags={**getattr(trainer, "sai_preflight_tags", {}), **tags}))
    data_yaml = args.get("data")
    s.audit = s.audit or getattr(trainer, "sai_audit", None)  # a preflight may have audited already
    if s.audit is not None:
        _publish_audit(t, s.audit)
    elif data_yaml:
        _audit_now(t, str(data_yaml))


def _audit_now(t, data_yaml: str) -> None:
    """Before the first batch, not beside it: on a small CPU box a background scan slowed training ~5 %."""
    try:
        from ..data.audit import audit

        t.state.audit = audit(data_yaml, check_images=True)
        _publish_audit(t, t.state.audit)
    except Exception as e:
        warn(f"sai_mlflow: dataset audit of {data_yaml} failed ({e}); data.* params and dataset_digest not logged")


def _publish_audit(t, a) -> None:
    params = {k: v for k, v in a.as_params().items() if k not in t.existing_params}
    t.publisher.put(Batch(params=params, tags={K.TAG_DATASET_DIGEST: a.digest}))
    if t.backend is not None and not t.resumed:
        try:
            t.backend.log_dataset(t.run_id, dataset_name(a), a.digest, redact_text(a.data_yaml))
        except Exception as e:
            warn(f"sai_mlflow: could not log the dataset input ({e})")


def train_start(t, trainer) -> None:
    s = t.state
    s.batches_per_epoch = len(trainer.train_loader)
    s.clock.offset = max(s.clock.offset, trainer.start_epoch * s.batches_per_epoch)


def epoch_start(t, trainer) -> None:
    s = t.state
    s.epoch_rows_start = len(s.clock.rows)
    s.epoch_wall_start = time.time()
    t.monitor.end_phase()  # setup or the idle gap before this epoch ends; training starts
    s.clock.epoch_start()


def train_epoch_end(t, trainer) -> None:
    s = t.state
    s.train_peak = t.monitor.end_phase()  # validation starts
    s.val_wall_start = time.time()
    s.last_train_epoch = trainer.epoch + 1


def fit_epoch_end(t, trainer, torch_peaks: tuple[float, float] | None = None) -> None:
    """`torch_peaks`: the CUDA allocator peaks of this epoch, the largest over every rank (trainer.py)."""
    s = t.state
    epoch = trainer.epoch + 1
    if epoch > s.last_train_epoch:
        return  # Ultralytics' final validation of best.pt (logged at epochs+1): not an epoch
    now = time.time()
    val_peak = t.monitor.end_phase()
    ts = int(now * 1000)
    validated = bool(trainer.args.val) or epoch >= trainer.epochs or getattr(trainer, "stop", False) \
        or getattr(getattr(trainer, "stopper", None), "possible_stop", False)
    duration = now - s.epoch_wall_start
    s.epoch_seconds.append(duration)
    s.val_seconds.append(now - s.val_wall_start)
    values = epoch_metrics(EpochInputs(
        epoch=epoch, epochs_planned=int(trainer.epochs),
        losses=trainer.label_loss_items(trainer.tloss, prefix="train"),
        val_metrics=(trainer.metrics or {}) if validated else None,
        lr=getattr(trainer, "lr", None) or {},
        train_peak_gib=s.train_peak, val_peak_gib=val_peak, torch_peaks_gib=torch_peaks,
        step_s=[w + c for w, c, _ in s.clock.rows[s.epoch_rows_start:]],
        duration_s=duration, epoch_durations_s=s.epoch_seconds,
    ))
    if K.VAL_MAP50 in values:
        s.map50.append(values[K.VAL_MAP50])
    if K.VAL_MAP50_95 in values:
        s.map50_95.append(values[K.VAL_MAP50_95])
    points = [(k, v, ts, epoch) for k, v in values.items()]
    summary = s.summary(t.monitor, trainer.batch_size, epoch, trainer.epochs)
    points += [(k, v, ts, 0) for k, v in summary.items()]
    t.publisher.put(Batch(metrics=points, tags={K.TAG_BATCH_SIZE_EFFECTIVE: str(trainer.batch_size)}))
    if t.guard is not None and validated:
        t.guard.after_epoch(t, trainer, epoch, values, summary)
