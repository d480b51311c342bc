"""How long the bounded waits take: the figures the tests used to assert as wall-clock bounds.

The tests now check the behaviour (close returns with the backlog kept, every ended batch reaches the spool,
the clock splits wait and compute exactly); the seconds are measured here, side by side, on this machine:

  close_down   Publisher.close(timeout=T) with the store down: how long past T it returns (was: < 2.5 s for T=1)
  spool_window SpoolingSink behind the Publisher at the trainer's write cadence (0.5 s): time from a batch's
               hand-over to its record in spool.log -- what a SIGKILL can lose (was: 1 s in test_durability)
  clock_hook   BatchClock.batch_start + batch_end, the per-batch hot path (was: 10-20 ms bounds in test_clock)

    .venv/bin/python benchmarks/bounded_waits.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sai_mlflow.telemetry.clock import BatchClock  # noqa: E402
from sai_mlflow.tracking.publisher import Publisher  # noqa: E402
from sai_mlflow.tracking.sink import Batch, MemorySink  # noqa: E402
from sai_mlflow.tracking.spool import SpoolingSink, read_records  # noqa: E402


def close_down(timeout_s: float) -> float:
    pub = Publisher(MemorySink(fail=True), [], interval_s=0.05, report=lambda m: None).start()
    pub.put(Batch(metrics=[("m", float(i), 0, i) for i in range(100)]))
    t0 = time.perf_counter()
    pub.close("FINISHED", timeout=timeout_s)
    return time.perf_counter() - t0 - timeout_s


def spool_window(batches: int = 20) -> list[float]:
    """Seconds from put() of batch i to its point in spool.log, for each of `batches` batches 0.1 s apart."""
    with tempfile.TemporaryDirectory() as tmp:
        sink = SpoolingSink(None, "b" * 32, root=tmp, report=lambda m: None, meta={"tracking_uri": "sqlite:///x"})
        pub = Publisher(sink, [], interval_s=5.0, write_interval_s=0.5, report=lambda m: None).start()
        log = Path(tmp) / ("b" * 32) / "spool.log"
        handed: dict[int, float] = {}
        seen: dict[int, float] = {}
        for i in range(batches):
            pub.put(Batch(metrics=[("batch/step_s", 0.1, int(time.time() * 1000), i)]))
            handed[i] = time.perf_counter()
            end = time.perf_counter() + 0.1
            while time.perf_counter() < end:
                if log.exists():
                    for _, rec in read_records(log):
                        for p in rec.get("p", []) if rec.get("t") == "m" else []:
                            seen.setdefault(p[3], time.perf_counter())
                time.sleep(0.005)
        deadline = time.perf_counter() + 10
        while len(seen) < batches and time.perf_counter() < deadline:
            for _, rec in read_records(log):
                for p in rec.get("p", []) if rec.get("t") == "m" else []:
                    seen.setdefault(p[3], time.perf_counter())
            time.sleep(0.005)
        pub.close("FINISHED", timeout=5)
        return [seen[i] - handed[i] for i in range(batches) if i in seen]


def clock_hook(n: int = 100_000) -> float:
    c = BatchClock()
    t0 = time.perf_counter()
    for _ in range(n):
        c.batch_start()
        c.batch_end()
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    over = [close_down(1.0) for _ in range(a.repeats)]
    print(f"close_down   close(timeout=1 s), store down: returns {statistics.median(over) * 1000:.0f} ms past the "
          f"timeout (median of {a.repeats}; max {max(over) * 1000:.0f} ms)")
    win = sorted(w for _ in range(max(1, a.repeats // 3)) for w in spool_window())
    print(f"spool_window hand-over -> spool.log at the 0.5 s write cadence: median {statistics.median(win):.3f} s, "
          f"p90 {win[int(0.9 * (len(win) - 1))]:.3f} s, max {win[-1]:.3f} s ({len(win)} batches)")
    hook = [clock_hook() for _ in range(a.repeats)]
    print(f"clock_hook   batch_start + batch_end: median {statistics.median(hook) * 1e9:.0f} ns per batch "
          f"(median of {a.repeats} x 100,000)")


if __name__ == "__main__":
    main()
