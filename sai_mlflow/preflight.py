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

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import keys as K
from .compare.memfit import fit_peak_memory

GIB = float(2**30)
LEVELS = ("error", "warning", "info")
DEFAULT_MAX_MEMORY_FRACTION = 0.90
# NVML "used" on an idle card is the driver's own reservation (~0.5 GiB on an H200); above this, someone else.
GPU_BUSY_MIN_BYTES = 1 * 2**30
GPU_BUSY_MIN_FRACTION = 0.02
STRIDE = 32  # YOLOv8/11 max stride: Ultralytics rounds imgsz up to a multiple of it
# GPU anchor (H200, YOLOv8s, imgsz 1440, AMP; docs/ARCHITECTURE): NVML peak per image of batch.
ANCHOR_GIB_PER_IMAGE = 1.08
ANCHOR_IMGSZ = 1440
LIST_LIMIT = 10  # items quoted in a finding's message

# Ultralytics' defaults for the arguments the checks read (ultralytics/cfg/default.yaml, 8.4).
ULTRALYTICS_DEFAULTS: dict[str, Any] = {
    "batch": 16, "imgsz": 640, "cache": False, "workers": 8, "device": None, "resume": False,
    "epochs": 100, "model": None, "data": None,
}


@dataclass(frozen=True)
class Finding:
    level: str  # 'error' | 'warning' | 'info'
    code: str  # stable, e.g. 'double_cache'
    message: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class ForecastRecord:
    """One comparable run for memory_forecast: what it trained at and the most memory it used."""

    batch_effective: int
    peak_gib: float
    total_gib: float
    model: str
    imgsz: int
    gpu: str
    run_id: str = ""


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

    @classmethod
    def probe(cls) -> HostInfo:
        import psutil

        vm = psutil.virtual_memory()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return cls(cpu_count=cores, ram_total=vm.total, ram_available=vm.available,
                   tmpfs_used=_tmpfs_used(), gpus=_nvml_gpus())


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


@dataclass
class PreflightContext:
    args: dict  # resolved Ultralytics train args (data, batch, imgsz, cache, workers, device, model, resume, ...)
    audit: Any = None  # DatasetAudit; computed (and stored back here) when None
    history: list[ForecastRecord] | None = None  # comparable runs for memory_forecast
    resume_batch: int | None = None  # batch of the checkpoint being resumed
    max_memory_fraction: float = DEFAULT_MAX_MEMORY_FRACTION
    stage_dest: str | None = None  # a planned /dev/shm staging target, for shm_capacity
    host: HostInfo | None = None  # probed when None
    gpu_name: str | None = None  # for comparability; default: the chosen device's NVML name, else 'cpu'
    check_images: bool = True  # audit decodes image headers (corrupt files); False: counts and labels only
    tracking_uri: str | None = None  # where the run will be logged; None: tracking_unwritable is not checked


# --- argument normalisation ------------------------------------------------------------------

@dataclass
class _Args:
    data: str | None = None
    batch: int | None = None  # None: AutoBatch or invalid
    batch_auto: bool = False
    imgsz_raw: Any = None
    imgsz: int | None = None  # what Ultralytics trains at (max side, rounded up to the stride)
    cache: str = "none"  # none | ram | disk
    cache_raw: Any = False
    workers: int | None = None
    cuda: list[int] | None = None  # CUDA indices; [] = CPU/MPS; None = auto (first GPU if any)
    device_raw: Any = None
    model: str | None = None
    resume: Any = False
    problems: list[str] = field(default_factory=list)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def cache_mode(value: Any) -> str:
    """Ultralytics' reading of `cache` (BaseDataset): True/'ram' -> ram, 'disk' -> disk, anything else -> none."""
    if value is True:
        return "ram"
    if isinstance(value, str):
        v = value.strip().lower()
        return v if v in ("ram", "disk") else "none"
    return "none"


def train_imgsz(value: Any) -> int | None:
    """The square side Ultralytics trains at: a list's max side, rounded up to a multiple of the stride."""
    if isinstance(value, (list, tuple)):
        if not value or not all(_is_int(v) or (isinstance(v, float) and v.is_integer()) for v in value):
            return None
        side = int(max(value))
    elif _is_int(value) or (isinstance(value, float) and value.is_integer()):
        side = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        side = int(value.strip())
    else:
        return None
    if side < 1 or side > 100_000:
        return None
    return max(STRIDE, math.ceil(side / STRIDE) * STRIDE)


def _parse_device(value: Any) -> tuple[list[int] | None, str | None]:
    """(CUDA indices | [] for cpu/mps | None for auto, problem)."""
    if value is None or value == "":
        return None, None
    if _is_int(value):
        return (None, None) if value < 0 else ([value], None)
    if isinstance(value, (list, tuple)):
        if all(_is_int(v) for v in value) and value:
            return (None, None) if any(v < 0 for v in value) else (list(value), None)
        return None, f"device={value!r}: a list of CUDA indices, e.g. [0, 1]"
    if isinstance(value, str):
        v = value.strip().lower().replace("cuda:", "")
        if v in ("cpu", "mps") or v.startswith(("npu", "xpu", "mps")):
            return [], None
        parts = [p.strip() for p in v.split(",") if p.strip()]
        if parts and all(p.lstrip("-").isdigit() for p in parts):
            ids = [int(p) for p in parts]
            return (None, None) if any(i < 0 for i in ids) else (ids, None)
    return None, f"device={value!r}: use 0, '0,1', [0, 1], 'cpu' or 'mps'"


def normalise_args(args: Any) -> _Args:
    a = _Args()
    if not isinstance(args, dict):
        a.problems.append(f"train arguments must be a mapping, got {type(args).__name__}")
        args = {}
    get = lambda k: args.get(k, ULTRALYTICS_DEFAULTS.get(k))  # noqa: E731

    data = get("data")
    if data is not None and not isinstance(data, (str, os.PathLike)):
        a.problems.append(f"data={data!r}: the path of a data.yaml")
    elif data:
        a.data = os.fspath(data)

    batch = get("batch")
    if _is_int(batch) and batch >= 1:
        a.batch = batch
    elif batch == -1 or (isinstance(batch, float) and 0.0 < batch < 1.0):
        a.batch_auto = True
    elif isinstance(batch, float) and batch.is_integer() and batch >= 1:
        a.batch = int(batch)
    else:
        a.problems.append(f"batch={batch!r}: a positive integer, -1 (AutoBatch) or a fraction in (0, 1)")

    a.imgsz_raw = get("imgsz")
    a.imgsz = train_imgsz(a.imgsz_raw)
    if a.imgsz is None:
        a.problems.append(f"imgsz={a.imgsz_raw!r}: a positive integer or a list like [1440, 808]")

    a.cache_raw = get("cache")
    a.cache = cache_mode(a.cache_raw)
    if not (a.cache_raw in (None, False, True) or isinstance(a.cache_raw, str)):
        a.problems.append(f"cache={a.cache_raw!r}: use false, true/'ram' or 'disk'")
    elif isinstance(a.cache_raw, str) and a.cache_raw.strip().lower() not in ("ram", "disk", "false", "none", ""):
        a.problems.append(f"cache={a.cache_raw!r}: Ultralytics reads this as no cache; use false, 'ram' or 'disk'")

    workers = get("workers")
    if _is_int(workers) and workers >= 0:
        a.workers = workers
    else:
        a.problems.append(f"workers={workers!r}: a non-negative integer")

    a.device_raw = get("device")
    a.cuda, problem = _parse_device(a.device_raw)
    if problem:
        a.problems.append(problem)
    model = get("model")
    a.model = os.fspath(model) if isinstance(model, (str, os.PathLike)) and model else None
    a.resume = get("resume")
    return a


# --- checks ----------------------------------------------------------------------------------

@dataclass
class _State:
    ctx: PreflightContext
    args: _Args
    host: HostInfo
    audit: Any = None
    audit_error: str | None = None

    @property
    def device_count(self) -> int:
        if self.args.cuda is None:
            return 1 if self.host.gpus else 0
        return len(self.args.cuda)


def _fmt_list(items: list[str]) -> str:
    shown = items[:LIST_LIMIT]
    more = len(items) - len(shown)
    return "; ".join(shown) + (f"; … and {more} more" if more > 0 else "")


def check_args(s: _State) -> list[Finding]:
    if not s.args.problems:
        return []
    return [Finding("error", "arg_invalid", "; ".join(s.args.problems), "correct the values named above")]


def check_dataset_audit(s: _State) -> list[Finding]:
    if s.audit_error:
        return [Finding("error", "dataset_unreadable", s.audit_error,
                        "pass the path of a data.yaml with train, val and names")]
    a = s.audit
    if a is None:
        return []
    out: list[Finding] = []
    parts = []
    for name, sp in a.splits.items():
        parts.append(f"{name}: {sp.images} images ({sp.labels} labelled, {sp.backgrounds} backgrounds, "
                     f"{sp.missing_labels} without label file, {sp.instances} objects)")
    out.append(Finding(
        "info", "dataset_audit",
        f"{'; '.join(parts)}; {len(a.corrupt)} corrupt; {a.total_bytes / GIB:.2f} GiB"
        f"{' on tmpfs' if a.on_tmpfs else ''}; digest {a.digest}",
    ))
    empty = []
    for name in ("train", "val"):
        sp = a.splits.get(name)
        if sp is None or sp.images == 0:
            empty.append(f"{name} has no images")
        elif len(sp.corrupt) >= sp.images:
            empty.append(f"every {name} image is corrupt or missing")
    if empty:
        out.append(Finding("error", "dataset_split_empty", f"{a.data_yaml}: {'; '.join(empty)}",
                           "point train/val at folders or lists that hold images"))
    train = a.splits.get("train")
    if train is not None and train.images and train.labels == 0:
        out.append(Finding("error", "dataset_no_labels",
                           f"none of the {train.images} train images has a label row (all backgrounds)",
                           "check that labels/ mirrors images/ (Ultralytics swaps the last /images/ for /labels/)"))
    if a.corrupt:
        reasons = {p: r for sp in a.splits.values() for p, r in sp.corrupt_reasons.items()}
        out.append(Finding("warning", "dataset_corrupt",
                           f"{len(a.corrupt)} corrupt or unreadable images: "
                           + _fmt_list([f"{p} ({reasons.get(p, 'unreadable')})" for p in a.corrupt]),
                           "remove or re-export them; Ultralytics drops unreadable images and re-saves "
                           "truncated JPEGs in place"))
    bad = a.bad_labels
    if bad:
        cls_n = sum(sp.class_out_of_range for sp in a.splits.values())
        xy_n = sum(sp.coords_out_of_range for sp in a.splits.values())
        out.append(Finding("warning", "dataset_bad_labels",
                           f"{len(bad)} bad label rows ({cls_n} class outside 0..{len(a.names) - 1}, "
                           f"{xy_n} coordinates outside 0..1): " + _fmt_list(bad),
                           "fix the rows; Ultralytics drops the whole image for one bad row"))
    return out


def check_double_cache(s: _State) -> list[Finding]:
    if s.audit is None or not s.audit.on_tmpfs or s.args.cache == "none":
        return []
    where = "in RAM" if s.args.cache == "ram" else "as .npy files beside the images, on the same tmpfs"
    return [Finding(
        "error", "double_cache",
        f"training images are on a tmpfs ({s.audit.root}) and cache={s.args.cache_raw!r}: Ultralytics would "
        f"keep a second copy {where}. The seed measured 31.41 s/batch instead of 1.07 s with this setup.",
        "set cache: false — the tmpfs already serves the images from RAM",
    )]


def _decoded_bytes(w: int, h: int, imgsz: int) -> int:
    """Bytes of one image as Ultralytics caches it: long side resized to imgsz, 3 channels uint8."""
    r = imgsz / max(w, h)
    if r != 1:
        w, h = min(math.ceil(w * r), imgsz), min(math.ceil(h * r), imgsz)
    return w * h * 3


def _cache_estimate(s: _State) -> tuple[int, int, int]:
    """(bytes to cache train+val at the training imgsz, images, sampled)."""
    from .data.audit import image_problem
    from .data.layout import resolve

    a, imgsz = s.audit, s.args.imgsz
    n = sum(sp.images - len(sp.corrupt) for name, sp in a.splits.items() if name in ("train", "val"))
    sizes = [wh for name, sp in a.splits.items() if name in ("train", "val") for wh in sp.image_sizes]
    if not sizes:  # audited without headers: sample like Ultralytics (it reads 30)
        layout = resolve(a.data_yaml)
        imgs = [p for k in ("train", "val") for p in layout.splits.get(k, [])]
        step = max(1, len(imgs) // 64)
        for p in imgs[::step][:64]:
            _, wh = image_problem(p)
            if wh:
                sizes.append(wh)
    if not sizes or n <= 0:
        return 0, max(n, 0), 0
    mean = sum(_decoded_bytes(w, h, imgsz) for w, h in sizes) / len(sizes)
    return int(mean * n), n, len(sizes)


def _planned_stage_bytes(s: _State) -> int:
    """Bytes a planned stage (ctx.stage_dest on a tmpfs) will take from RAM, not yet in MemAvailable."""
    from .data.audit import is_on_tmpfs
    from .data.staging import _existing_ancestor

    dest = s.ctx.stage_dest
    if not dest or s.audit is None or not is_on_tmpfs(_existing_ancestor(Path(dest))):
        return 0
    return s.audit.total_bytes


def check_cache_ram(s: _State) -> list[Finding]:
    if s.args.cache != "ram" or s.audit is None or s.args.imgsz is None:
        return []
    need, n, sampled = _cache_estimate(s)
    if not need:
        return []
    staged = _planned_stage_bytes(s)
    avail = s.host.ram_available - staged
    required = 2 * need  # Ultralytics' check_cache_ram: estimate x (1 + 100 % margin) < available
    figures = (f"cache=ram holds ≈ {need / GIB:.1f} GiB ({n} train+val images decoded at imgsz {s.args.imgsz}, "
               f"mean of {sampled} headers); Ultralytics wants 2× that free ({required / GIB:.1f} GiB); "
               f"RAM available {avail / GIB:.1f} of {s.host.ram_total / GIB:.1f} GiB "
               f"(tmpfs holds {s.host.tmpfs_used / GIB:.1f} GiB, already counted as used"
               + (f"; planned stage {staged / GIB:.1f} GiB subtracted" if staged else "") + ")")
    if required > avail:
        return [Finding("error", "cache_ram_insufficient",
                        figures + ". Ultralytics would silently train without the cache.",
                        "cache: false (stage the data to /dev/shm instead), or cache: disk, or a smaller imgsz")]
    return [Finding("info", "cache_ram_estimate", figures)]


def check_shm_capacity(s: _State) -> list[Finding]:
    out: list[Finding] = []
    if s.ctx.stage_dest and s.args.data:
        from .data.staging import StagingCapacityError, StagingError, stage

        try:
            plan = stage(s.args.data, s.ctx.stage_dest, dry_run=True, progress=False)
            if plan.copied_bytes:
                out.append(Finding("info", "shm_stage_plan",
                                   f"staging to {s.ctx.stage_dest} copies {plan.copied_files} files "
                                   f"({plan.copied_bytes / GIB:.2f} GiB); {plan.reused_files} already staged"))
        except StagingCapacityError as e:
            out.append(Finding("error", "shm_capacity", str(e),
                               "stage to a larger tmpfs (mount -o remount,size=…), free /dev/shm, or train "
                               "from disk with workers reading ahead"))
        except StagingError as e:
            out.append(Finding("error", "shm_stage_invalid", str(e), "choose another staging folder"))
    if s.audit is not None and s.audit.on_tmpfs:
        from .data.staging import ram_reserve_bytes

        reserve = ram_reserve_bytes(s.host.ram_total)
        if s.host.ram_available < reserve:
            out.append(Finding(
                "error", "shm_capacity",
                f"the data is on a tmpfs and tmpfs mounts hold {s.host.tmpfs_used / GIB:.1f} GiB of RAM; the host has "
                f"only {s.host.ram_available / GIB:.1f} of {s.host.ram_total / GIB:.1f} GiB available, under the "
                f"{reserve / GIB:.1f} GiB that dataloader workers, pinned batches and the model need",
                "free /dev/shm (old stages, other jobs' files), or fewer workers",
            ))
    return out


def check_imgsz(s: _State) -> list[Finding]:
    raw, side = s.args.imgsz_raw, s.args.imgsz
    if side is None:
        return []
    out: list[Finding] = []
    if isinstance(raw, (list, tuple)) and len({int(v) for v in raw}) > 1:
        w_h = [int(v) for v in raw]
        ratio = (side * side) / max(1, math.prod(w_h))
        per_img = ANCHOR_GIB_PER_IMAGE * (side / ANCHOR_IMGSZ) ** 2
        batch_note = f", ≈ {per_img * s.args.batch:.0f} GiB at batch {s.args.batch}" if s.args.batch else ""
        out.append(Finding(
            "warning", "imgsz_coerced",
            f"imgsz={w_h} trains at {side}×{side} (square letterbox and mosaic), {ratio:.2f}× the pixels of "
            f"{'×'.join(map(str, w_h))}; activation memory grows with pixels: ≈ {per_img:.2f} GiB per image of "
            f"batch for a YOLOv8s-class model (H200 anchor: {ANCHOR_GIB_PER_IMAGE} GiB at {ANCHOR_IMGSZ}){batch_note}",
            f"write imgsz: {side} to say what is trained, or lower it",
        ))
    else:
        given = int(float(raw[0] if isinstance(raw, (list, tuple)) else raw))
        if given != side:
            out.append(Finding("warning", "imgsz_coerced",
                               f"imgsz={given} is not a multiple of the stride {STRIDE}: Ultralytics trains at {side}",
                               f"imgsz: {side}"))
    return out


def check_workers(s: _State) -> list[Finding]:
    w = s.args.workers
    if w is None:
        return []
    nd = max(1, s.device_count)
    cap = s.host.cpu_count // nd
    if w > cap:
        explicit = isinstance(s.ctx.args, dict) and "workers" in s.ctx.args
        return [Finding("warning" if explicit else "info", "workers_vs_cores",
                        f"workers={w}{'' if explicit else ' (the default)'} but {s.host.cpu_count} cores for {nd} "
                        f"device(s): Ultralytics caps it at {cap}",
                        f"workers: {max(cap, 1)}")]
    if w == 0 and s.audit is not None and s.audit.train_images > 1000:
        return [Finding("info", "workers_vs_cores",
                        f"workers=0: images are decoded and augmented in the training loop itself "
                        f"({s.host.cpu_count} cores available)", f"workers: {min(8, max(cap, 1))}")]
    return []


def check_batch(s: _State) -> list[Finding]:
    out: list[Finding] = []
    b = s.args.batch
    if s.args.batch_auto:
        return [Finding("info", "batch_vs_dataset",
                        f"batch={s.ctx.args.get('batch')!r}: AutoBatch picks the batch on the GPU; memory_forecast and "
                        "comparisons across runs use the batch it settles on (tag batch_size_effective)")]
    if b is None:
        return []
    nd = s.device_count
    if nd > 1 and b % nd:
        out.append(Finding("error", "batch_vs_devices",
                           f"batch={b} is not a multiple of the {nd} devices in device={s.args.device_raw!r}",
                           f"batch: {b - b % nd or nd}"))
    if s.audit is not None:
        sp = s.audit.splits.get("train")
        n = (sp.images - len(sp.corrupt)) if sp else 0
        if 0 < n < b:
            out.append(Finding("warning", "batch_vs_dataset",
                               f"batch={b} exceeds the {n} usable train images: every epoch is one partial batch "
                               f"of {n}, and BatchNorm statistics and the LR schedule assume {b}",
                               f"batch: {max(1, min(b, n // 2 or 1))} or more data"))
    return out


def checkpoint_args(path: str | Path) -> dict:
    """The training arguments stored in an Ultralytics checkpoint (last.pt): ckpt['train_args']; {} if absent."""
    import torch

    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    args = ckpt.get("train_args") if isinstance(ckpt, dict) else None
    if isinstance(args, dict):
        return dict(args)
    return dict(vars(args)) if args is not None and hasattr(args, "__dict__") else {}


def checkpoint_batch(path: str | Path) -> int | None:
    """The train batch stored in an Ultralytics checkpoint (last.pt); None if absent."""
    batch = checkpoint_args(path).get("batch")
    if batch is None:
        return None
    try:
        return int(batch)
    except (TypeError, ValueError):
        return None


def _resume_checkpoint(a: _Args) -> str | None:
    if isinstance(a.resume, (str, os.PathLike)) and str(a.resume).endswith(".pt"):
        return os.fspath(a.resume)
    if a.resume and a.model and a.model.endswith(".pt") and os.path.basename(a.model).startswith("last"):
        return a.model
    return None


def check_resume(s: _State) -> list[Finding]:
    a = s.args
    if not a.resume or str(a.resume).lower() in ("false", "0", "none"):
        return []
    ckpt_batch = s.ctx.resume_batch
    path = _resume_checkpoint(a)
    if ckpt_batch is None and path:
        if not os.path.isfile(path):
            return [Finding("error", "resume_checkpoint_missing", f"resume={path}: no such checkpoint",
                            "pass PATH/weights/last.pt of the run to continue")]
        try:
            ckpt_batch = checkpoint_batch(path)
        except Exception as e:
            return [Finding("warning", "resume_checkpoint_unreadable",
                            f"cannot read the batch of {path}: {type(e).__name__}: {e}",
                            "check the file is an Ultralytics last.pt")]
    if ckpt_batch is None or a.batch is None or ckpt_batch == a.batch:
        return []
    return [Finding(
        "error", "batch_changed_on_resume",
        f"resuming a run trained at batch {ckpt_batch} with batch {a.batch}: optimizer state, LR scaling and "
        "BatchNorm statistics depend on the batch (Ultralytics 8.4 applies the new batch on resume anyway)",
        f"resume with batch: {ckpt_batch}, or restart from epoch 0 (no resume) at batch {a.batch}",
    )]


def _gpu_for(s: _State) -> GpuInfo | None:
    gpus = s.host.gpus or []
    idx = (s.args.cuda or [0])[0] if s.args.cuda != [] else None
    return next((g for g in gpus if g.index == idx), None) if idx is not None else None


def _model_key(model: str | None) -> str:
    return Path(model).name if model else ""


def check_memory_forecast(s: _State) -> list[Finding]:
    a = s.args
    if a.batch is None or a.imgsz is None:
        return []
    gpu = _gpu_for(s)
    gpu_name = s.ctx.gpu_name or (gpu.name if gpu else "cpu")
    model = _model_key(a.model)
    history = s.ctx.history or []
    comparable = [r for r in history
                  if _model_key(r.model) == model and int(r.imgsz) == a.imgsz and r.gpu == gpu_name
                  and r.batch_effective and r.peak_gib is not None and math.isfinite(r.peak_gib)]
    fit = fit_peak_memory([(r.batch_effective, r.peak_gib) for r in comparable])
    if fit is None:
        return [Finding("info", "memory_forecast",
                        f"no forecast: {len(comparable)} comparable run(s) (model {model or '?'}, imgsz {a.imgsz}, "
                        f"gpu {gpu_name}) with fewer than two distinct batch sizes",
                        "run short probes at two batch sizes to calibrate (e.g. --set epochs=1)")]
    totals = sorted(r.total_gib for r in comparable if r.total_gib and math.isfinite(r.total_gib))
    total = totals[len(totals) // 2] if totals else (gpu.total_bytes / GIB if gpu else None)
    if not total:
        return [Finding("info", "memory_forecast", "no forecast: comparable runs carry no device total")]
    frac = s.ctx.max_memory_fraction
    limit = frac * total
    pred = fit.predict(a.batch)
    best = fit.largest_batch_under(limit)
    basis = (f"fit over {len(comparable)} runs at batches {list(fit.batches)}: "
             f"{fit.intercept_gib:.1f} GiB + {fit.slope_gib_per_image:.3f} GiB per image")
    if pred > limit:
        return [Finding(
            "error", "memory_forecast",
            f"batch {a.batch} is predicted to peak at {pred:.1f} GiB (validation included) on {gpu_name}, over the "
            f"limit {limit:.1f} GiB ({frac:.0%} of {total:.1f} GiB); largest batch predicted to fit: "
            f"{best if best else 'none'} ({basis})",
            f"batch: {best}" if best else "a smaller imgsz or model",
        )]
    return [Finding("info", "memory_forecast",
                    f"batch {a.batch} predicted to peak at {pred:.1f} GiB ({pred / total:.0%} of {total:.1f} GiB, limit "
                    f"{frac:.0%}); largest batch predicted to fit: {best} ({basis})")]


def check_gpu_busy(s: _State) -> list[Finding]:
    a = s.args
    if a.cuda == []:
        return []
    gpus = s.host.gpus
    if gpus is None:  # no NVML: nothing to say about GPU memory
        if a.cuda:
            return [Finding("info", "gpu_busy", f"device={a.device_raw!r} but NVML is unavailable: "
                                                "GPU memory in use not checked")]
        return []
    wanted = a.cuda if a.cuda is not None else ([0] if gpus else [])
    out: list[Finding] = []
    missing = [i for i in wanted if i not in {g.index for g in gpus}]
    if missing:
        out.append(Finding("error", "gpu_missing",
                           f"device={a.device_raw!r} asks for CUDA device(s) {missing}, but this host has "
                           f"{len(gpus)} GPU(s)", "device: cpu, or an index that exists"))
    busy = []
    for g in gpus:
        if g.index in wanted and g.used_bytes > max(GPU_BUSY_MIN_BYTES, GPU_BUSY_MIN_FRACTION * g.total_bytes):
            busy.append(f"GPU {g.index} ({g.name}) already has {g.used_bytes / GIB:.1f} of "
                        f"{g.total_bytes / GIB:.1f} GiB in use")
    if busy:
        out.append(Finding("warning", "gpu_busy", "; ".join(busy) + " by other processes; this run gets the rest",
                           "wait for the other job, or pick an idle GPU with device: N"))
    return out


def check_tracking_writable(s: _State) -> list[Finding]:
    """Neither spool nor store writable: the run would train untracked (an unwritable cwd with ./mlruns)."""
    if s.ctx.tracking_uri is None:
        return []
    from .tracking.spool import spool_root
    from .tracking.writable import tracking_unwritable

    why = tracking_unwritable(s.ctx.tracking_uri, spool_root())
    if why is None:
        return []
    return [Finding("error", "tracking_unwritable", f"nothing of this run could be recorded: {why}",
                    "run from a writable folder, or set SAI_MLFLOW_SPOOL_DIR to a writable folder "
                    "(and --tracking-uri to a store you can write)")]


CHECKS: tuple[tuple[str, Callable[[_State], list[Finding]]], ...] = (
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
    host = ctx.host
    if host is None:
        try:
            host = ctx.host = HostInfo.probe()
        except Exception as e:
            findings.append(_failed("host probe", e))
            host = HostInfo(cpu_count=os.cpu_count() or 1, ram_total=0, ram_available=0)
    state = _State(ctx=ctx, args=args, host=host, audit=ctx.audit)
    if state.audit is None and args.data:
        from .data.audit import audit
        from .data.layout import DatasetError

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


def has_errors(findings: list[Finding]) -> bool:
    return any(f.level == "error" for f in findings)


def findings_as_tags(findings: list[Finding]) -> dict[str, str]:
    """`preflight.<code>` -> 'level: message' for the run (check_failed ones numbered)."""
    out: dict[str, str] = {}
    for f in findings:
        key = f"{K.TAG_PREFLIGHT_PREFIX}{f.code}"
        n = 2
        while key in out:
            key, n = f"{K.TAG_PREFLIGHT_PREFIX}{f.code}.{n}", n + 1
        out[key] = f"{f.level}: {f.message}"[:5000]
    return out


# --- history for memory_forecast --------------------------------------------------------------

_SAFE = re.compile(r"^[\w.\-/ :]+$")


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def load_forecast_history(client, experiment_ids, model: str | None, imgsz: int | None,
                          gpu: str | None) -> list[ForecastRecord]:
    """Comparable runs' (effective batch, peak, total) from the tracking store, by the contract keys.

    `model` compares by file name (tag `model`), `imgsz` as the trained int, `gpu` by name; None means
    any. Runs that FAILED are left out (a crash's peak is not the batch's demand) and so are runs
    without `summary/peak_gib`.
    """
    clauses = []
    for tag, value in ((K.TAG_MODEL, _model_key(model) if model else None), (K.TAG_IMGSZ, imgsz), (K.TAG_GPU, gpu)):
        if value is not None and _SAFE.match(str(value)):
            clauses.append(f"tags.{tag} = '{value}'")
    filt = " and ".join(clauses)
    out: list[ForecastRecord] = []
    token = None
    while True:
        page = client.search_runs([str(e) for e in experiment_ids], filter_string=filt, max_results=1000,
                                  page_token=token)
        for run in page:
            if run.info.status == "FAILED":
                continue
            tags, metrics = run.data.tags, run.data.metrics
            batch = _num(tags.get(K.TAG_BATCH_SIZE_EFFECTIVE) or tags.get(K.TAG_BATCH_SIZE))
            peak = _num(metrics.get(K.SUMMARY_PEAK_GIB))
            total = _num(metrics.get(K.SUMMARY_TOTAL_GIB))
            r_imgsz = _num(tags.get(K.TAG_IMGSZ))
            if not batch or peak is None or r_imgsz is None:
                continue
            rec = ForecastRecord(batch_effective=int(batch), peak_gib=peak, total_gib=total or 0.0,
                                 model=tags.get(K.TAG_MODEL, ""), imgsz=int(r_imgsz), gpu=tags.get(K.TAG_GPU, ""),
                                 run_id=run.info.run_id)
            if model is not None and _model_key(rec.model) != _model_key(model):
                continue
            if imgsz is not None and rec.imgsz != int(imgsz):
                continue
            if gpu is not None and rec.gpu != gpu:
                continue
            out.append(rec)
        token = getattr(page, "token", None)
        if not token:
            break
    return out
