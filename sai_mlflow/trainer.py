"""`TrackedDetectionTrainer`: Ultralytics' DetectionTrainer with MLflow tracking built in.

Callbacks are module-level functions registered in `__init__`, not bound methods and not
`model.add_callback`: Ultralytics' DDP launcher rebuilds `trainer.__class__` from its module
in a fresh process (ultralytics#6168), so only callbacks that the class itself installs
survive, and module functions pickle by reference. Settings and the run id travel through
the environment (see tracking/settings.py). Only rank -1/0 records; the launching process
(rank -1) sets the run's final status.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import DEFAULT_CFG, RANK
from ultralytics.utils import callbacks as ul_callbacks

from .backend import backend_for, source_tags
from .errors import StoreConfigError
from .log import warn
from .redact import redact_process_output
from .telemetry.ranks import gather_epoch_peaks
from .tracking.settings import SettingsError, TrackingSettings, hand_on, restored_settings
from .training import RunTracker

ULTRALYTICS_MLFLOW_MODULE = "ultralytics.utils.callbacks.mlflow"


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (`timeout`, `docker stop`, SLURM, a closed terminal) ends training as Ctrl-C does:
    the spool is flushed and the run closed KILLED, instead of the process vanishing with the run RUNNING."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


@dataclass(frozen=True)
class LaunchedRun:
    """The run a DDP launcher opened for its workers: where the command says the run is, as a tracker would."""

    run_id: str
    experiment_id: str


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stop_on_signals(forward: bool = False):
    """Turn the first SIGTERM/SIGHUP into Terminated in the main thread; later ones are ignored until the
    run is closed, so they cannot cut the final flush short (it is bounded by the flush timeout).

    `forward` (the DDP launcher): pass the signal on to the child processes (torch.distributed.run, which
    stops its workers, whose rank 0 closes its records) and let Ultralytics' launcher return; the signal
    is remembered in the yielded dict, and the caller raises Terminated once the workers are gone."""
    received: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if not (forward and _signal_children(signum)):  # no workers yet: stop here, as without DDP
            raise Terminated(signum)
        received["signum"] = signum

    old = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _signal_children(signum: int) -> int:
    """Pass the signal on to this process's children; how many got it."""
    try:
        import psutil

        children = psutil.Process().children()
        for child in children:
            child.send_signal(signum)
        return len(children)
    except Exception as e:
        warn(f"sai_mlflow: could not pass signal {signum} on to the DDP workers ({type(e).__name__}: {e})")
        return 0


def _tracker(trainer) -> RunTracker | None:
    return trainer.__dict__.get("sai_tracker")


def _guarded(hook: str, method: str):
    """A callback that forwards to RunTracker.<method>, never raising into training."""

    def callback(trainer) -> None:
        t = _tracker(trainer)
        if t is None:
            return
        try:
            getattr(t, method)(trainer)
        except Exception as e:
            t.hook_failed(hook, e)

    callback.__name__ = callback.__qualname__ = hook  # the module global it is bound to: pickles by reference
    callback.__module__ = __name__
    return callback


def on_pretrain_routine_start(trainer) -> None:
    """Open (or attach to) the run and start sampling memory, before the model is built."""
    if RANK not in {-1, 0} or trainer.__dict__.get("sai_tracker") is not None:
        return
    try:
        trainer.sai_tracker = RunTracker(trainer)
    except (StoreConfigError, SettingsError):
        raise  # a misconfigured store or setting is refused before training (the spool is for outages)
    except Exception as e:
        trainer.sai_tracker = None
        warn(f"sai_mlflow: tracking is off for this run: {type(e).__name__}: {str(e)[:400]}; "
             "training continues untracked")


def on_train_batch_start(trainer) -> None:
    t = trainer.__dict__.get("sai_tracker")
    if t is not None:
        t.clock.batch_start()


def on_train_batch_end(trainer) -> None:
    t = trainer.__dict__.get("sai_tracker")
    if t is not None:
        t.clock.batch_end()


on_pretrain_routine_end = _guarded("on_pretrain_routine_end", "on_setup_done")
on_train_start = _guarded("on_train_start", "on_train_start")
on_train_epoch_start = _guarded("on_train_epoch_start", "on_epoch_start")
_tracker_train_epoch_end = _guarded("on_train_epoch_end", "on_train_epoch_end")


def on_train_epoch_end(trainer) -> None:
    """Every rank: marks a training epoch whose on_fit_epoch_end gathers the allocator peaks (final_eval's
    on_fit_epoch_end has no training epoch before it, and gathers nothing)."""
    trainer.sai_epoch_open = True
    _tracker_train_epoch_end(trainer)


def on_fit_epoch_end(trainer) -> None:
    """Every rank: the epoch's CUDA allocator peaks, gathered to rank 0 under DDP (one all_gather per
    epoch, same point on every rank, a failure never skipped on one rank only); then rank 0's tracker."""
    peaks = None
    if trainer.__dict__.pop("sai_epoch_open", False):
        try:
            peaks = gather_epoch_peaks(trainer.device)
        except Exception as e:
            t = _tracker(trainer)
            if t is not None:
                t.hook_failed("on_fit_epoch_end (allocator peaks)", e)
    t = _tracker(trainer)
    if t is None:
        return
    try:
        t.on_fit_epoch_end(trainer, peaks)
    except Exception as e:
        t.hook_failed("on_fit_epoch_end", e)


HOOKS = {
    "on_pretrain_routine_start": on_pretrain_routine_start,
    "on_pretrain_routine_end": on_pretrain_routine_end,
    "on_train_start": on_train_start,
    "on_train_epoch_start": on_train_epoch_start,
    "on_train_batch_start": on_train_batch_start,
    "on_train_batch_end": on_train_batch_end,
    "on_train_epoch_end": on_train_epoch_end,
    "on_fit_epoch_end": on_fit_epoch_end,
}


class TrackedDetectionTrainer(DetectionTrainer):
    """DetectionTrainer that logs the sai_mlflow metric contract to MLflow."""

    def __init__(self, cfg=DEFAULT_CFG, overrides=None, _callbacks=None):
        if RANK != -1:  # a DDP worker: its output reaches the terminal without the launcher's redaction
            redact_process_output()
        cbs = {k: list(v) for k, v in (_callbacks or ul_callbacks.get_default_callbacks()).items()}
        for event, fn in HOOKS.items():
            if fn not in cbs.setdefault(event, []):
                cbs[event].append(fn)
        self.sai_tracker = None
        self.sai_launched_run = None  # a DDP launcher's run (its workers track it; this process holds no tracker)
        super().__init__(cfg, overrides, cbs)
        self._drop_ultralytics_mlflow()

    def _drop_ultralytics_mlflow(self) -> None:
        """Ultralytics' own MLflow callback would log a second, differently-named run into the same store."""
        for event, fns in self.callbacks.items():
            self.callbacks[event] = [f for f in fns if getattr(f, "__module__", "") != ULTRALYTICS_MLFLOW_MODULE]

    def train(self):
        status = "FAILED"
        launcher = bool(self.ddp) and RANK == -1
        with stop_on_signals(forward=launcher) as received, restored_settings():
            ddp_run = self._open_run_for_ddp() if launcher else None
            try:
                super().train()
                status = "FINISHED"
            except KeyboardInterrupt:  # Ctrl-C, and SIGTERM/SIGHUP as Terminated
                status = "KILLED"
                raise
            except Exception:
                if not received:
                    raise
            finally:
                if received:  # DDP launcher: the workers were stopped by the signal passed on to them
                    status = "KILLED"
                self._finish(status, ddp_run)
            if received:
                raise Terminated(received["signum"])

    def _open_run_for_ddp(self):
        """DDP: the launcher creates the run so every worker attaches to the same one via the environment."""
        try:
            s = TrackingSettings.from_env()
            backend = backend_for(s.tracking_uri)
            if not s.run_id:
                # train's preflight findings: set on this trainer, which the workers do not inherit
                tags = source_tags(dict(getattr(self, "sai_preflight_tags", None) or {}))
                ref = backend.create_run(s.experiment, s.run_name_for(self.args.name), tags,
                                         s.artifact_location or None)
                s.run_id = ref.run_id
            else:  # a given run (--resume): the workers' attach refuses it loudly if it is gone
                ref = backend.get_run(s.run_id)
            self.sai_launched_run = LaunchedRun(s.run_id, ref.experiment_id if ref is not None else "")
            hand_on(s)  # the workers attach to this run: the settings, run id included, in one variable
            return backend, s.run_id
        except (StoreConfigError, SettingsError):
            raise
        except Exception as e:
            warn(f"sai_mlflow: could not open the MLflow run for DDP ({e}); training continues untracked")
            return None

    def _finish(self, status: str, ddp_run) -> None:
        if threading.current_thread() is threading.main_thread():  # a signal now must not cut the closing short
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
        terminal = status if RANK == -1 else None  # DDP workers leave the status to the launcher
        t = self.__dict__.get("sai_tracker")
        try:
            if t is not None:
                t.finish(self, terminal)
            elif ddp_run is not None:
                backend, run_id = ddp_run
                backend.writer(run_id).terminate(status, int(time.time() * 1000))
        except Exception as e:
            warn(f"sai_mlflow: closing the run failed ({type(e).__name__}: {e})")
