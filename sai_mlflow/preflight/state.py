"""What every check reads: the user's context, the normalised arguments, the host and the dataset audit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .args import Args
from .host import HostInfo


@dataclass
class PreflightContext:
    """What the caller knows; everything else is probed or computed by run_checks."""

    args: dict  # resolved Ultralytics train args (data, batch, imgsz, cache, workers, device, model, resume, ...)
    audit: Any = None  # DatasetAudit; computed (and stored back here) when None
    history: list | None = None  # ForecastRecord  # comparable runs for memory_forecast
    resume_batch: int | None = None  # batch of the checkpoint being resumed
    max_memory_fraction: float | None = None  # None: the policy's (configs/decision.yaml), as compare-runs
    stage_dest: str | None = None  # a planned /dev/shm staging target, for shm_capacity
    host: HostInfo | None = None  # probed when None
    gpu_name: str | None = None  # for comparability; default: the chosen device's NVML name, else 'cpu'
    check_images: bool = True  # audit decodes image headers (corrupt files); False: counts and labels only
    tracking_uri: str | None = None  # where the run will be logged; None: tracking_unwritable is not checked


@dataclass
class State:
    ctx: PreflightContext
    args: Args
    host: HostInfo
    audit: Any = None
    audit_error: str | None = None

    @property
    def device_count(self) -> int:
        if self.args.cuda is None:
            return 1 if self.host.gpus else 0
        return len(self.args.cuda)
