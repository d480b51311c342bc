"""What a replayed run's numbers are: measured (cited by line of the history file) or generated.

A replay's per-batch and memory series are drawn between the file's numbers to give curves their
shape; in the UI they look as measured as a live run's. The run's description says which figures
come from the file (with the line and its comment, which in the seed's file traces each number to
the notes) and which series were generated, and a tag names the generated series.
"""

from __future__ import annotations

from pathlib import Path

from .. import keys as K

# (dotted key in the history file, what it is) for the figures a description lists when given
MEASURED = (
    ("batch", "batch"), ("batch_effective", "effective batch"), ("cache", "cache"),
    ("train_images", "training images"), ("batches_per_epoch", "batches per epoch"),
    ("epochs_planned", "epochs planned"), ("epochs_completed", "epochs completed"),
    ("validation_s", "validation s/epoch"), ("speed.step_s", "s/batch"),
    ("speed.warmup.batches", "warm-up batches"), ("speed.warmup.first_s", "first batch s"),
    ("speed.data_wait_fraction", "data-wait fraction"), ("memory.total_gib", "memory total GiB"),
    ("memory.ramp", "memory ramp (s, GiB)"), ("memory.samples", "memory samples (s, GiB)"),
    ("memory.val_gib", "memory during validation GiB"), ("memory.leak_gib_per_hour", "leak GiB/h"),
)


def key_lines(path: str | Path) -> tuple[dict[str, int], list[tuple[int, int, dict[str, int]]]]:
    """Line numbers (1-based) of every key: (defaults' keys, per run: (first line, last line, keys))."""
    import yaml

    text = Path(path).read_text()
    root = yaml.compose(text)

    def walk(node, prefix: str, out: dict[str, int]) -> dict[str, int]:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                name = f"{prefix}{k.value}"
                out[name] = k.start_mark.line + 1
                walk(v, name + ".", out)
        return out

    defaults: dict[str, int] = {}
    runs: list[tuple[int, int, dict[str, int]]] = []
    if isinstance(root, yaml.MappingNode):
        for k, v in root.value:
            if k.value == "defaults":
                walk(v, "", defaults)
            elif k.value == "runs" and isinstance(v, yaml.SequenceNode):
                for item in v.value:
                    end = item.end_mark.line + (1 if item.end_mark.column else 0)
                    runs.append((item.start_mark.line + 1, end, walk(item, "", {})))
    return defaults, runs


def _comment(lines: list[str], n: int) -> str:
    line = lines[n - 1] if 0 < n <= len(lines) else ""
    return line.split("#", 1)[1].strip()[:90] if "#" in line else ""


def _value(spec, dotted: str):
    v = spec
    for part in dotted.split("."):
        v = getattr(v, part, None)
        if v is None:
            return None
    return v


def _show(v) -> str:
    if isinstance(v, list) and len(v) > 4:
        return f"{len(v)} values"
    return str(v)


def generated_series(spec) -> list[str]:
    """The series the importer draws between the file's numbers (not given point by point)."""
    out = []
    if spec.speed is not None:
        if not isinstance(spec.speed.step_s, list):
            out.append(K.BATCH_STEP_S)
        if spec.speed.data_wait_fraction is not None:
            out += [K.BATCH_DATA_WAIT_S, K.BATCH_COMPUTE_S]
        if not isinstance(spec.speed.step_s, list):
            out += [K.EPOCH_STEP_S_MEDIAN, K.EPOCH_DURATION_S]
    if spec.memory is not None and spec.memory.samples is None:
        out += [K.MEMORY_USED_GIB, K.MEMORY_WINDOW_PEAK_GIB, K.EPOCH_TRAIN_PEAK_GIB, K.EPOCH_VAL_PEAK_GIB]
    return out


def description(path: str | Path, index: int, spec) -> str:
    """Markdown for the run's MLflow description: measured figures with their lines, generated series."""
    p = Path(path)
    lines = p.read_text().splitlines()
    defaults, runs = key_lines(p)
    first, last, own = runs[index] if index < len(runs) else (0, 0, {})
    cited = []
    for key, label in MEASURED:
        v = _value(spec, key)
        n = own.get(key) or defaults.get(key)
        if v is None or not n:
            continue
        note = _comment(lines, n)
        quoted = f': "{note}"' if note else ""
        cited.append(f"- {label}: {_show(v)} (line {n}{quoted})")
    for key, values in spec.epochs.items():
        n = own.get(f"epochs.{key}") or defaults.get(f"epochs.{key}")
        shown = ", ".join("—" if x is None else f"{x:g}" for x in values)
        cited.append(f"- {key} per epoch: {shown} (line {n})" if n else f"- {key} per epoch: {shown}")
    gen = generated_series(spec)
    out = [f"**Replay**, not a live run: `{p.name}` lines {first}–{last} (run `{spec.name}`), logged by "
           f"`sai-mlflow import-history`; the file is attached under `{K.ARTIFACT_HISTORY_DIR}/`.",
           "", "**Measured** (from the file; its comments say where each number comes from):", "", *cited, ""]
    if gen:
        out += ["**Generated** to give a curve its shape (warm-up decay, ±jitter, memory between the ramp "
                f"points; tag `{K.TAG_GENERATED_SERIES}`): " + ", ".join(f"`{g}`" for g in gen) + ".", ""]
    out.append("`summary/*` is computed from these series exactly as for a live run, so it reproduces the "
               "measured figures above.")
    return "\n".join(out)
