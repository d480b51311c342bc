"""Many devices (issue 20): NVML handles by UUID, the largest device as memory/used_gib with a series per
device, the `devices` tag, and the allocator peaks of every rank gathered to rank 0 in a real gloo group.

The NVML calls themselves need a GPU (test_gpu.py); here the sampler protocol is fed from a script, and
the gather runs between two real processes.
"""

from __future__ import annotations

import math
import socket
from types import SimpleNamespace

import pytest

from sai_mlflow import keys as K
from sai_mlflow.telemetry.memory import nvml_target, run_cuda_indices
from sai_mlflow.telemetry.monitor import MemoryMonitor
from sai_mlflow.telemetry.ranks import largest_peaks
from sai_mlflow.tracking.settings import TrackingSettings
from sai_mlflow.tracking.sink import MemorySink
from sai_mlflow.training import RunTracker, devices_of


def stand_in_trainer(tmp_path, synthetic_data):
    """Enough of a trainer for RunTracker's setup and memory paths (no training)."""
    args = SimpleNamespace(batch=8, imgsz=64, cache=False, model="yolov8n.yaml", data=str(synthetic_data),
                           val=True, resume=False, name="t", device="cpu")
    return SimpleNamespace(device="cpu", args=args, batch_size=8, data={"train": str(synthetic_data.parent)},
                           save_dir=str(tmp_path), wdir=str(tmp_path / "weights"), best=str(tmp_path / "none.pt"))


def test_cuda_index_to_nvml_by_uuid_else_through_cuda_visible_devices():
    assert nvml_target(1, "GPU-aaaa", "3,1") == ("uuid", "GPU-aaaa")  # torch's UUID wins: no reordering possible
    assert nvml_target(0, "aaaa", None) == ("uuid", "GPU-aaaa")
    assert nvml_target(0, None, "3,1") == ("index", 3)
    assert nvml_target(1, None, "3,1") == ("index", 1)
    assert nvml_target(1, None, "GPU-x,MIG-y") == ("uuid", "MIG-y")
    assert nvml_target(2, None, "") == ("index", 2)


def test_the_run_devices_come_from_ultralytics_device_argument():
    cuda1 = SimpleNamespace(type="cuda", index=1)
    assert run_cuda_indices("0,1", cuda1) == (0, 1)
    assert run_cuda_indices("2,3", cuda1) == (2, 3)
    assert run_cuda_indices([0, 1, 2, 3], cuda1) == (0, 1, 2, 3)
    assert run_cuda_indices("1", cuda1) == (1,)
    assert run_cuda_indices("", SimpleNamespace(type="cuda", index=None)) == (0,)


def test_devices_tag_is_the_world_size_and_1_for_cpu_or_one_gpu():
    assert [devices_of(SimpleNamespace(world_size=w)) for w in (0, 1, 2, 8)] == [1, 1, 2, 8]
    assert devices_of(SimpleNamespace()) == 1


def test_largest_peaks_skip_ranks_that_could_not_say():
    nan = float("nan")
    assert largest_peaks([(10.0, 8.0), (12.0, 7.5)]) == (12.0, 8.0)
    assert largest_peaks([(nan, nan), (12.0, 7.5)]) == (12.0, 7.5)
    assert largest_peaks([(nan, nan)]) is None


class TwoDevices:
    """The sampler protocol fed from a script: CUDA indices 2 and 3 of the run, each sample one row."""

    source, name, total_gib, indices = "nvml", "NVIDIA H200", 140.0, (2, 3)

    def __init__(self, rows):
        self.rows = list(rows)

    def used_gib_each(self):
        return self.rows.pop(0) if len(self.rows) > 1 else self.rows[0]

    def used_gib(self):
        return max(self.used_gib_each())

    def close(self):
        pass


def test_largest_device_is_the_memory_figure_and_each_device_has_its_series(tmp_path, synthetic_data):
    trainer = stand_in_trainer(tmp_path, synthetic_data)
    trainer.world_size = 2
    sink = MemorySink()
    settings = TrackingSettings(memory_interval_s=60, publish_interval_s=0.05, log_model=False)
    tracker = RunTracker(trainer, settings=settings, sink=sink)
    tracker.monitor.stop()
    tracker.monitor = MemoryMonitor(TwoDevices([(10.0, 30.0), (25.0, 20.0), (5.0, 6.0)]), interval_s=60)
    tracker.monitor.sample()
    tracker.monitor.sample()
    tracker.on_setup_done(trainer)
    tracker.finish(trainer, "FINISHED")  # its last sample: (5, 6)
    assert sink.tags[K.TAG_DEVICES] == "2"
    assert sink.series(K.MEMORY_USED_GIB) == [(0, 30.0), (1, 25.0), (2, 6.0)]
    assert sink.series(K.memory_device_used_gib(2)) == [(0, 10.0), (1, 25.0), (2, 5.0)]
    assert sink.series(K.memory_device_used_gib(3)) == [(0, 30.0), (1, 20.0), (2, 6.0)]
    assert sink.series(K.MEMORY_TOTAL_GIB)[0] == (0, 140.0)  # one device's total
    assert tracker.monitor.peak_gib == 30.0


def test_one_device_has_no_per_device_series(tmp_path, synthetic_data):
    trainer = stand_in_trainer(tmp_path, synthetic_data)
    sink = MemorySink()
    tracker = RunTracker(trainer, settings=TrackingSettings(publish_interval_s=0.05, log_model=False), sink=sink)
    tracker.on_setup_done(trainer)
    tracker.finish(trainer, "FINISHED")
    assert sink.tags[K.TAG_DEVICES] == "1"
    assert sink.series(K.MEMORY_USED_GIB)
    assert not [k for k, *_ in sink.metrics if k.startswith(K.MEMORY_DEVICE_PREFIX)]


def _rank(rank: int, world: int, port: int, plan, out) -> None:
    import torch.distributed as dist

    from sai_mlflow.telemetry.ranks import gather_epoch_peaks

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        got = [gather_epoch_peaks("cpu", local=epoch[rank], measure=False) for epoch in plan]
        out.put((rank, got))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_allocator_peaks_of_every_rank_reach_rank_0_in_one_gather_per_epoch():
    """Two real processes in a gloo group, as Ultralytics holds one: each epoch every rank gathers its
    (reserved, allocated) peaks; rank 1's larger figures and a rank that could not measure are handled."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plan = [((10.0, 8.0), (12.0, 7.5)), ((10.0, 8.0), None)]  # epoch -> each rank's own peaks
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, plan, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == [(12.0, 8.0), (10.0, 8.0)]
    assert results[1] == results[0]  # every rank gets the figures; only rank 0 records them
    assert not any(math.isnan(x) for row in results[0] for x in row)
