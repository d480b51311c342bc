"""Files a run leaves behind beside its weights: the per-batch table, the memory timeline plot, and the
run's own summary report (summary.md) and plot (run_plot.png, compare-runs' plotter over this run alone)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from .. import keys as K
from ..telemetry.clock import BatchClock
from ..telemetry.steady_memory import steady_half


def write_batch_table(path: Path, clock: BatchClock) -> Path:
    """One row per batch: global step, data wait, compute, step seconds, wall time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "data_wait_s", "compute_s", "step_s", "timestamp_ms"])
        for i, (wait, compute, end) in enumerate(list(clock.rows)):
            w.writerow([clock.offset + i, f"{wait:.6f}", f"{compute:.6f}", f"{wait + compute:.6f}", clock.wall_ms(end)])
    return path


def write_memory_timeline(path: Path, samples: list[tuple[int, float]], total_gib: float, source: str) -> Path | None:
    """Memory over time with the device total drawn in: the picture the seed's 138/140 GB needed."""
    if not samples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = samples[0][0]
    xs = [(ts - t0) / 1000.0 for ts, _ in samples]
    ys = [g for _, g in samples]
    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    ax.plot(xs, ys, lw=1.2, label=f"used ({source})")
    ax.axhline(total_gib, color="crimson", ls="--", lw=1, label=f"total {total_gib:.1f} GiB")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("GiB")
    ax.set_title(f"Memory timeline (peak {max(ys):.2f} GiB = {100 * max(ys) / total_gib:.1f} % of total)")
    ax.set_ylim(0, max(total_gib, max(ys)) * 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


@dataclass
class RunFacts:
    """What the tracker knows about its run at the end, for its own report."""

    run_id: str
    run_name: str
    batch_size: int | float | str | None  # the request as recorded (AutoBatch: -1 or a fraction)
    batch_size_effective: int | None
    summary: dict[str, float]
    step_s: list[tuple[int, float]] = field(default_factory=list)     # (global batch, s)
    memory: list[tuple[float, float]] = field(default_factory=list)   # (seconds since start, GiB)
    map50: list[float] = field(default_factory=list)                  # per epoch, from epoch 1
    memory_source: str = "rss"
    cache_mode: str | None = None
    data_on_tmpfs: bool | None = None
    tags: dict[str, str] = field(default_factory=dict)  # the run's contract tags (devices, gpu, …), when known


def _one_run_decision(facts: RunFacts, limit_fraction: float):
    """compare-runs' own core over this run alone: the same record, reasons and plot as a comparison."""
    from ..compare.decision import decide
    from ..compare.policy import load_policy, make_policy
    from ..compare.record import record_from_keys

    known = {K.TAG_BATCH_SIZE: facts.batch_size, K.TAG_BATCH_SIZE_EFFECTIVE: facts.batch_size_effective,
             K.TAG_MEMORY_SOURCE: facts.memory_source, K.TAG_CACHE_MODE: facts.cache_mode,
             K.TAG_DATA_ON_TMPFS: facts.data_on_tmpfs}
    rec = record_from_keys(
        facts.run_id, {**facts.tags, **{k: v for k, v in known.items() if v is not None}}, facts.summary,
        run_name=facts.run_name,
        map50={i + 1: v for i, v in enumerate(facts.map50)} or None, map50_last_epoch=len(facts.map50) or None,
        memory_samples=len(facts.memory) or None, memory_steady=steady_half(facts.memory) or None,
    )
    policy = make_policy({**load_policy().as_dict(), "max_memory_fraction": limit_fraction})
    return decide([rec], policy)


def summary_markdown(facts: RunFacts, decision) -> str:
    """The run's figures with their units, and what the policy says of it alone (no comparison)."""
    from ..compare.decision import INFO, duration_text

    s = facts.summary

    def f(key: str, fmt: str, unit: str = "", scale: float = 1.0) -> str:
        v = s.get(key)
        return "—" if v is None else f"{format(v * scale, fmt)}{unit}"

    eta = s.get(K.SUMMARY_ETA_FULL_S)
    rows = [
        ("batch (requested / effective)", f"{facts.batch_size} / {facts.batch_size_effective}"),
        ("steady speed",
         f(K.SUMMARY_STEP_S_STEADY, ".3f", " s/batch") + " (p90 " + f(K.SUMMARY_STEP_S_P90, ".3f", " s") + ")"),
        ("warm-up batches (excluded from speed)", f(K.SUMMARY_WARMUP_BATCHES, ".0f")),
        ("throughput", f(K.SUMMARY_IMAGES_PER_S, ".1f", " images/s")),
        ("data-wait share", f(K.SUMMARY_DATA_WAIT_FRACTION, ".1f", " %", 100)),
        (f"peak memory ({facts.memory_source})", f(K.SUMMARY_PEAK_GIB, ".2f", " GiB") + " of "
         + f(K.SUMMARY_TOTAL_GIB, ".1f", " GiB") + " = " + f(K.SUMMARY_PEAK_FRACTION, ".1f", " %", 100)),
        ("best mAP50 / mAP50-95",
         f(K.SUMMARY_BEST_MAP50, ".1f", " %", 100) + " / " + f(K.SUMMARY_BEST_MAP50_95, ".1f", " %", 100)),
        ("epochs completed / planned",
         f(K.SUMMARY_EPOCHS_COMPLETED, ".0f") + " / " + f(K.SUMMARY_EPOCHS_PLANNED, ".0f")),
        ("batches per epoch", f(K.SUMMARY_BATCHES_PER_EPOCH, ".0f")),
        ("projected time for all planned epochs", "—" if eta is None else f"{duration_text(eta)} ({eta / 3600:.2f} h)"),
    ]
    v = decision.verdicts[0]
    judged = [f"- `{x.code}` [{x.severity}]: {x.message}" for x in v.reasons if x.severity != INFO]
    unjudged = [f"- `{x.code}`: {x.message}" for x in v.reasons if x.severity == INFO]
    out = [f"# Run {facts.run_name}", "", "| figure | value |", "|---|---|",
           *[f"| {a} | {b} |" for a, b in rows], "",
           "## Policy, this run alone", "",
           *(judged or ["- no reject or warn reason (speed is only judged against other runs: `compare-runs`)"]),
           *(["", "Not judged:", *unjudged] if unjudged else []), "",
           f"Plot: `{K.ARTIFACT_RUN_PLOT}`; memory timeline: `{K.ARTIFACT_MEMORY_TIMELINE}`; "
           "per batch: `batch_timings.csv`.", ""]
    return "\n".join(out)


def write_run_report(save_dir: Path, facts: RunFacts, limit_fraction: float) -> list[Path]:
    """summary.md and run_plot.png (compare-runs' plotter, one run) into save_dir; returns their paths."""
    from ..compare import render

    decision = _one_run_decision(facts, limit_fraction)
    save_dir.mkdir(parents=True, exist_ok=True)
    md = save_dir / K.ARTIFACT_SUMMARY_MD
    md.write_text(summary_markdown(facts, decision))
    png = save_dir / K.ARTIFACT_RUN_PLOT
    series = {facts.run_id: {"memory": [(t / 3600.0, g) for t, g in facts.memory], "step_s": facts.step_s,
                             "map50": [(i + 1, v) for i, v in enumerate(facts.map50)]}}
    render.plot(decision, series, str(png), title=f"run {facts.run_name}")
    return [md, png]
