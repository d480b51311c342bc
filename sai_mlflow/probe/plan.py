"""The pure part of a probe session: which batches, how many images, when --auto stops.

--auto grows the batch geometrically and never launches a probe whose forecast is over the
policy's memory limit. With one measured point the forecast is proportional (memory / batch x
the new batch), which counts the fixed part of memory as if it grew with the batch: too high,
so it errs on the safe side. From two points on it is compare-runs' least-squares fit
(`compare.memfit`), validation included since the peaks fed in are each probe's highest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..compare.memfit import MemoryFit, fit_peak_memory

DEFAULT_BATCHES = 60       # per probe: past the seed's ~30 warm-up batches, then 30 steady ones
DEFAULT_VAL_BATCHES = 2    # validation batches (at Ultralytics' validation batch, 2x)
DEFAULT_AUTO_START = 16
DEFAULT_MAX_PROBES = 4
GROWTH = 2
MIN_GAIN = 1.1             # --auto does not probe a batch less than 10 % above the largest probed


class PlanError(ValueError):
    """A batch list or probe setting that cannot be used: one sentence (exit 2)."""


def parse_batches(text: str) -> list[int]:
    """'16,32' -> [16, 32]: whole numbers > 0, no repeats, in the order given."""
    out: list[int] = []
    for part in str(text).split(","):
        p = part.strip()
        if not p:
            continue
        try:
            b = int(p)
        except ValueError:
            raise PlanError(f"--batches {text!r}: '{p}' is not a whole number; give e.g. --batches 16,32") from None
        if b <= 0:
            raise PlanError(f"--batches {text!r}: batch {b} must be at least 1")
        if b in out:
            raise PlanError(f"--batches {text!r}: batch {b} is listed twice")
        out.append(b)
    if not out:
        raise PlanError(f"--batches {text!r}: no batch sizes; give e.g. --batches 16,32")
    return out


@dataclass(frozen=True)
class Point:
    """One probe as --auto sees it: the batch asked for, the one trained, the peak (None when the probe
    crashed: a partial peak is no batch's demand), and whether it was over the limit (measured over,
    out of memory, or halved by Ultralytics). A measured peak over the limit still joins the fit."""

    batch: int
    batch_effective: int | None
    peak_gib: float | None
    over: bool


@dataclass(frozen=True)
class Step:
    batch: int | None          # the next probe, or None: stop
    predicted_gib: float | None
    why: str                   # why this batch, or why the session stops


def forecast(points: Sequence[Point]) -> MemoryFit | None:
    """The fit --auto and the report use: least squares over measured points; with one, proportional."""
    pts = [(p.batch_effective or p.batch, p.peak_gib) for p in points if p.peak_gib]
    fit = fit_peak_memory(pts)
    if fit is None and pts:
        b, peak = pts[-1]
        fit = MemoryFit(0.0, peak / b, (b,))
    return fit


def next_auto(points: Sequence[Point], limit_gib: float | None, start: int = DEFAULT_AUTO_START,
              max_batch: int | None = None, max_probes: int = DEFAULT_MAX_PROBES) -> Step:
    """The next batch of an --auto session, or why it stops."""
    if not points:
        return Step(start if not max_batch else min(start, max_batch), None, "the starting batch")
    over = [p for p in points if p.over]
    if over:
        return Step(None, None, f"batch {over[0].batch} was over the limit (measured)")
    if len(points) >= max_probes:
        return Step(None, None, f"{max_probes} probes made (--max-probes)")
    last = max(p.batch for p in points)
    if max_batch and last >= max_batch:
        return Step(None, None, f"batch {last} already takes the whole probe set ({max_batch} images)")
    fit = forecast(points)
    if fit is None or limit_gib is None:
        return Step(None, None, "no memory measured: nothing to forecast from")
    want = last * GROWTH
    if max_batch:
        want = min(want, max_batch)
    pred = fit.predict(want)
    if pred <= limit_gib:
        return Step(want, pred, f"x{GROWTH}: forecast {pred:.2f} GiB within the limit {limit_gib:.2f} GiB")
    safe = fit.largest_batch_under(limit_gib)
    if safe is None or safe <= last:
        return Step(None, None, f"batch {want} is forecast at {pred:.2f} GiB, over the limit {limit_gib:.2f} GiB, "
                                f"and no batch above {last} is forecast under it: {last} is the largest safe batch")
    if safe < last * MIN_GAIN:
        return Step(None, None, f"batch {want} is forecast at {pred:.2f} GiB, over the limit {limit_gib:.2f} GiB; "
                                f"the largest safe batch, {safe}, is within {MIN_GAIN - 1:.0%} of the probed {last}")
    return Step(safe, fit.predict(safe),
                f"batch {want} is forecast over the limit ({pred:.2f} > {limit_gib:.2f} GiB): the largest "
                f"batch forecast under it instead")


def subset_sizes(batch: int, n_train: int, n_val: int, batches: int = DEFAULT_BATCHES,
                 val_batches: int = DEFAULT_VAL_BATCHES) -> tuple[int, int]:
    """(train images, val images) of one probe: `batches` batches of training (fewer if the set is
    smaller) and `val_batches` batches of validation at Ultralytics' 2x batch."""
    return min(n_train, batch * batches), min(n_val, 2 * batch * val_batches)


def full_run_plan(batch: int, n_train: int, val_s: float, val_images_probe: int, n_val: int) -> tuple[int, float]:
    """(batches per epoch, validation seconds per epoch) of the full run, from a probe: what
    `summary/eta_full_s` needs (telemetry.summary) to project the whole run. Validation time is
    scaled from the probe's images to the full validation set."""
    return math.ceil(n_train / batch), (val_s * n_val / val_images_probe if val_images_probe else 0.0)


def forecast_batches(probed: Sequence[int], extra: Sequence[int | None]) -> list[int]:
    """Batches worth a forecast line: those named (config's, suggested) and 2x the largest probed."""
    want = {b for b in extra if b} | ({max(probed) * GROWTH} if probed else set())
    return sorted(b for b in want if b not in set(probed) and b > 0)


@dataclass(frozen=True)
class DevicePlan:
    """Where the probes train and for how many devices the plan is: each probe runs with `probe_device`
    (the config's list: one DDP probe at a time; or one device of it); batches printed for the plan are
    the probed batch x `per_probe` (1 when the probes train on every device of the plan)."""

    probe_device: str | None   # Ultralytics' `device` for each probe (None: the config's, i.e. Ultralytics' default)
    plan_devices: int          # devices of the training the probes are for
    per_probe: int             # plan batch = probed batch x per_probe
    note: str | None           # said to the user when the probes measure less than the plan will use


def device_list(device) -> list[str]:
    """Ultralytics' `device` ('0,1', [0, 1], 0, 'cpu', None) as a list of CUDA indices ([] for cpu/none)."""
    if device is None:
        return []
    parts = [str(d).strip() for d in device] if isinstance(device, list | tuple) else str(device).split(",")
    parts = [p for p in parts if p]
    return parts if parts and all(p.isdigit() for p in parts) else []


def plan_devices(config_device, flag: str | None) -> DevicePlan:
    """`probe --devices`: absent, the config's device list (a DDP probe when it names several); one index,
    that device alone for a plan over the config's devices."""
    devices = device_list(config_device)
    n = max(len(devices), 1)
    if flag is None:
        return DevicePlan(None, n, 1, None)
    one = str(flag).strip()
    if not one.isdigit():
        raise PlanError(f"--devices {flag!r}: give one CUDA index, e.g. --devices 0 (without it, the probes "
                        "train on the config's device list)")
    if n == 1:
        return DevicePlan(one, 1, 1, None)
    return DevicePlan(one, n, n, f"probing device {one} alone for a plan on {n} devices ({','.join(devices)}): "
                                 f"each probe's batch is one device's share, the batches printed for the plan are "
                                 f"{n}x; DDP's communication buffers are not measured, so leave headroom")
