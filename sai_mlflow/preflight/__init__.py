"""Preflight: checks that catch the seed's traps before any GPU time is spent. They return findings and print nothing.

    findings = run_checks(PreflightContext(args=cfg.train_args()))

Each check is a function `(state) -> list[Finding]`; `run_checks` runs them all, each guarded, so a
check that itself crashes becomes a `check_failed` warning rather than a traceback. Facts about the
host (cores, RAM, tmpfs, GPUs) come from `HostInfo.probe()` unless the context carries one, so the
checks are plain functions of their inputs and are tested with real files and injected hosts.

Finding codes are stable (users grep for them; the trainer logs them as tags `preflight.<code>`);
one check emits at most one finding per code. See docs/preflight.md for the table.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .args import normalise_args
from .checks import (
    check_args,
    check_batch,
    check_cache_ram,
    check_dataset_audit,
    check_double_cache,
    check_gpu_busy,
    check_imgsz,
    check_resume,
    check_shm_capacity,
    check_tracking_writable,
    check_workers,
)
from .finding import LEVELS, Finding, findings_as_tags, has_errors
from .forecast import ForecastRecord, check_memory_forecast, load_forecast_history
from .host import GpuInfo, HostInfo
from .state import PreflightContext, State

__all__ = ["CHECKS", "LEVELS", "Finding", "ForecastRecord", "GpuInfo", "HostInfo", "PreflightContext",
           "findings_as_tags", "has_errors", "load_forecast_history", "run_checks"]


CHECKS: tuple[tuple[str, Callable[[State], list[Finding]]], ...] = (
    ("arg_invalid", check_args),
    ("dataset_audit", check_dataset_audit),
    ("double_cache", check_double_cache),
    ("cache_ram_insufficient", check_cache_ram),
    ("shm_capacity", check_shm_capacity),
    ("imgsz_coerced", check_imgsz),
    ("workers_vs_cores", check_workers),
    ("batch_vs_dataset", check_batch),
    ("batch_changed_on_resume", check_resume),
    ("memory_forecast", check_memory_forecast),
    ("gpu_busy", check_gpu_busy),
    ("tracking_unwritable", check_tracking_writable),
)


def _failed(name: str, e: BaseException) -> Finding:
    return Finding("warning", "check_failed", f"the {name} check could not run: {type(e).__name__}: {e}"[:2000],
                   "the other checks still ran; report this with the config")


def run_checks(ctx: PreflightContext) -> list[Finding]:
    """Every check, each guarded; the computed audit is stored back in `ctx.audit`. Never raises for bad input."""
    findings: list[Finding] = []
    try:
        args = normalise_args(ctx.args)
    except Exception as e:  # pragma: no cover - normalise_args is total, this is the last guard
        return [_failed("arguments", e)]
    if ctx.max_memory_fraction is None:  # one memory limit: the policy compare-runs judges by
        from ..compare.policy import load_policy

        ctx.max_memory_fraction = load_policy().max_memory_fraction
    host = ctx.host
    if host is None:
        try:
            host = ctx.host = HostInfo.probe()
        except Exception as e:
            findings.append(_failed("host probe", e))
            host = HostInfo(cpu_count=os.cpu_count() or 1, ram_total=0, ram_available=0)
    state = State(ctx=ctx, args=args, host=host, audit=ctx.audit)
    if state.audit is None and args.data:
        from ..data.audit import audit
        from ..data.layout import DatasetError

        try:
            state.audit = ctx.audit = audit(args.data, check_images=ctx.check_images)
        except DatasetError as e:
            state.audit_error = str(e)
        except Exception as e:
            state.audit_error = f"data={args.data!r} cannot be audited: {type(e).__name__}: {e}"
    elif state.audit is None and not args.problems:
        state.audit_error = "no data: set data to the path of a data.yaml"
    seen: set[str] = set()
    for name, check in CHECKS:
        try:
            got = check(state)
        except Exception as e:
            got = [_failed(name, e)]
        for f in got:
            if f.code in seen and f.code != "check_failed":
                continue  # one finding per code (tags preflight.<code> must not collide)
            seen.add(f.code)
            findings.append(f)
    return findings
