"""What the publisher thread takes from a tracker each spool write (batches, memory, system metrics) and each
publish window (the window's memory peak): the points added since the last call, as contract keys."""

from __future__ import annotations

from .. import keys as K
from ..telemetry.memory import memory_points
from ..tracking.sink import Batch


class Collectors:
    """Reads the tracker's clock and samplers when called (a test may swap the monitor); keeps its own cursors.
    A resumed run's series go on where the store's left off: batches from `state.clock.offset`, memory samples
    from `state.memory_first_step`, publish windows from `window_index`."""

    def __init__(self, tracker, window_index: int = 0) -> None:
        self.tracker = tracker
        self.window_index = window_index
        self._batch_cursor = 0
        self._mem_cursor = 0
        self._window_cursor = 0

    def batches(self) -> Batch:
        clock = self.tracker.state.clock
        rows = clock.rows
        n = len(rows)
        start, self._batch_cursor = self._batch_cursor, n
        base = clock.offset
        wall = clock.wall_ms
        pts = []
        for i in range(start, n):
            wait, compute, end = rows[i]
            ts, step = wall(end), base + i
            pts.append((K.BATCH_STEP_S, wait + compute, ts, step))
            pts.append((K.BATCH_DATA_WAIT_S, wait, ts, step))
            pts.append((K.BATCH_COMPUTE_S, compute, ts, step))
        return Batch(metrics=pts)

    def memory(self) -> Batch:
        monitor = self.tracker.monitor
        samples = monitor.samples
        n = len(samples)
        start, self._mem_cursor = self._mem_cursor, n
        total = monitor.sampler.total_gib
        limit = self.tracker.limit_fraction
        first = self.tracker.state.memory_first_step
        pts = [p for i, (ts, gib) in enumerate(samples[start:n])
               for p in memory_points(gib, total, limit, ts, first + start + i)]
        indices = monitor.indices
        if len(indices) > 1:  # DDP: each device at the same steps (the monitor keeps them at least as long)
            each = monitor.device_samples
            pts += [(K.memory_device_used_gib(d), gib, samples[start + i][0], first + start + i)
                    for i, row in enumerate(each[start:n]) for d, gib in zip(indices, row)]
        return Batch(metrics=pts)

    def memory_window(self) -> Batch:
        """Once per publish window (5 s), not per spool write: the window's highest sample."""
        samples = self.tracker.monitor.samples
        n = len(samples)
        start, self._window_cursor = self._window_cursor, n
        if start == n:
            return Batch()
        new = samples[start:n]
        self.window_index += 1
        return Batch(metrics=[(K.MEMORY_WINDOW_PEAK_GIB, max(g for _, g in new), new[-1][0], self.window_index - 1)])

    def system(self) -> Batch:
        system = self.tracker.system
        return Batch(metrics=system.drain()) if system is not None else Batch()
