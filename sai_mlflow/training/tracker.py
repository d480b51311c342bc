"""`RunTracker`: one tracked run inside a training process, wired from its parts (training/__init__.py).

It opens the run (tracking/run_open.py), starts the memory and system samplers and the publisher thread, and
forwards Ultralytics' hooks to the adapter (hooks.py) and the end to the closer (closer.py).
"""

from __future__ import annotations

from ..compare.policy import memory_limit_fraction
from ..log import warn
from ..telemetry.memory import sampler_for
from ..telemetry.monitor import MemoryMonitor
from ..tracking.publisher import Publisher
from ..tracking.run_open import open_run
from ..tracking.settings import TrackingSettings
from ..tracking.sink import Sink
from . import closer, hooks
from .collectors import Collectors
from .hooks import devices_of
from .state import RunState

__all__ = ["RunTracker", "devices_of"]

SPOOL_WRITE_INTERVAL_S = 0.5  # every per-batch point older than 1 s is in the spool (docs/durability.md)


class RunTracker:
    """Created in the process that logs (rank -1 or 0); `sink` may be given (tests), else the tracking backend."""

    def __init__(self, trainer, settings: TrackingSettings | None = None, sink: Sink | None = None) -> None:
        self.settings = settings or TrackingSettings.from_env()
        self._failed_hooks: set[str] = set()
        self.state = RunState(batch_request=getattr(getattr(trainer, "args", None), "batch", None),
                              audit=getattr(trainer, "sai_audit", None))
        self.clock = self.state.clock  # the per-batch hooks' one object (trainer.py)
        self.guard = self._make_guard()
        # drawn as memory/limit_gib: the limit compare-runs judges by
        self.limit_fraction = memory_limit_fraction(self.settings.policy_file)
        window_index, system_offset = 0, 0
        if sink is not None:  # tests: an in-memory sink, no store
            self.client, self.backend, self.run_id, self.sink, self.experiment_id = None, None, "", sink, ""
            self.resumed, self.existing_params, self.existing_tags = False, {}, {}
        else:  # may raise (caller: tracking off); nothing is started before it
            opened = open_run(trainer, self.settings)
            self.client, self.backend = opened.client, opened.backend
            self.run_id, self.sink = opened.run_id, opened.sink
            self.experiment_id = opened.experiment_id
            self.resumed, self.existing_params = opened.resumed, opened.existing_params
            self.existing_tags = opened.existing_tags
            self.clock.offset, self.state.memory_first_step, window_index, system_offset = opened.next_steps
        self.monitor = MemoryMonitor(sampler_for(trainer.device, getattr(trainer.args, "device", None)),
                                     self.settings.memory_interval_s, report=warn).start()
        self.system = self._start_system_metrics(system_offset)
        self.collectors = Collectors(self, window_index)
        c = self.collectors
        self.publisher = Publisher(
            self.sink, [c.batches, c.memory, c.system], interval_s=self.settings.publish_interval_s, report=warn,
            write_interval_s=SPOOL_WRITE_INTERVAL_S, window_collectors=[c.memory_window],
        ).start()

    def _start_system_metrics(self, step_offset: int):
        """MLflow's system metrics (telemetry/system.py) unless `tracking.system_metrics` is off."""
        if not self.settings.system_metrics:
            return None
        try:
            from ..telemetry.system import SystemSampler

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

    # --- Ultralytics' hooks (trainer.py registers them; the batch hooks call self.clock directly) ---------------
    def on_setup_done(self, trainer) -> None:
        hooks.setup_done(self, trainer)

    def on_train_start(self, trainer) -> None:
        hooks.train_start(self, trainer)

    def on_epoch_start(self, trainer) -> None:
        hooks.epoch_start(self, trainer)

    def on_train_epoch_end(self, trainer) -> None:
        hooks.train_epoch_end(self, trainer)

    def on_fit_epoch_end(self, trainer, torch_peaks: tuple[float, float] | None = None) -> None:
        hooks.fit_epoch_end(self, trainer, torch_peaks)

    def finish(self, trainer, status: str | None) -> bool:
        """The closer (closer.py): artifacts, model, final flush; True if everything arrived."""
        return closer.finish(self, trainer, status)

    def hook_failed(self, hook: str, error: BaseException) -> None:
        """Tracking never kills training: a hook that fails is reported once and training goes on."""
        if hook not in self._failed_hooks:
            self._failed_hooks.add(hook)
            warn(f"sai_mlflow: tracking hook {hook} failed ({type(error).__name__}: {error}); training continues")
