"""Facts about the host the checks need (cores, RAM, tmpfs use, GPUs), probed once; tests inject their own."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    used_bytes: int


@dataclass
class HostInfo:
    cpu_count: int
    ram_total: int
    ram_available: int  # Linux MemAvailable: tmpfs pages are already counted as used
    tmpfs_used: int = 0  # bytes held by all tmpfs mounts (reported in messages)
    gpus: list[GpuInfo] | None = None  # None: NVML unavailable (no driver, no GPU, no pynvml)
    cuda_devices: int | None = None  # CUDA devices torch sees (what Ultralytics selects from); None: unknown

    @classmethod
    def probe(cls) -> HostInfo:
        import psutil

        vm = psutil.virtual_memory()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return cls(cpu_count=cores, ram_total=vm.total, ram_available=vm.available,
                   tmpfs_used=_tmpfs_used(), gpus=_nvml_gpus(), cuda_devices=_cuda_devices())


def _cuda_devices() -> int | None:
    """torch's count honours CUDA_VISIBLE_DEVICES, as Ultralytics' select_device does (NVML does not)."""
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:
        return None


def _tmpfs_used() -> int:
    used, seen = 0, set()
    try:
        with open("/proc/mounts") as f:
            mounts = [ln.split()[1].replace("\\040", " ") for ln in f if ln.split()[2:3] == ["tmpfs"]]
    except OSError:
        return 0
    for m in mounts:
        try:
            st = os.statvfs(m)
        except OSError:
            continue
        key = (st.f_blocks, st.f_bfree, st.f_files, st.f_ffree)
        if key in seen:  # the same tmpfs bind-mounted twice
            continue
        seen.add(key)
        used += (st.f_blocks - st.f_bfree) * st.f_frsize
    return used


def _nvml_gpus() -> list[GpuInfo] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else str(name)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            out.append(GpuInfo(index=i, name=name, total_bytes=int(mem.total), used_bytes=int(mem.used)))
        return out
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
