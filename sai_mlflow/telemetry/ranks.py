"""DDP: what rank 0 needs from the other ranks, once per epoch, through the process group Ultralytics holds.

Only rank 0 records; the CUDA allocator peaks of the other ranks reach it at each epoch end in one
all_gather of two numbers per rank (never per batch). Every rank must call `gather_epoch_peaks` at the
same point, whatever happens locally: a rank that skipped it would hang the others, so a local failure
contributes "unknown" (NaN) instead of skipping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .memory import torch_peaks_gib

Peaks = tuple[float, float]  # (reserved, allocated) GiB


def largest_peaks(rows: Sequence[Sequence[float]]) -> Peaks | None:
    """The largest (reserved, allocated) over the ranks' rows; unknown (NaN) rows are skipped."""
    known = [(float(r), float(a)) for r, a in rows if not (math.isnan(r) or math.isnan(a))]
    if not known:
        return None
    return max(r for r, _ in known), max(a for _, a in known)


def _group():
    """The default process group when one is up with more than one rank, else None."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return dist
    except Exception:
        pass
    return None


def gather_epoch_peaks(device, local: Peaks | None = None, measure: bool = True) -> Peaks | None:
    """This rank's allocator peaks (measured here unless `local` is given), gathered from every rank; the
    largest per figure. Without a process group it is this rank's own reading. Collective under DDP."""
    if measure and local is None:
        try:
            local = torch_peaks_gib(device)
        except Exception:
            local = None
    dist = _group()
    if dist is None:
        return local
    import torch

    nan = float("nan")
    on = device if dist.get_backend() == "nccl" else "cpu"  # NCCL gathers CUDA tensors only
    mine = torch.tensor(local if local else (nan, nan), dtype=torch.float64, device=on)
    rows = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(rows, mine)
    return largest_peaks([tuple(t.cpu().tolist()) for t in rows])
