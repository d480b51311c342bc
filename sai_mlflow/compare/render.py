"""A Decision -> rich table, JSON (the contract's shape), markdown, a plain-words paragraph, a PNG."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ..keys import RUN_KIND_ULTRALYTICS
from .decision import (
    ACCEPTABLE,
    IMPLAUSIBLE,
    INFO,
    NOT_COMPARABLE,
    RECOMMENDED,
    REJECT,
    REJECTED,
    WARN,
    Decision,
    Verdict,
    duration_text,
    pct,
)
from .memfit import total_text
from .reasons import phrase
from .record import peak_fraction  # noqa: F401  (probe/report reads it from here)
from .text import cell

VERDICT_STYLE = {RECOMMENDED: "bold green", ACCEPTABLE: "green", REJECTED: "red", NOT_COMPARABLE: "dim"}


# --- figures --------------------------------------------------------------------------------------

def _r(x: float | None, digits: int) -> float | None:
    return None if x is None else round(float(x), digits)


def run_dict(v: Verdict) -> dict[str, Any]:
    r = v.record
    return {
        "run_id": r.run_id, "run_name": r.run_name, "run_kind": r.run_kind,
        "batch_size": r.batch_size, "batch_size_effective": r.batch_size_effective,
        "devices": r.device_count, "batch_per_device": r.batch_per_device,
        "cache_mode": r.cache_mode, "data_on_tmpfs": r.data_on_tmpfs,
        "step_s_steady": _r(r.step_s_steady, 4), "images_per_s": _r(r.images_per_s, 1),
        "peak_gib": _r(r.peak_gib, 2), "total_gib": _r(r.total_gib, 2),
        "peak_fraction": _r(peak_fraction(r), 3), "best_mAP50": _r(r.best_map50, 4),
        "eta_full_s": _r(r.eta_full_s, 0),
        "verdict": v.verdict, "reasons": [x.as_dict() for x in v.reasons],
    }


def to_json_obj(d: Decision) -> dict[str, Any]:
    rec = None
    if d.recommended is not None:
        r = d.recommended.record
        rec = {"run_id": r.run_id, "batch_size": r.batch}
    out = {"policy": d.policy, "recommended": rec, "suggested_batch": d.suggested_batch,
           "suggested_batch_per_device": d.suggested_batch_per_device,
           "runs": [run_dict(v) for v in d.verdicts]}
    chosen = autobatch_choices(d)
    if chosen:  # AutoBatch's settled batches, beside the recommendation and the fit's suggestion
        out["autobatch"] = chosen
    if d.evidence:  # probes: points of the memory fit, never verdicts
        out["evidence"] = [{"run_id": r.run_id, "run_kind": r.run_kind, "batch_size": r.batch_size,
                            "batch_size_effective": r.batch_size_effective, "devices": r.device_count,
                            "batch_per_device": r.batch_per_device, "peak_gib": _r(r.peak_gib, 2)}
                           for r in d.evidence]
    return out


def autobatch_choices(d: Decision) -> list[dict[str, Any]]:
    """Runs (judged or probes) whose batch was AutoBatch's choice: what it asked for and settled on."""
    runs = [v.record for v in d.verdicts] + list(d.evidence)
    return [{"run_id": r.run_id, "run_name": r.run_name, "requested": r.batch_size,
             "batch_size_effective": r.batch_size_effective, "devices": r.device_count} for r in runs if r.autobatch]


def autobatch_line(d: Decision) -> str | None:
    """AutoBatch's choice beside the recommendation and the memory fit's suggestion, when both exist."""
    chosen = [v.record for v in d.verdicts if v.record.autobatch] + [r for r in d.evidence if r.autobatch]
    if not chosen or (d.recommended is None and d.suggested_batch is None):
        return None
    picks = "; ".join(f"{r.label} asked for batch={r.batch_size:g} and settled on "
                      f"{r.batch_size_effective if r.batch_size_effective else 'an unrecorded batch'}" for r in chosen)
    beside = []
    if d.recommended is not None:
        beside.append(f"recommended batch {d.recommended.record.batch}")
    if d.suggested_batch is not None:
        beside.append(f"largest batch predicted under the limit {d.suggested_batch}")
    return f"AutoBatch: {picks}; beside the {' and the '.join(beside)}."


def to_json(d: Decision) -> str:
    return json.dumps(to_json_obj(d), indent=2, ensure_ascii=False)


# --- words ----------------------------------------------------------------------------------------

def _base(x: Verdict) -> str:
    r = x.record
    b = r.batch
    s = f"batch {b}" if b else x.record.label
    if r.device_count > 1:
        s += f" on {r.device_count} devices"
    if r.cache_mode and r.cache_mode != "none":
        s += f" with cache={r.cache_mode}"
    return s


def describer(all_v: Sequence[Verdict]) -> Callable[[Verdict], str]:
    """How the paragraph names a run ("batch 96", or with its name when two runs read the same).

    Counted once for all runs: counting per description made a 10,000-run report quadratic (~2 min).
    """
    counts = Counter(_base(x) for x in all_v)

    def describe(v: Verdict) -> str:
        s = _base(v)
        return f"{s} ({v.record.label})" if counts[s] > 1 else s
    return describe


def _phrase(v: Verdict, policy: dict) -> list[str]:
    """Short plain-words reasons a run was rejected (the registry's phrases)."""
    return [phrase(x, v.record, policy) for x in v.reasons if x.severity == REJECT]


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def verdict_paragraph(d: Decision) -> str:
    vs = d.verdicts
    members = [v for v in vs if v.verdict != NOT_COMPARABLE]
    rejected = [v for v in members if v.verdict == REJECTED]
    text: list[str] = []
    _describe = describer(vs)
    if d.recommended is not None:
        rec = d.recommended
        desc = _describe(rec)
        eta = rec.record.eta_full_s
        # the cost of the safer choice, against runs whose projected time is real (never an implausible one)
        faster = [v for v in rejected if eta is not None and v.record.eta_full_s is not None
                  and v.reason(IMPLAUSIBLE) is None and v.record.eta_full_s < eta]
        head = f"Recommended: {desc}"
        if faster:
            why = "; ".join(f"{_describe(v)} {_join(_phrase(v, d.policy))}" for v in faster)
            fastest = min(faster, key=lambda v: v.record.eta_full_s)
            cost = eta - fastest.record.eta_full_s
            head += (f", because {why}; cost: +{duration_text(cost)} "
                     f"({duration_text(eta)} projected vs {duration_text(fastest.record.eta_full_s)}).")
        elif eta is not None:
            head += f", the fastest acceptable run ({duration_text(eta)} projected)."
        else:
            head += "."
        text.append(head)
        faster_ids = {id(v) for v in faster}
        others = [v for v in rejected if id(v) not in faster_ids]
        if others:
            text.append("Also rejected: " + "; ".join(
                f"{_describe(v)} ({_join(_phrase(v, d.policy))})" for v in others) + ".")
        acc = [v for v in members if v.verdict == ACCEPTABLE]
        if acc:
            text.append(f"Acceptable but slower: {', '.join(_describe(v) for v in acc)}.")
    else:
        if rejected:
            text.append("No run is acceptable: " + "; ".join(
                f"{_describe(v)} {_join(_phrase(v, d.policy))}" for v in rejected) + ".")
        else:
            text.append("No run is acceptable.")
    nc = [v for v in vs if v.verdict == NOT_COMPARABLE]
    if nc:
        text.append(f"{len(nc)} run{'s' if len(nc) > 1 else ''} not comparable with the group (different "
                    "model, imgsz, dataset or GPU) left out.")
    if d.suggested_batch_per_device is not None and d.limit_gib is not None:
        far = (" — far beyond the measured batches, treat as a bound, not a plan"
               if d.suggested_batch_per_device > 2 * max(d.fit.batches) else "")
        per_device = any(v.record.device_count > 1 for v in members) or (d.suggested_devices or 1) > 1
        if not per_device:
            text.append(f"Largest batch predicted under the {pct(d.policy['max_memory_fraction'], 0)} limit "
                        f"({d.limit_gib:.1f} GiB): {d.suggested_batch} (fit of peak memory over batches "
                        f"{', '.join(str(b) for b in d.fit.batches)}{far}).")
        else:
            total = (f"{total_text(d.suggested_batch_per_device, d.suggested_devices)}: next "
                     f"`--set batch={d.suggested_batch}` on {d.suggested_devices} device"
                     f"{'s' if d.suggested_devices > 1 else ''}" if d.suggested_devices
                     else f"{d.suggested_batch_per_device} per device (times the devices you train on)")
            text.append(f"Largest batch predicted under the {pct(d.policy['max_memory_fraction'], 0)} limit "
                        f"({d.limit_gib:.1f} GiB per device): {total} (fit of the largest device's peak over "
                        f"batches per device {', '.join(str(b) for b in d.fit.batches)}{far}).")
    elif d.fit is not None and d.fit.flat and d.limit_gib is not None:
        text.append(f"No batch limit from memory: {d.fit.flat_text()} ({d.fit.basis()}).")
    line = autobatch_line(d)
    if line:
        text.append(line)
    return " ".join(text)


def verdict_line(v: Verdict, d: Decision, describe: Callable[[Verdict], str] | None = None) -> str:
    """One line for one run (its MLflow description): the verdict and, in plain words, why.

    Pass `describe = describer(d.verdicts)` when writing many lines: built once, linear in the runs.
    """
    describe = describe or describer(d.verdicts)
    desc, eta = describe(v), v.record.eta_full_s
    proj = f", {duration_text(eta)} projected" if eta is not None else ""
    warns = [x.code for x in v.reasons if x.severity == WARN]
    warn = f"; warnings: {', '.join(warns)}" if warns else ""
    if v.verdict == RECOMMENDED:
        return f"Recommended: {desc}{proj}, the fastest run that passes every reject rule{warn}."
    if v.verdict == ACCEPTABLE:
        rec = describe(d.recommended) if d.recommended is not None else "none"
        return f"Acceptable: {desc}{proj}, slower than the recommended {rec}{warn}."
    if v.verdict == REJECTED:
        return f"Rejected: {desc} {_join(_phrase(v, d.policy) or ['fails a reject rule'])}{warn}."
    return f"Not comparable: {desc} differs from the group judged in model, imgsz, dataset or GPU."


# --- table / markdown -------------------------------------------------------------------------

COLUMNS = ("run", "batch", "eff", "cache", "tmpfs", "s/batch", "img/s", "peak/total GiB", "peak %",
           "best mAP50", "projected", "verdict", "reasons")


def _f(x, fmt: str) -> str:
    """A cell of sane width (text.cell): +-1.8e308, how SQL stores keep inf, reads as inf, not 309 digits."""
    return cell(x, fmt)


def _batch_cell(x) -> str:
    """A batch as recorded: 128, or an AutoBatch request -1 / 0.7."""
    return _f(x, "g" if isinstance(x, float) else "d")


def columns(d: Decision) -> tuple[str, ...]:
    """The table's columns; `dev` (devices) after `eff` only when some run trained on several devices."""
    if not any(v.record.device_count > 1 for v in d.verdicts):
        return COLUMNS
    return COLUMNS[:3] + ("dev",) + COLUMNS[3:]


def row_cells(v: Verdict, devices: bool = False) -> list[str]:
    r = v.record
    frac = peak_fraction(r)
    mem = "—" if r.peak_gib is None else f"{_f(r.peak_gib, '.1f')}/{_f(r.total_gib, '.0f')}"
    tmpfs = "—" if r.data_on_tmpfs is None else ("yes" if r.data_on_tmpfs else "no")
    codes = v.codes()
    unjudged = len(v.codes(INFO))
    reasons = ", ".join(codes) if codes else "—"
    if unjudged:
        reasons += f" (+{unjudged} not judged)"
    name = f"{r.label} ({r.run_kind})" if r.run_kind == RUN_KIND_ULTRALYTICS else r.label
    dev = [str(r.device_count)] if devices else []
    return [name, _batch_cell(r.batch_size), _f(r.batch_size_effective, "d"), *dev, r.cache_mode or "—", tmpfs,
            _f(r.step_s_steady, ".3f"), _f(r.images_per_s, ".1f"), mem,
            "—" if frac is None else pct(frac), "—" if r.best_map50 is None else pct(r.best_map50),
            "—" if r.eta_full_s is None else duration_text(r.eta_full_s), v.verdict, reasons]


def _rows(d: Decision) -> tuple[tuple[str, ...], list[list[str]]]:
    cols = columns(d)
    return cols, [row_cells(v, len(cols) > len(COLUMNS)) for v in d.verdicts]


def details(d: Decision) -> list[str]:
    lines = []
    if d.evidence:
        pts = ", ".join(f"b{r.batch}{f' on {r.device_count} devices' if r.device_count > 1 else ''} "
                        f"{_f(r.peak_gib, '.1f')} GiB" for r in d.evidence)
        lines.append(f"Evidence (probe runs, in the memory fit only, never recommended): {pts}")
    for v in d.verdicts:
        for x in v.reasons:
            if x.severity != INFO:
                lines.append(f"{v.record.label}: {x.code} [{x.severity}] {x.message}")
    notes = [f"{v.record.label}: {x.code} — "
             f"{x.message[len('not judged: '):] if x.message.startswith('not judged: ') else x.message}"
             for v in d.verdicts for x in v.reasons if x.severity == INFO]
    if notes:
        lines.append("Not judged / notes:")
        lines.extend(f"  {n}" for n in notes)
    return lines


RICH_TABLE_MAX_ROWS = 500  # rich costs ~3-8 ms a row: 10,000 runs took over a minute; plain text takes ~1 s
RIGHT = ("batch", "eff", "dev", "s/batch", "img/s", "peak/total GiB", "peak %", "best mAP50", "projected")


def plain_table(d: Decision) -> str:
    """The same columns as fixed-width text (for very many runs); the recommended row is marked `*`."""
    cols, body = _rows(d)
    rows = [list(cols)] + body
    marks = [" "] + ["*" if v.verdict == RECOMMENDED else " " for v in d.verdicts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols) - 1)]
    lines = []
    for mark, r in zip(marks, rows):
        cells = [c.rjust(w) if name in RIGHT else c.ljust(w) for name, c, w in zip(cols, r, widths)]
        lines.append(f"{mark} " + "  ".join([*cells, r[-1]]))
    return "\n".join(lines)


def render_table(d: Decision, console) -> None:
    from rich.table import Table

    if len(d.verdicts) > RICH_TABLE_MAX_ROWS:
        console.print(f"compare-runs ({len(d.verdicts)} runs; * = recommended)\n" + plain_table(d),
                      highlight=False, markup=False, soft_wrap=True)
        console.print(verdict_paragraph(d), highlight=False, markup=False)
        lines = details(d)
        if lines:  # the terminal wraps: rich's own wrapping of ~1 MB of lines took seconds
            console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
        return
    t = Table(title="compare-runs", title_justify="left")
    cols, body = _rows(d)
    for c in cols:
        t.add_column(c, justify="right" if c in RIGHT else "left", overflow="fold")
    for v, cells in zip(d.verdicts, body):
        t.add_row(*cells, style=VERDICT_STYLE.get(v.verdict))
    console.print(t)
    console.print(verdict_paragraph(d), highlight=False)
    lines = details(d)
    if lines:  # one print: rich's per-call cost adds up over hundreds of lines
        console.print("\n".join(lines), highlight=False, markup=False)


def to_markdown(d: Decision) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    cols, body = _rows(d)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for v, row in zip(d.verdicts, body):
        cells = [esc(c) for c in row]
        if v.verdict == RECOMMENDED:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    out = ["## compare-runs", "", verdict_paragraph(d), "", *lines, ""]
    det = details(d)
    if det:
        out += [f"- {esc(x.strip())}" if not x.startswith("Not judged") else f"\n**{x}**\n" for x in det]
    return "\n".join(out) + "\n"


# --- plot -----------------------------------------------------------------------------------------

def plot(d: Decision, series: dict, path: str, title: str | None = None) -> None:
    """Memory timelines with the limit line, s/batch over batches with warm-up shaded, mAP50 per epoch.

    Also a single run's own plot (run_artifacts.py): one verdict, so labels leave it out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_s, ax_a) = plt.subplots(3, 1, figsize=(11, 12))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    limits = set()
    for i, v in enumerate(d.verdicts):
        r, c = v.record, colors[i % len(colors)]
        s = series.get(r.run_id, {})
        label = r.label if len(d.verdicts) == 1 else f"{r.label} ({v.verdict})"
        lw = 2.5 if v.verdict == RECOMMENDED else 1.2
        if s.get("memory"):
            ax_m.plot(*zip(*s["memory"]), color=c, lw=lw, label=label)
        if r.total_gib:
            limits.add(r.total_gib)
        if s.get("step_s"):
            ax_s.plot(*zip(*s["step_s"]), color=c, lw=lw, label=label)
            if r.warmup_batches:
                ax_s.axvspan(0, r.warmup_batches, color=c, alpha=0.12)
        if s.get("map50"):
            xs, ys = zip(*s["map50"])
            ax_a.plot(xs, [y * 100 for y in ys], marker="o", color=c, lw=lw, label=label)
    for total in sorted(limits):
        lim = d.policy["max_memory_fraction"] * total
        ax_m.axhline(lim, color="red", ls="--", lw=1)
        ax_m.text(0, lim, f" limit {lim:.0f} GiB ({pct(d.policy['max_memory_fraction'], 0)} of {total:.0f})",
                  color="red", va="bottom", fontsize=8)
    ax_m.set(title="Memory used", xlabel="hours since the first memory sample", ylabel="GiB")
    ax_s.set(title="Seconds per batch (warm-up shaded)", xlabel="batch", ylabel="s/batch")
    ys = [y for s in series.values() for _, y in s.get("step_s", []) if y and y > 0]
    if ys and max(ys) / min(ys) > 10:
        ax_s.set_yscale("log")
    ax_a.set(title="mAP@0.5 per epoch", xlabel="epoch", ylabel="mAP50 (%)")
    for ax in (ax_m, ax_s, ax_a):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data recorded", transform=ax.transAxes, ha="center", color="gray")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
