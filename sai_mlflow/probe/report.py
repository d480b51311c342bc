"""A probe session -> rich table, JSON (compare-runs' object plus the probe's keys), markdown, a plot."""

from __future__ import annotations

import json
from typing import Any

from ..compare import render
from ..compare.decision import RECOMMENDED, duration_text, pct

COLUMNS = ("batch", "eff", "train peak GiB", "val peak GiB", "peak %", "s/batch", "img/s", "projected",
           "outcome", "verdict", "reasons")


def _f(x, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def rows(result) -> list[tuple[list[str], str]]:
    by_id = {v.run_id: v for v in result.decision.verdicts}
    out = []
    for p in result.probes:
        v = by_id[p.run_id]
        r = v.record
        frac = render.peak_fraction(r)
        codes = v.codes()
        out.append(([str(p.batch), _f(p.batch_effective, "d"), _f(p.train_peak_gib, ".2f"), _f(p.val_peak_gib, ".2f"),
                     "—" if frac is None else pct(frac), _f(r.step_s_steady, ".3f"), _f(r.images_per_s, ".1f"),
                     "—" if r.eta_full_s is None else duration_text(r.eta_full_s), p.outcome, v.verdict,
                     ", ".join(codes) if codes else "—"], v.verdict))
    return out


def summary_lines(result) -> list[str]:
    d = result.decision
    lines = []
    if d.recommended is not None:
        r = d.recommended.record
        lines.append(f"Recommended batch: {r.batch_size_effective} (compare-runs' rules and policy over the probes: "
                     f"shortest projected full run, {duration_text(r.eta_full_s) if r.eta_full_s else '—'}).")
    else:
        lines.append("No probed batch is acceptable under the policy.")
    if result.fit is not None and result.limit_gib is not None:
        f = result.fit
        how = (f"fit over batches {list(f.batches)}: {f.intercept_gib:.2f} GiB + {f.slope_gib_per_image:.4f} GiB "
               "per image, validation included") if len(f.batches) > 1 else \
            f"proportional from batch {f.batches[0]} alone (conservative)"
        if len(f.batches) > 1 and f.flat:
            how += f"; {f.flat_text()}"
        per = (f" ({d.suggested_batch_per_device} per device on {d.suggested_devices} devices)"
               if d.suggested_batch and (d.suggested_devices or 1) > 1 else "")
        lines.append(f"Largest safe batch: {d.suggested_batch if d.suggested_batch else '—'}{per} under the limit "
                     f"{result.limit_gib:.2f} GiB ({pct(d.policy['max_memory_fraction'], 0)}; {how}).")
    auto = render.autobatch_line(d)
    if auto:
        lines.append(auto)
    for fc in result.forecast:
        lines.append(f"Forecast: batch {fc['batch_size']} → {fc['predicted_peak_gib']:.2f} GiB")
    if result.stop_reason:
        lines.append(f"--auto stopped: {result.stop_reason}.")
    lines.append(f"Next: {result.next_command}" if result.next_command
                 else "Next: probe smaller batches (--batches), or a smaller imgsz or model.")
    return lines


def render_table(result, console) -> None:
    from rich.table import Table

    t = Table(title=f"probe session {result.session_run_id}", title_justify="left")
    for c in COLUMNS:
        t.add_column(c, justify="left" if c in ("outcome", "verdict", "reasons") else "right", overflow="fold")
    for cells, verdict in rows(result):
        t.add_row(*cells, style=render.VERDICT_STYLE.get(verdict))
    console.print(t)
    console.print("\n".join(summary_lines(result)), highlight=False, markup=False)
    det = _findings(result)
    if det:
        console.print("\n".join(det), highlight=False, markup=False)


def to_json_obj(result) -> dict[str, Any]:
    obj = render.to_json_obj(result.decision)
    extra = {p.run_id: p for p in result.probes}
    for run in obj["runs"]:
        p = extra.get(run["run_id"])
        if p is not None:
            run.update({"train_peak_gib": _r(p.train_peak_gib), "val_peak_gib": _r(p.val_peak_gib),
                        "outcome": p.outcome, "predicted_peak_gib": _r(p.predicted_gib)})
    obj.update({"session_run_id": result.session_run_id, "next_command": result.next_command,
                "forecast": result.forecast, "stop_reason": result.stop_reason})
    return obj


def _findings(result) -> list[str]:
    """compare-runs' reject/warn lines; its 'not judged' notes (no later mAP window, no hour of
    memory) are what a probe is by design, so they are left out here."""
    return [x for x in render.details(result.decision) if not x.startswith(("Not judged", "  "))]


def _r(x):
    return None if x is None else round(float(x), 3)


def to_json(result) -> str:
    return json.dumps(to_json_obj(result), indent=2, ensure_ascii=False)


def to_markdown(result) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "|".join("---" for _ in COLUMNS) + "|\n"
    body = ""
    for cells, verdict in rows(result):
        cells = [c.replace("|", "\\|") for c in cells]
        if verdict == RECOMMENDED:
            cells = [f"**{c}**" for c in cells]
        body += "| " + " | ".join(cells) + " |\n"
    lines = "\n".join(f"- {x}" for x in summary_lines(result))
    det = "\n".join(f"- {x}" for x in _findings(result))
    return f"## probe session {result.session_run_id}\n\n{head}{body}\n{lines}\n\n{det}\n"


def plot(result, path: str) -> None:
    """Peak memory (train, validation) against batch with the fit and the limit; s/batch against batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_s) = plt.subplots(1, 2, figsize=(12, 4.5))
    by_id = {v.run_id: v for v in result.decision.verdicts}
    ps = list(result.probes)
    nan = float("nan")
    ax_m.plot([p.batch for p in ps], [p.train_peak_gib or nan for p in ps], "o", label="train peak")
    ax_m.plot([p.batch for p in ps], [p.val_peak_gib or nan for p in ps], "s", label="validation peak (2x batch)")
    xs = sorted({p.batch for p in ps} | {f["batch_size"] for f in result.forecast})
    if result.fit is not None and xs:
        ax_m.plot([0, xs[-1]], [result.fit.predict(0), result.fit.predict(xs[-1])], "--", color="gray", label="fit")
    if result.limit_gib:
        ax_m.axhline(result.limit_gib, color="red", ls="--", lw=1, label=f"limit {result.limit_gib:.1f} GiB")
    safe = result.decision.suggested_batch
    if safe:
        ax_m.axvline(safe, color="green", ls=":", lw=1, label=f"largest safe batch {safe}")
    ax_m.set(title="Peak memory per probe (fit: validation included)", xlabel="batch", ylabel="GiB")
    ax_s.plot([p.batch for p in ps], [by_id[p.run_id].record.step_s_steady or nan for p in ps], "o-")
    ax_s.set(title="Steady s/batch per probe", xlabel="batch", ylabel="s/batch")
    for ax in (ax_m, ax_s):
        ax.grid(alpha=0.3)
    ax_m.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
