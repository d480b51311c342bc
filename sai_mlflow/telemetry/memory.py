"""Memory samplers behind one small protocol: NVML for the GPU actually used, RSS on the CPU.

NVML reports device memory as the driver sees it (what runs out), which includes the CUDA
context and the caching allocator's reserve; torch's own counters are read once per epoch.
"""

from __future__ import annotations

import os
from typing import Protocol

from .. import keys as K
from ..keys import GIB


class MemorySampler(Protocol):
    source: str      # "nvml" or "rss"
    total_gib: float  # device total, or host RAM for rss
    name: str        # device name for the `gpu` tag ("cpu" for rss)

    def used_gib(self) -> float: ...

    def close(self) -> None: ...


class RssSampler:
    """Resident memory of this process (CPU training), from /proc: cheap and dependency-free."""

    source = "rss"
    name = "cpu"

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self.total_gib = os.sysconf("SC_PHYS_PAGES") * self._page / GIB
        self._fd = os.open("/proc/self/statm", os.O_RDONLY)

    def used_gib(self) -> float:
        data = os.pread(self._fd, 128, 0)
        return int(data.split()[1]) * self._page / GIB

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


class NvmlSampler:
    """Device memory used on one GPU (whole device, every process), by NVML (~5 us a call)."""

    source = "nvml"

    def __init__(self, torch_index: int = 0) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._handle = _nvml_handle(pynvml, torch_index)
        info = pynvml.nvmlDeviceGetMemoryInfo(self._handle)
        self.total_gib = info.total / GIB
        name = pynvml.nvmlDeviceGetName(self._handle)
        self.name = name.decode() if isinstance(name, bytes) else str(name)

    def used_gib(self) -> float:
        return self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / GIB

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass


def _nvml_handle(pynvml, torch_index: int):
    """Map torch's device index to NVML's by UUID, so CUDA_VISIBLE_DEVICES reordering cannot mislead."""
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(torch_index).uuid)
        uuid = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
        return pynvml.nvmlDeviceGetHandleByUUID(uuid)
    except Exception:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        index = int(visible[torch_index]) if torch_index < len(visible) and visible[torch_index].strip().isdigit() else torch_index
        return pynvml.nvmlDeviceGetHandleByIndex(index)


def sampler_for(device) -> MemorySampler:
    """NVML for a CUDA device when it works, else process RSS (the `memory_source` tag says which)."""
    if getattr(device, "type", str(device)) == "cuda":
        try:
            return NvmlSampler(device.index or 0)
        except Exception:
            pass
    return RssSampler()


def torch_peaks_gib(device) -> tuple[float, float] | None:
    """CUDA allocator (reserved, allocated) peaks since the last call, then reset. Once per epoch, never per batch."""
    if getattr(device, "type", None) != "cuda":
        return None
    import torch

    reserved = torch.cuda.max_memory_reserved(device) / GIB
    allocated = torch.cuda.max_memory_allocated(device) / GIB
    torch.cuda.reset_peak_memory_stats(device)
    return reserved, allocated


def memory_points(used_gib: float, total_gib: float | None, limit_fraction: float, ts, step: int) -> list[tuple]:
    """One memory sample as contract points: used, plus the device total and the policy's limit at the same
    step (when the total is known), so MLflow's own memory panel draws the limit line beside the curve."""
    pts = [(K.MEMORY_USED_GIB, used_gib, ts, step)]
    if total_gib:
        pts += [(K.MEMORY_TOTAL_GIB, total_gib, ts, step), (K.MEMORY_LIMIT_GIB, total_gib * limit_fraction, ts, step)]
    return pts
