"""A Decision -> rich table, JSON (the contract's shape), markdown, a plain-words paragraph, a PNG."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from .decision import (
    ACCEPTABLE, DOUBLE_CACHE, INFO, MAP_DEGRADATION, MEMORY_OVER_LIMIT, NOT_COMPARABLE, RECOMMENDED,
    REJECT, REJECTED, Decision, RunRecord, Verdict, duration_text, map_drop, pct,
)

VERDICT_STYLE = {RECOMMENDED: "bold green", ACCEPTABLE: "green", REJECTED: "red", NOT_COMPARABLE: "dim"}


# --- figures --------------------------------------------------------------------------------------

def _r(x: float | None, digits: int) -> float | None:
    return None if x is None else round(float(x), digits)


def peak_fraction(r: RunRecord) -> float | None:
    if r.peak_fraction is not None:
        return r.peak_fraction
    if r.peak_gib is not None and r.total_gib:
        return r.peak_gib / r.total_gib
    return None


def run_dict(v: Verdict) -> dict[str, Any]:
    r = v.record
    return {
        "run_id": r.run_id, "run_name": r.run_name,
        "batch_size": r.batch_size, "batch_size_effective": r.batch_size_effective,
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
        rec = {"run_id": r.run_id, "batch_size": r.batch_size_effective or r.batch_size}
    out = {"policy": d.policy, "recommended": rec, "suggested_batch": d.suggested_batch,
           "runs": [run_dict(v) for v in d.verdicts]}
    if d.evidence:  # probes: points of the memory fit, never verdicts
        out["evidence"] = [{"run_id": r.run_id, "run_kind": r.run_kind, "batch_size": r.batch_size,
                            "batch_size_effective": r.batch_size_effective, "peak_gib": _r(r.peak_gib, 2)}
                           for r in d.evidence]
    return out


def to_json(d: Decision) -> str:
    return json.dumps(to_json_obj(d), indent=2, ensure_ascii=False)


# --- words ----------------------------------------------------------------------------------------

def _base(x: Verdict) -> str:
    r = x.record
    b = r.batch_size_effective or r.batch_size
    s = f"batch {b}" if b else x.record.label
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
    """Short plain-words reasons a run was rejected."""
    r = v.record
    out = []
    for x in v.reasons:
        if x.severity != REJECT:
            continue
        if x.code == MEMORY_OVER_LIMIT and peak_fraction(r) is not None and r.total_gib:
            out.append(f"peaks at {pct(peak_fraction(r))} of {r.total_gib:.0f} GiB")
        elif x.code == MAP_DEGRADATION and r.map50:
            got = map_drop(r.map50, policy["map_early_epochs"], policy["map_late_epochs"])
            a = policy["map_early_epochs"]
            after = f"epoch {a[0]}" if a[0] == a[1] else f"epochs {a[0]}–{a[1]}"
            out.append(f"its mAP@0.5 fell {(got[0] - got[1]) * 100:.1f} points after {after}" if got else x.message)
        elif x.code == DOUBLE_CACHE:
            out.append("caches images a second time that already live on a tmpfs")
        else:
            out.append(f"{x.code}: {x.message}")
    return out


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
        faster = [v for v in rejected if eta is not None and v.record.eta_full_s is not None
                  and v.record.eta_full_s < eta]
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
    if d.suggested_batch is not None and d.limit_gib is not None:
        far = (" — far beyond the measured batches, treat as a bound, not a plan"
               if d.suggested_batch > 2 * max(d.fit.batches) else "")
        text.append(f"Largest batch predicted under the {pct(d.policy['max_memory_fraction'], 0)} limit "
                    f"({d.limit_gib:.1f} GiB): {d.suggested_batch} (fit of peak memory over batches "
                    f"{', '.join(str(b) for b in d.fit.batches)}{far}).")
    return " ".join(text)


# --- table / markdown -------------------------------------------------------------------------

COLUMNS = ("run", "batch", "eff", "cache", "tmpfs", "s/batch", "img/s", "peak/total GiB", "peak %",
           "best mAP50", "projected", "verdict", "reasons")


def _f(x, fmt: str) -> str:
    """A cell of sane width: +-1.8e308 (how SQL stores keep inf) prints as 1.8e+308, not 309 digits."""
    if x is None:
        return "—"
    if isinstance(x, float) and (not math.isfinite(x) or abs(x) >= 1e7):
        return format(x, ".3g")
    return format(x, fmt)


def row_cells(v: Verdict) -> list[str]:
    r = v.record
    frac = peak_fraction(r)
    mem = "—" if r.peak_gib is None else f"{_f(r.peak_gib, '.1f')}/{_f(r.total_gib, '.0f')}"
    tmpfs = "—" if r.data_on_tmpfs is None else ("yes" if r.data_on_tmpfs else "no")
    codes = v.codes()
    unjudged = len(v.codes(INFO))
    reasons = ", ".join(codes) if codes else "—"
    if unjudged:
        reasons += f" (+{unjudged} not judged)"
    return [r.label, _f(r.batch_size, "d"), _f(r.batch_size_effective, "d"), r.cache_mode or "—", tmpfs,
            _f(r.step_s_steady, ".3f"), _f(r.images_per_s, ".1f"), mem,
            "—" if frac is None else pct(frac), "—" if r.best_map50 is None else pct(r.best_map50),
            "—" if r.eta_full_s is None else duration_text(r.eta_full_s), v.verdict, reasons]


def details(d: Decision) -> list[str]:
    lines = []
    if d.evidence:
        pts = ", ".join(f"b{r.batch_size_effective or r.batch_size} {_f(r.peak_gib, '.1f')} GiB" for r in d.evidence)
        lines.append(f"Evidence (probe runs, in the memory fit only, never recommended): {pts}")
    for v in d.verdicts:
        for x in v.reasons:
            if x.severity != INFO:
                lines.append(f"{v.record.label}: {x.code} [{x.severity}] {x.message}")
    notes = [f"{v.record.label}: {x.code} — {x.message[len('not judged: '):] if x.message.startswith('not judged: ') else x.message}"
             for v in d.verdicts for x in v.reasons if x.severity == INFO]
    if notes:
        lines.append("Not judged / notes:")
        lines.extend(f"  {n}" for n in notes)
    return lines


def render_table(d: Decision, console) -> None:
    from rich.table import Table

    t = Table(title="compare-runs", title_justify="left")
    for c in COLUMNS:
        t.add_column(c, justify="right" if c in ("batch", "eff", "s/batch", "img/s", "peak/total GiB",
                                                 "peak %", "best mAP50", "projected") else "left",
                     overflow="fold")
    for v in d.verdicts:
        t.add_row(*row_cells(v), style=VERDICT_STYLE.get(v.verdict))
    console.print(t)
    console.print(verdict_paragraph(d), highlight=False)
    lines = details(d)
    if lines:  # one print: rich's per-call cost adds up over hundreds of lines
        console.print("\n".join(lines), highlight=False, markup=False)


def to_markdown(d: Decision) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for v in d.verdicts:
        cells = [esc(c) for c in row_cells(v)]
        if v.verdict == RECOMMENDED:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    out = ["## compare-runs", "", verdict_paragraph(d), "", *lines, ""]
    det = details(d)
    if det:
        out += [f"- {esc(x.strip())}" if not x.startswith("Not judged") else f"\n**{x}**\n" for x in det]
    return "\n".join(out) + "\n"


# --- plot -----------------------------------------------------------------------------------------

def plot(d: Decision, series: dict, path: str) -> None:
    """Memory timelines with the limit line, s/batch over batches with warm-up shaded, mAP50 per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_s, ax_a) = plt.subplots(3, 1, figsize=(11, 12))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    limits = set()
    for i, v in enumerate(d.verdicts):
        r, c = v.record, colors[i % len(colors)]
        s = series.get(r.run_id, {})
        label = f"{r.label} ({v.verdict})"
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
    ax_m.set(title="Memory used", xlabel="hours since run start", ylabel="GiB")
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
