"""The checks that catch the seed's traps before any GPU time is spent: each `(State) -> list[Finding]`."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..keys import GIB
from ..ultralytics_args import STRIDE, cache_ambiguous, checkpoint_batch
from .args import Args
from .finding import Finding
from .state import State

# NVML "used" on an idle card is the driver's own reservation (~0.5 GiB on an H200); above this, someone else.
GPU_BUSY_MIN_BYTES = 1 * 2**30
GPU_BUSY_MIN_FRACTION = 0.02
# GPU anchor (H200, YOLOv8s, imgsz 1440, AMP; docs/case-study.md): NVML peak per image of batch.
ANCHOR_GIB_PER_IMAGE = 1.08
ANCHOR_IMGSZ = 1440
LIST_LIMIT = 10  # items quoted in a finding's message


def _fmt_list(items: list[str]) -> str:
    shown = items[:LIST_LIMIT]
    more = len(items) - len(shown)
    return "; ".join(shown) + (f"; … and {more} more" if more > 0 else "")


def check_args(s: State) -> list[Finding]:
    if not s.args.problems:
        return []
    return [Finding("error", "arg_invalid", "; ".join(s.args.problems), "correct the values named above")]


def check_dataset_audit(s: State) -> list[Finding]:
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


def check_double_cache(s: State) -> list[Finding]:
    ambiguous = cache_ambiguous(s.args.cache_raw)
    if s.audit is None or not s.audit.on_tmpfs or (s.args.cache == "none" and not ambiguous):
        return []
    where = ("in RAM" if s.args.cache == "ram" or ambiguous
             else "as .npy files beside the images, on the same tmpfs")
    reading = " (a truthy value that Ultralytics versions read differently: take it as RAM)" if ambiguous else ""
    return [Finding(
        "error", "double_cache",
        f"training images are on a tmpfs ({s.audit.root}) and cache={s.args.cache_raw!r}{reading}: Ultralytics "
        f"would keep a second copy {where}. The seed measured 31.41 s/batch instead of 1.07 s with this setup.",
        "set cache: false — the tmpfs already serves the images from RAM",
    )]


def _decoded_bytes(w: int, h: int, imgsz: int) -> int:
    """Bytes of one image as Ultralytics caches it: long side resized to imgsz, 3 channels uint8."""
    r = imgsz / max(w, h)
    if r != 1:
        w, h = min(math.ceil(w * r), imgsz), min(math.ceil(h * r), imgsz)
    return w * h * 3


def _cache_estimate(s: State) -> tuple[int, int, int]:
    """(bytes to cache train+val at the training imgsz, images, sampled)."""
    from ..data.audit import image_problem
    from ..data.layout import resolve

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


def _planned_stage_bytes(s: State) -> int:
    """Bytes a planned stage (ctx.stage_dest on a tmpfs) will take from RAM, not yet in MemAvailable."""
    from ..data.audit import is_on_tmpfs
    from ..data.staging import _existing_ancestor

    dest = s.ctx.stage_dest
    if not dest or s.audit is None or not is_on_tmpfs(_existing_ancestor(Path(dest))):
        return 0
    return s.audit.total_bytes


def check_cache_ram(s: State) -> list[Finding]:
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


def check_shm_capacity(s: State) -> list[Finding]:
    out: list[Finding] = []
    if s.ctx.stage_dest and s.args.data:
        from ..data.staging import StagingCapacityError, StagingError, stage

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
        from ..data.staging import ram_reserve_bytes

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


def check_imgsz(s: State) -> list[Finding]:
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


def check_workers(s: State) -> list[Finding]:
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


def check_batch(s: State) -> list[Finding]:
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


def _resume_checkpoint(a: Args) -> str | None:
    if isinstance(a.resume, (str, os.PathLike)) and str(a.resume).endswith(".pt"):
        return os.fspath(a.resume)
    if a.resume and a.model and a.model.endswith(".pt") and os.path.basename(a.model).startswith("last"):
        return a.model
    return None


def check_resume(s: State) -> list[Finding]:
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



def _missing_gpu(s: State) -> Finding | None:
    """The CUDA indices asked for that this host does not have (torch's count first: it is what Ultralytics
    selects from), said before training instead of failing inside Ultralytics."""
    a, host = s.args, s.host
    if not a.cuda:
        return None
    count = host.cuda_devices if host.cuda_devices is not None else (len(host.gpus) if host.gpus is not None else None)
    if count is None:
        return None
    missing = [i for i in a.cuda if i >= count]
    if not missing:
        return None
    has = "no CUDA GPU" if count == 0 else f"{count} CUDA GPU(s), indices 0..{count - 1}"
    fix = "device: cpu" + (f", or an index below {count}" if count else " (or run on a GPU host)")
    return Finding("error", "gpu_missing", f"device={a.device_raw!r} asks for CUDA device(s) {missing}, but this host "
                   f"has {has}", fix)


def check_gpu_busy(s: State) -> list[Finding]:
    a = s.args
    if a.cuda == []:
        return []
    missing = _missing_gpu(s)
    gpus = s.host.gpus
    if gpus is None:  # no NVML: nothing to say about GPU memory
        if missing:
            return [missing]
        if a.cuda:
            return [Finding("info", "gpu_busy", f"device={a.device_raw!r} but NVML is unavailable: "
                                                "GPU memory in use not checked")]
        return []
    wanted = a.cuda if a.cuda is not None else ([0] if gpus else [])
    out: list[Finding] = [missing] if missing else []
    busy = []
    for g in gpus:
        if g.index in wanted and g.used_bytes > max(GPU_BUSY_MIN_BYTES, GPU_BUSY_MIN_FRACTION * g.total_bytes):
            busy.append(f"GPU {g.index} ({g.name}) already has {g.used_bytes / GIB:.1f} of "
                        f"{g.total_bytes / GIB:.1f} GiB in use")
    if busy:
        out.append(Finding("warning", "gpu_busy", "; ".join(busy) + " by other processes; this run gets the rest",
                           "wait for the other job, or pick an idle GPU with device: N"))
    return out



def check_tracking_writable(s: State) -> list[Finding]:
    """Neither spool nor store writable: the run would train untracked (an unwritable cwd with ./mlruns)."""
    if s.ctx.tracking_uri is None:
        return []
    from ..tracking.spool import spool_root
    from ..tracking.writable import tracking_unwritable

    why = tracking_unwritable(s.ctx.tracking_uri, spool_root())
    if why is None:
        return []
    return [Finding("error", "tracking_unwritable", f"nothing of this run could be recorded: {why}",
                    "run from a writable folder, or set SAI_MLFLOW_SPOOL_DIR to a writable folder "
                    "(and --tracking-uri to a store you can write)")]
