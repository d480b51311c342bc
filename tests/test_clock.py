"""The per-batch clock: rows of (data wait, compute, end), waits from the epoch start, wall timestamps."""

from __future__ import annotations

import time

from sai_mlflow.telemetry.clock import BatchClock


def test_rows_split_wait_and_compute():
    c = BatchClock()
    c.epoch_start()
    time.sleep(0.02)
    c.batch_start()
    time.sleep(0.01)
    c.batch_end()
    c.batch_start()
    c.batch_end()
    (w1, c1, e1), (w2, c2, e2) = c.rows
    assert w1 >= 0.015 and c1 >= 0.008  # the first batch waited since the epoch start
    assert w2 < 0.01 and e2 >= e1


def test_validation_time_is_not_the_next_epoch_s_data_wait():
    c = BatchClock()
    c.batch_start()
    c.batch_end()
    time.sleep(0.03)  # validation
    c.epoch_start()
    c.batch_start()
    c.batch_end()
    assert c.rows[1][0] < 0.02


def test_wall_ms_follows_the_wall_clock():
    c = BatchClock()
    c.batch_start()
    c.batch_end()
    ms = c.wall_ms(c.rows[0][2])
    assert abs(ms - time.time() * 1000) < 1000
