"""MLflow's own system metrics (CPU, RAM, disk, network, GPU) for a tracked run, shipped through our spool.

MLflow's `SystemMetricsMonitor` logs from its own thread with its own client: against a dead HTTP
store its `get_run` check and final flush retry synchronously for minutes, and `finish()` joins that
thread without a timeout, so training's exit would wait on the store. Here MLflow's collectors
(the same classes, names and averaging) are sampled on a daemon thread of ours every `interval_s`;
the points join the run's other metrics in the publisher, hence the spool: an outage loses nothing
and never delays the exit. Names are MLflow's, under `system/`, so the UI's System metrics tab shows them.
"""

from __future__ import annotations

import threading
import time

from ..backend.mlflow_system import mlflow_collectors
from ..keys import SYSTEM_METRICS_PREFIX


class SystemSampler:
    """Every `interval_s` (and once when stopped): one aggregated point per system metric."""

    def __init__(self, interval_s: float = 10.0, step_offset: int = 0) -> None:
        self.interval_s = interval_s
        self.monitors = mlflow_collectors()
        self.points: list[tuple[str, float, int, int]] = []  # (key, value, timestamp ms, step)
        self.step = step_offset
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="sai-system-metrics", daemon=True)

    def start(self) -> SystemSampler:
        for m in self.monitors:  # primes psutil's CPU counter: its first reading is meaningless
            m.collect_metrics()
            m.clear_metrics()
        self._thread.start()
        return self

    def sample(self) -> None:
        ts = int(time.time() * 1000)
        values: dict[str, float] = {}
        for m in self.monitors:
            try:
                m.collect_metrics()
                values.update(m.aggregate_metrics())
            except Exception:
                pass  # one failing collector (e.g. a GPU gone) must not stop the others
            finally:
                m.clear_metrics()
        with self._lock:
            self.points.extend((SYSTEM_METRICS_PREFIX + k, float(v), ts, self.step) for k, v in values.items())
            self.step += 1

    def drain(self) -> list[tuple[str, float, int, int]]:
        with self._lock:
            out, self.points = self.points, []
        return out

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        """Last point now (a short run still gets one), then end the thread; never waits on a store."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.sample()
