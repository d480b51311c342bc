"""Every tag, param and metric name of the public contract, written once.

The MLflow UI, compare-runs and outside scripts depend on these names
(see docs/metrics.md); change them only on purpose, together with the docs.
"""

from __future__ import annotations

import re

# --- tags -------------------------------------------------------------------
TAG_BATCH_SIZE = "batch_size"
TAG_BATCH_SIZE_EFFECTIVE = "batch_size_effective"
TAG_CACHE_MODE = "cache_mode"
TAG_DATA_ON_TMPFS = "data_on_tmpfs"
TAG_GPU = "gpu"
TAG_MODEL = "model"
TAG_IMGSZ = "imgsz"
TAG_STAGE = "stage"
TAG_RUN_KIND = "run_kind"
TAG_MEMORY_SOURCE = "memory_source"
TAG_DATASET_DIGEST = "dataset_digest"
# The number of devices the run trained on (the DDP world size; 1 for one device or the CPU). Optional:
# absent (older runs, imports without it) means 1, so it is not in CONTRACT_TAGS. `batch_size` stays
# Ultralytics' total over all devices; each device holds batch_size_effective // devices images.
TAG_DEVICES = "devices"

CONTRACT_TAGS = (
    TAG_BATCH_SIZE, TAG_BATCH_SIZE_EFFECTIVE, TAG_CACHE_MODE, TAG_DATA_ON_TMPFS, TAG_GPU,
    TAG_MODEL, TAG_IMGSZ, TAG_STAGE, TAG_RUN_KIND, TAG_MEMORY_SOURCE, TAG_DATASET_DIGEST,
)

CACHE_MODES = ("none", "ram", "disk")
GPU_MODELS_SEPARATOR = " + "  # `gpu` of a run whose devices differ in model: "NVIDIA A100 + NVIDIA H100"


def gpu_tag(names) -> str:
    """The `gpu` tag of a run from its devices' names (CUDA index order): the name when they share one
    model, else the distinct models sorted and joined by " + ". Runs are grouped on `gpu` equality, so a
    mixed run is `not_comparable` with runs on one model (and comparable with runs of the same mix)."""
    distinct = sorted({str(n).strip() for n in names if str(n).strip()})
    return GPU_MODELS_SEPARATOR.join(distinct) if distinct else "cpu"


def gpu_models(tag: str | None) -> list[str]:
    """The GPU models a `gpu` tag names (one for a single-model run)."""
    return [p for p in str(tag or "").split(GPU_MODELS_SEPARATOR) if p]

RUN_KIND_TRAIN = "train"
RUN_KIND_PROBE = "probe"
RUN_KIND_PROBE_SESSION = "probe_session"
RUN_KIND_ULTRALYTICS = "ultralytics"  # shown (never written) for runs logged by Ultralytics' own MLflow callback
RUN_KINDS = (RUN_KIND_TRAIN, RUN_KIND_PROBE, RUN_KIND_PROBE_SESSION, "import", "replay", "decision",
             RUN_KIND_ULTRALYTICS)
TAG_PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's own nesting tag: a probe under its session
MEMORY_SOURCES = ("nvml", "rss")

# Written by compare-runs --tag-runs and preflight; not part of the run identity.
TAG_VERDICT = "sai.verdict"
TAG_REASONS = "sai.reasons"
TAG_PREFLIGHT_PREFIX = "preflight."
TAG_IMPORT_FINGERPRINT = "sai.import_fingerprint"  # import-history / import-ultralytics: idempotence
TAG_IMPORT_SOURCE = "sai.import_source"
TAG_LOCAL_RUN_ID = "sai.local_run_id"  # sync: the spool id a run was created from (local-…, or a run the store lacked)
TAG_NOTE_INF_CLAMPED = "sai.note.inf_clamped"  # keys whose ±inf a SQL store keeps as ±1.8e308
TAG_NOTE_KEYS_MAPPED = "sai.note.keys_mapped"  # names MLflow rejects -> the names they were logged under
TAG_NOTE_SET_ASIDE = "sai.note.set_aside"  # non-numeric values kept in the spool, shown by sync --dry-run
TAG_DESCRIPTION = "mlflow.note.content"  # MLflow's run description (markdown), shown atop the run page
TAG_GENERATED_SERIES = "sai.replay.generated"  # replay: the series generated to give a curve its shape
TAG_JUDGED_RUNS = "sai.decision.runs"  # decision run: the run ids it judged, comma-separated
TAG_RECOMMENDED_RUN = "sai.decision.recommended"  # decision run: the recommended run id, or none
RUN_KIND_DECISION = "decision"

# Written by `promote` on a model version (docs/registry.md): few and short; the rest is its description
TAG_VERSION_ALIAS = "sai.alias"
TAG_VERSION_PREVIOUS = "sai.previous_version"
TAG_VERSION_GATES = "sai.gates"
TAG_VERSION_BY = "sai.by"

# The live guard (sai_mlflow/training/guard.py): a finding during training, and the code that stopped it.
TAG_ALERT_PREFIX = "sai.alert."  # sai.alert.<reason code> = the one-line message with its fix
TAG_STOPPED_BY = "sai.stopped_by"

# `sai-mlflow probe`: on each probe run, and on the probe_session parent.
TAG_PROBE_OUTCOME = "sai.probe.outcome"            # probe: measured / over_limit / failed
TAG_PROBE_PREDICTED_PEAK = "sai.probe.predicted_peak_gib"  # probe: the fit's forecast when it was launched
TAG_PROBE_BATCHES = "sai.probe.batches"            # session: the batches probed, in order
TAG_PROBE_RECOMMENDED = "sai.probe.recommended_batch"
TAG_PROBE_SUGGESTED = "sai.probe.suggested_batch"
TAG_PROBE_NEXT_COMMAND = "sai.probe.next_command"
TAG_PROBE_STOP_REASON = "sai.probe.stop_reason"    # session: why --auto stopped growing

# --- params -----------------------------------------------------------------
ENV_PARAMS = (
    "env.python", "env.torch", "env.ultralytics", "env.mlflow", "env.cuda", "env.driver",
    "env.gpu_name", "env.gpu_total_gib", "env.host_ram_gib", "env.shm_total_gib",
)
DATA_PARAMS = ("data.train_images", "data.val_images", "data.backgrounds", "data.corrupt", "data.bytes")

# --- metrics: per batch (step = global 0-based batch index) -------------------
BATCH_STEP_S = "batch/step_s"
BATCH_DATA_WAIT_S = "batch/data_wait_s"
BATCH_COMPUTE_S = "batch/compute_s"

# --- metrics: memory samples --------------------------------------------------
MEMORY_USED_GIB = "memory/used_gib"  # step = sample index, timestamp = wall clock
MEMORY_WINDOW_PEAK_GIB = "memory/window_peak_gib"  # step = publish index
MEMORY_TOTAL_GIB = "memory/total_gib"  # same steps as used_gib: the device total, a line in MLflow's panel
MEMORY_LIMIT_GIB = "memory/limit_gib"  # same steps: the policy's max_memory_fraction x total
MEMORY_DEVICE_PREFIX = "memory/device/"  # + "<i>/used_gib": one device's samples (i = CUDA index in the run)


def memory_device_used_gib(index: int) -> str:
    """`memory/device/<i>/used_gib`: device i's own samples; `memory/used_gib` is the largest device's."""
    return f"{MEMORY_DEVICE_PREFIX}{int(index)}/used_gib"

# --- metrics: per epoch (step = 1-based epoch) --------------------------------
TRAIN_LOSSES = ("train/box_loss", "train/cls_loss", "train/dfl_loss")
VAL_LOSSES = ("val/box_loss", "val/cls_loss", "val/dfl_loss")
VAL_PRECISION = "val/precision"
VAL_RECALL = "val/recall"
VAL_MAP50 = "val/mAP50"
VAL_MAP50_95 = "val/mAP50-95"
LR_KEYS = ("lr/pg0", "lr/pg1", "lr/pg2")
EPOCH_TRAIN_PEAK_GIB = "epoch/train_peak_gib"
EPOCH_VAL_PEAK_GIB = "epoch/val_peak_gib"
EPOCH_TORCH_RESERVED_PEAK_GIB = "epoch/torch_reserved_peak_gib"
EPOCH_TORCH_ALLOCATED_PEAK_GIB = "epoch/torch_allocated_peak_gib"
EPOCH_STEP_S_MEDIAN = "epoch/step_s_median"
EPOCH_DURATION_S = "epoch/duration_s"
EPOCH_ETA_S = "epoch/eta_s"

# Ultralytics' results keys -> contract keys (theirs hold parentheses MLflow rejects).
ULTRALYTICS_METRIC_MAP = {
    "metrics/precision(B)": VAL_PRECISION,
    "metrics/recall(B)": VAL_RECALL,
    "metrics/mAP50(B)": VAL_MAP50,
    "metrics/mAP50-95(B)": VAL_MAP50_95,
    **{k: k for k in TRAIN_LOSSES + VAL_LOSSES + LR_KEYS},
}

# --- metrics: summary (step 0, refreshed every epoch end) ---------------------
SUMMARY_STEP_S_STEADY = "summary/step_s_steady"
SUMMARY_STEP_S_P90 = "summary/step_s_p90"
SUMMARY_WARMUP_BATCHES = "summary/warmup_batches"
SUMMARY_IMAGES_PER_S = "summary/images_per_s"
SUMMARY_DATA_WAIT_FRACTION = "summary/data_wait_fraction"
SUMMARY_PEAK_GIB = "summary/peak_gib"
SUMMARY_TOTAL_GIB = "summary/total_gib"
SUMMARY_PEAK_FRACTION = "summary/peak_fraction"
SUMMARY_BEST_MAP50 = "summary/best_mAP50"
SUMMARY_BEST_MAP50_95 = "summary/best_mAP50-95"
SUMMARY_EPOCHS_COMPLETED = "summary/epochs_completed"
SUMMARY_EPOCHS_PLANNED = "summary/epochs_planned"
SUMMARY_BATCHES_PER_EPOCH = "summary/batches_per_epoch"
SUMMARY_ETA_FULL_S = "summary/eta_full_s"
# steady-state memory (the second half of memory/used_gib), so compare-runs judges a leak without the series;
# used only while summary/memory_samples equals the samples the store holds
SUMMARY_MEMORY_SAMPLES = "summary/memory_samples"
SUMMARY_MEMORY_STEADY_SPAN_S = "summary/memory_steady_span_s"
SUMMARY_MEMORY_GROWTH_GIB_PER_H = "summary/memory_growth_gib_per_h"

SUMMARY_KEYS = (
    SUMMARY_STEP_S_STEADY, SUMMARY_STEP_S_P90, SUMMARY_WARMUP_BATCHES, SUMMARY_IMAGES_PER_S,
    SUMMARY_DATA_WAIT_FRACTION, SUMMARY_PEAK_GIB, SUMMARY_TOTAL_GIB, SUMMARY_PEAK_FRACTION,
    SUMMARY_BEST_MAP50, SUMMARY_BEST_MAP50_95, SUMMARY_EPOCHS_COMPLETED, SUMMARY_EPOCHS_PLANNED,
    SUMMARY_BATCHES_PER_EPOCH, SUMMARY_ETA_FULL_S,
    SUMMARY_MEMORY_SAMPLES, SUMMARY_MEMORY_STEADY_SPAN_S, SUMMARY_MEMORY_GROWTH_GIB_PER_H,
)

EPOCH_KEYS = (
    *TRAIN_LOSSES, *VAL_LOSSES, VAL_PRECISION, VAL_RECALL, VAL_MAP50, VAL_MAP50_95, *LR_KEYS,
    EPOCH_TRAIN_PEAK_GIB, EPOCH_VAL_PEAK_GIB, EPOCH_STEP_S_MEDIAN, EPOCH_DURATION_S, EPOCH_ETA_S,
)
GPU_ONLY_EPOCH_KEYS = (EPOCH_TORCH_RESERVED_PEAK_GIB, EPOCH_TORCH_ALLOCATED_PEAK_GIB)
BATCH_KEYS = (BATCH_STEP_S, BATCH_DATA_WAIT_S, BATCH_COMPUTE_S)
MEMORY_KEYS = (MEMORY_USED_GIB, MEMORY_WINDOW_PEAK_GIB, MEMORY_TOTAL_GIB, MEMORY_LIMIT_GIB)

ALL_METRIC_KEYS = BATCH_KEYS + MEMORY_KEYS + EPOCH_KEYS + GPU_ONLY_EPOCH_KEYS + SUMMARY_KEYS

# --- run artifacts (beside the weights and in MLflow) ------------------------------
ARTIFACT_SUMMARY_MD = "summary.md"  # the run's own report: figures with units, projected hours
ARTIFACT_RUN_PLOT = "run_plot.png"  # s/batch (warm-up shaded), memory with the limit line, mAP50 per epoch
ARTIFACT_MEMORY_TIMELINE = "memory_timeline.png"
ARTIFACT_DECISION_MD = "decision.md"  # decision run: compare-runs' markdown
ARTIFACT_DECISION_JSON = "decision.json"  # decision run: compare-runs' JSON
ARTIFACT_DECISION_PLOT = "decision.png"  # decision run: compare-runs' plot
ARTIFACT_HISTORY_DIR = "history"  # replay: the history file it came from

# MLflow's own system metrics (CPU, RAM, disk, network, GPU) keep MLflow's names under this prefix
SYSTEM_METRICS_PREFIX = "system/"

# --- environment variables ----------------------------------------------------
ENV_RUN_ID = "SAI_MLFLOW_RUN_ID"  # hands the open run to DDP workers / resumed processes
ENV_UI_URL = "SAI_MLFLOW_UI_URL"  # base URL of the MLflow UI for printed links
DEFAULT_UI_URL = "http://127.0.0.1:5000"
RUN_ID_FILE = "mlflow_run_id.txt"  # kept next to the weights, for --resume

GIB = float(2**30)

_MLFLOW_KEY_RE = re.compile(r"^[/\w.\- :]*$")
_BAD_CHARS_RE = re.compile(r"[^/\w.\- :]")


def is_valid_key(key: str) -> bool:
    """MLflow's own rule for metric/param/tag names."""
    return bool(key) and len(key) <= 250 and _MLFLOW_KEY_RE.match(key) is not None


def sanitize_key(key: str) -> str:
    """Map a name MLflow would reject onto one it accepts: `a(b)` -> `a_b`."""
    mapped = ULTRALYTICS_METRIC_MAP.get(key)
    if mapped:
        return mapped
    cleaned = _BAD_CHARS_RE.sub("_", key).strip("_") or "_"
    return cleaned[:250]
