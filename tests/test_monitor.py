"""The memory monitor: per-phase peaks with a sample at every switch, and a failing sampler said once."""

from __future__ import annotations

from sai_mlflow.telemetry.monitor import MemoryMonitor


class ScriptedSampler:
    """Our own sampler protocol fed from a list: which values the monitor sees, in order."""

    source, name, total_gib = "rss", "cpu", 16.0

    def __init__(self, values):
        self.values = list(values)

    def used_gib(self) -> float:
        v = self.values.pop(0) if self.values else 1.0
        if isinstance(v, Exception):
            raise v
        return v

    def close(self) -> None:
        pass


def test_phase_peaks_include_the_boundary_sample():
    m = MemoryMonitor(ScriptedSampler([1.0, 5.0, 2.0, 3.0]), interval_s=3600)
    m.sample()  # 1.0
    m.sample()  # 5.0
    train = m.end_phase()  # 2.0 taken at the switch, counts for both phases
    m.sample()  # 3.0
    val = m.end_phase()
    assert (train, val, m.peak_gib) == (5.0, 3.0, 5.0)


def test_a_failing_sampler_is_reported_once():
    said = []
    m = MemoryMonitor(ScriptedSampler([OSError("gone")] * 3 + [2.0]), interval_s=3600, report=said.append)
    assert [m.sample() for _ in range(4)] == [None, None, None, 2.0]
    assert len(said) == 1 and "memory sampling (rss) failed" in said[0]
