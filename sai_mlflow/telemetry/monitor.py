"""A background thread that samples memory often and keeps per-phase peaks (sample often, log rarely).

MLflow's own system metrics take a *mean* every 10 s, so the peak that decides an OOM vanishes;
here every sample is kept and peaks are tracked exactly, per phase (train / val), with a sample
taken at every phase switch so a short validation is never missed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .memory import MemorySampler


class MemoryMonitor:
    def __init__(self, sampler: MemorySampler, interval_s: float = 0.5,
                 report: Callable[[str], None] | None = None) -> None:
        self.sampler = sampler
        self.interval_s = interval_s
        self.samples: list[tuple[int, float]] = []  # (wall ms, GiB of the largest device), append-only
        # several devices (DDP): each device's GiB per sample, appended before `samples` so that it is never
        # shorter than `samples` for a reader on another thread
        self.device_samples: list[tuple[float, ...]] = []
        self.indices: tuple[int, ...] = tuple(getattr(sampler, "indices", ()) or ())
        self.peak_gib = 0.0
        self._phase_peak = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sai-memory", daemon=True)
        self._report = report
        self._failed = False  # reported once: a sampler that keeps failing must not flood the log

    def start(self) -> MemoryMonitor:
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> float | None:
        try:
            each = self.sampler.used_gib_each() if len(self.indices) > 1 else None
            gib = max(each) if each else self.sampler.used_gib()
        except Exception as e:
            if not self._failed and self._report is not None:
                self._report(f"sai_mlflow: memory sampling ({self.sampler.source}) failed ({type(e).__name__}: {e}); "
                             "memory figures for this run are incomplete, training continues")
            self._failed = True
            return None
        with self._lock:
            if each:
                self.device_samples.append(each)
            self.samples.append((int(time.time() * 1000), gib))
            if gib > self._phase_peak:
                self._phase_peak = gib
            if gib > self.peak_gib:
                self.peak_gib = gib
        return gib

    def end_phase(self) -> float:
        """Close the current phase (train, val, …) and start the next; return the closed phase's peak.

        A sample is taken at the boundary, so it counts for both phases and a short phase is never empty.
        """
        self.sample()
        with self._lock:
            ended = self._phase_peak
            self._phase_peak = self.samples[-1][1] if self.samples else 0.0
        return ended

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.sample()
        self.sampler.close()
