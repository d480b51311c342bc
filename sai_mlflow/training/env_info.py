"""The environment a run trained in, as the contract's env.* params."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from ..keys import GIB


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def _gib(x: float) -> str:
    return f"{x / GIB:.2f}"


def environment_params(device=None) -> dict[str, str]:
    params = {
        "env.python": platform.python_version(),
        "env.torch": _version("torch"),
        "env.ultralytics": _version("ultralytics"),
        "env.mlflow": _version("mlflow") or _version("mlflow-skinny"),
        "env.cuda": "",
        "env.driver": "",
        "env.gpu_name": "cpu",
        "env.gpu_total_gib": "",
        "env.host_ram_gib": _gib(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")),
        "env.shm_total_gib": "",
    }
    try:
        st = os.statvfs("/dev/shm")
        params["env.shm_total_gib"] = _gib(st.f_blocks * st.f_frsize)
    except OSError:
        pass
    try:
        import torch

        params["env.cuda"] = torch.version.cuda or ""
        if getattr(device, "type", None) == "cuda":
            props = torch.cuda.get_device_properties(device.index or 0)
            params["env.gpu_name"] = props.name
            params["env.gpu_total_gib"] = _gib(props.total_memory)
    except Exception:
        pass
    if getattr(device, "type", None) == "cuda":
        try:
            import pynvml

            pynvml.nvmlInit()
            drv = pynvml.nvmlSystemGetDriverVersion()
            params["env.driver"] = drv.decode() if isinstance(drv, bytes) else str(drv)
        except Exception:
            pass
    return params
