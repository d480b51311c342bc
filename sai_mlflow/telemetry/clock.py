"""The per-batch clock: the only code on the training loop's hot path.

Each hook reads `time.perf_counter()` and appends one tuple to a list: no I/O, no GPU sync,
no allocator query, no lock (list.append is atomic under the GIL; the publisher thread only
reads rows below `len()` it observed).
"""

from __future__ import annotations

import time

_now = time.perf_counter


class BatchClock:
    """Rows of (data_wait_s, compute_s, end_perf) per batch, in order; index = global batch index - offset."""

    __slots__ = ("rows", "offset", "_prev_end", "_start", "perf0", "wall0")

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, float]] = []
        self.offset = 0  # global index of rows[0] (non-zero when a run resumes)
        self._prev_end = _now()
        self._start = self._prev_end
        self.perf0 = self._prev_end  # perf_counter <-> wall clock anchor for timestamps
        self.wall0 = time.time()

    def epoch_start(self) -> None:
        """The first batch's data wait runs from the epoch start, so validation is never counted."""
        self._prev_end = _now()

    def batch_start(self) -> None:
        self._start = _now()

    def batch_end(self) -> None:
        t = _now()
        start = self._start
        self.rows.append((start - self._prev_end, t - start, t))
        self._prev_end = t

    def wall_ms(self, perf: float) -> int:
        return int((self.wall0 + (perf - self.perf0)) * 1000)
