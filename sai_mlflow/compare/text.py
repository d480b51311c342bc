"""How figures read in messages and cells: one rule for durations, percentages and numbers of sane width.

SQL stores keep +-inf as +-1.8e308 (MLflow clamps it); such a value is no measurement and reads as
`inf` / `-inf`, never as 1.8e+308 or 309 digits.
"""

from __future__ import annotations

import math

HUGE = 1e300  # at or above this, a recorded value is a clamped +-inf


def is_inf(x: float) -> bool:
    return isinstance(x, (int, float)) and (not math.isfinite(x) or abs(x) >= HUGE) and not math.isnan(x)


def inf_text(x: float) -> str:
    return "-inf" if x < 0 else "inf"


def duration_text(seconds: float) -> str:
    """A duration in the unit a person reads it in: 45 s, 12.5 min, 10.4 h."""
    if is_inf(seconds):
        return f"{inf_text(seconds)} s"
    if not math.isfinite(seconds) or abs(seconds) >= 3.6e9:  # NaN, or a sane width for absurd times
        return f"{seconds / 3600:.3g} h"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def pct(fraction: float, digits: int = 1) -> str:
    if is_inf(fraction):
        return f"{inf_text(fraction)} %"
    if not math.isfinite(fraction) or abs(fraction) >= 1e4:
        return f"{fraction * 100:.3g} %"
    return f"{fraction * 100:.{digits}f} %"


def cell(x, fmt: str) -> str:
    """A table cell of sane width: `—` when not recorded, `inf` for a clamped infinity, 3 digits past 1e7."""
    if x is None:
        return "—"
    if is_inf(x):
        return inf_text(x)
    if isinstance(x, float) and (not math.isfinite(x) or abs(x) >= 1e7):
        return format(x, ".3g")
    return format(x, fmt)


def epochs_text(window) -> str:
    a, b = window
    return f"epoch {a}" if a == b else f"epochs {a}–{b}"


def with_lead_note(description: str | None, mark: str, line: str) -> str:
    """Pure: `mark line` as a description's first paragraph, a previous one with the same mark replaced and
    the rest kept below (the verdict on a run, the alias note on a model version)."""
    rest = description or ""
    if rest.startswith(mark):
        rest = rest.split("\n\n", 1)[1] if "\n\n" in rest else ""
    return f"{mark} {line}" + (f"\n\n{rest}" if rest else "")
