"""Memory samplers behind one small protocol: NVML for the GPU actually used, RSS on the CPU.

NVML reports device memory as the driver sees it (what runs out), which includes the CUDA
context and the caching allocator's reserve; torch's own counters are read once per epoch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

from .. import keys as K
from ..keys import GIB


class MemorySampler(Protocol):
    source: str      # "nvml" or "rss"
    total_gib: float  # one device's total (the smallest, when devices differ), or host RAM for rss
    name: str        # device name for the `gpu` tag ("cpu" for rss)
    indices: tuple[int, ...]  # CUDA indices of the run (per-device series); () for rss

    def used_gib_each(self) -> tuple[float, ...]: ...

    def used_gib(self) -> float: ...  # the largest device's figure

    def close(self) -> None: ...


class RssSampler:
    """Resident memory of this process (CPU training), from /proc: cheap and dependency-free."""

    source = "rss"
    name = "cpu"
    indices: tuple[int, ...] = ()

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self.total_gib = os.sysconf("SC_PHYS_PAGES") * self._page / GIB
        self._fd = os.open("/proc/self/statm", os.O_RDONLY)

    def used_gib_each(self) -> tuple[float, ...]:
        data = os.pread(self._fd, 128, 0)
        return (int(data.split()[1]) * self._page / GIB,)

    def used_gib(self) -> float:
        return self.used_gib_each()[0]

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


class NvmlSampler:
    """Device memory used on every GPU of the run (whole device, every process), by NVML (~5 us a device).

    The handles are looked up once, by UUID, so CUDA_VISIBLE_DEVICES reordering cannot mislead."""

    source = "nvml"

    def __init__(self, torch_indices: Sequence[int] | int = (0,)) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self.indices = (torch_indices,) if isinstance(torch_indices, int) else (tuple(torch_indices) or (0,))
        self._handles = [_nvml_handle(pynvml, i) for i in self.indices]
        self.total_gib = min(pynvml.nvmlDeviceGetMemoryInfo(h).total for h in self._handles) / GIB
        names = [pynvml.nvmlDeviceGetName(h) for h in self._handles]
        self.name = K.gpu_tag(n.decode() if isinstance(n, bytes) else str(n) for n in names)  # one rule: keys.py

    def used_gib_each(self) -> tuple[float, ...]:
        info = self._nvml.nvmlDeviceGetMemoryInfo
        return tuple(info(h).used / GIB for h in self._handles)

    def used_gib(self) -> float:
        return max(self.used_gib_each())

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass


def nvml_target(torch_index: int, uuid: str | None, visible: str | None) -> tuple[str, str | int]:
    """How to find CUDA device `torch_index` in NVML: ("uuid", "GPU-…") when known, else through
    CUDA_VISIBLE_DEVICES (an entry may be a UUID or an NVML index), else the index itself."""
    if uuid:
        return "uuid", uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
    entries = [e.strip() for e in (visible or "").split(",")] if visible else []
    if torch_index < len(entries):
        e = entries[torch_index]
        if e.startswith(("GPU-", "MIG-")):
            return "uuid", e
        if e.isdigit():
            return "index", int(e)
    return "index", torch_index


def _nvml_handle(pynvml, torch_index: int):
    uuid = None
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(torch_index).uuid)
    except Exception:
        pass
    kind, key = nvml_target(torch_index, uuid, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return pynvml.nvmlDeviceGetHandleByUUID(key) if kind == "uuid" else pynvml.nvmlDeviceGetHandleByIndex(key)


def run_cuda_indices(device_arg, device) -> tuple[int, ...]:
    """The CUDA indices a run trains on: Ultralytics' `device` argument ('0,1', '0', [0, 1]); for a single
    device without one, the torch device's own index."""
    text = ",".join(str(d) for d in device_arg) if isinstance(device_arg, list | tuple) else str(device_arg or "")
    text = text.split(":", 1)[-1]
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) > 1 and all(p.isdigit() for p in parts):
        return tuple(int(p) for p in parts)
    return (getattr(device, "index", None) or 0,)


def sampler_for(device, device_arg=None) -> MemorySampler:
    """NVML for CUDA devices when it works (every device of a DDP run), else process RSS
    (the `memory_source` tag says which)."""
    if getattr(device, "type", str(device)) == "cuda":
        try:
            return NvmlSampler(run_cuda_indices(device_arg, device))
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
