"""The per-batch clock: rows of (data wait, compute, end), waits from the epoch start, wall timestamps.

The clock reads `perf_counter` through its module's `_now`; the tests drive that reading by hand, so every
figure is exact and no machine load can change it (speed itself is measured in benchmarks/overhead.py).
"""

from __future__ import annotations

import pytest

from sai_mlflow.telemetry import clock as clock_mod
from sai_mlflow.telemetry.clock import BatchClock


class Ticks:
    """A perf_counter the test moves by hand."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def ticks(monkeypatch) -> Ticks:
    t = Ticks()
    monkeypatch.setattr(clock_mod, "_now", t)
    return t


def test_rows_split_wait_and_compute(ticks):
    c = BatchClock()
    c.epoch_start()
    ticks.advance(0.020)  # the loader fills the first batch
    c.batch_start()
    ticks.advance(0.010)  # forward/backward/step
    c.batch_end()
    ticks.advance(0.003)
    c.batch_start()
    ticks.advance(0.004)
    c.batch_end()
    (w1, c1, e1), (w2, c2, e2) = c.rows
    assert (w1, c1) == pytest.approx((0.020, 0.010))  # the first batch waited since the epoch start
    assert (w2, c2) == pytest.approx((0.003, 0.004))  # the second since the first one ended
    assert (e1, e2) == pytest.approx((100.030, 100.037))


def test_validation_time_is_not_the_next_epoch_s_data_wait(ticks):
    c = BatchClock()
    c.batch_start()
    c.batch_end()
    ticks.advance(30.0)  # validation
    c.epoch_start()
    ticks.advance(0.5)
    c.batch_start()
    c.batch_end()
    assert c.rows[1][0] == pytest.approx(0.5)


def test_wall_ms_follows_the_wall_clock(ticks):
    c = BatchClock()
    c.wall0 = 1_700_000_000.0  # the wall clock read when the clock was made, at perf 100.0
    ticks.advance(2.5)
    c.batch_start()
    c.batch_end()
    assert c.wall_ms(c.rows[0][2]) == 1_700_000_002_500


def test_the_real_clock_reads_perf_counter():
    """Without the hand-driven clock: rows are ordered and non-negative (no bound on how long anything took)."""
    c = BatchClock()
    for _ in range(3):
        c.batch_start()
        c.batch_end()
    assert all(w >= 0 and s >= 0 for w, s, _ in c.rows)
    assert [e for *_, e in c.rows] == sorted(e for *_, e in c.rows)
