"""GPU paths (NVML sampler, torch allocator peaks, a short tracked GPU run). Marked `gpu`: skipped without CUDA."""

from __future__ import annotations

import time

import pytest

from sai_mlflow import keys as K

pytestmark = pytest.mark.gpu


def test_nvml_sampler_reads_the_device_torch_uses():
    import torch

    from sai_mlflow.telemetry.memory import NvmlSampler

    s = NvmlSampler(0)
    before = s.used_gib()
    x = torch.empty(int(2 * 2**30), dtype=torch.uint8, device="cuda:0")
    torch.cuda.synchronize()
    assert s.used_gib() - before > 1.5
    assert s.total_gib > 10 and s.name == torch.cuda.get_device_name(0)
    t0 = time.perf_counter()
    for _ in range(1000):
        s.used_gib()
    assert (time.perf_counter() - t0) / 1000 < 1e-3  # a sample costs microseconds, not a sync
    del x
    s.close()


def test_torch_peaks_are_read_and_reset():
    import torch

    from sai_mlflow.telemetry.memory import torch_peaks_gib

    dev = torch.device("cuda:0")
    x = torch.empty(int(2**30), dtype=torch.uint8, device=dev)
    reserved, allocated = torch_peaks_gib(dev)
    assert reserved >= allocated >= 0.99
    del x
    torch.cuda.empty_cache()
    reserved2, _ = torch_peaks_gib(dev)
    assert reserved2 < reserved


def test_short_gpu_run_logs_nvml_memory_and_allocator_peaks(synthetic_data, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from sai_mlflow.trainer import TrackedDetectionTrainer

    uri = f"sqlite:///{tmp_path / 'db.sqlite'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    t = TrackedDetectionTrainer(overrides=dict(model="yolov8n.yaml", data=str(synthetic_data), epochs=2, batch=8,
                                               imgsz=64, device=0, workers=2, plots=False,
                                               project=str(tmp_path / "runs")))
    t.train()
    run = MlflowClient(uri).get_run(t.sai_tracker.run_id)
    assert run.data.tags[K.TAG_MEMORY_SOURCE] == "nvml"
    assert run.data.tags[K.TAG_GPU].startswith("NVIDIA")
    m = run.data.metrics
    assert m[K.EPOCH_TORCH_RESERVED_PEAK_GIB] > 0
    assert m[K.SUMMARY_PEAK_GIB] >= m[K.EPOCH_TORCH_RESERVED_PEAK_GIB]  # NVML sees context + reserve
