"""The compare-runs policy: thresholds from `configs/decision.yaml`, overridable by `--policy FILE` and flags.

Unknown keys are rejected with the closest valid key suggested, so a typo such as
`max_memory_fractoin` fails loudly (exit 2) instead of silently judging with the default.
The defaults below are the contract's values; `configs/decision.yaml` restates them (a test keeps
the two equal).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[1] / "configs" / "decision.yaml"  # packaged (starters.py)


class PolicyError(ValueError):
    """A policy that cannot be used: one clear sentence (the CLI turns it into exit 2)."""


class _Invalid(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


# key -> (lowest, lowest allowed?, highest): the ranges a value must fall in
_RANGES: dict[str, tuple[float, bool, float]] = {
    "max_memory_fraction": (0.0, False, 1.0),
    "max_map_drop": (0.0, True, 1.0),
    "max_leak_gib_per_hour": (0.0, True, math.inf),
    "min_leak_window_s": (0.0, True, math.inf),
    "max_data_wait_fraction": (0.0, True, 1.0),
    "max_slowdown": (0.0, True, math.inf),
    "min_improvement": (-math.inf, True, math.inf),
}


def _number(key: str, v: Any) -> float:
    if isinstance(v, bool):
        raise _Invalid(key, f"expected a number, got {v!r}")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise _Invalid(key, f"expected a number, got {v!r}") from None
    lo, lo_ok, hi = _RANGES[key]
    if math.isnan(x) or x < lo or (x == lo and not lo_ok) or x > hi:
        low = f">= {lo:g}" if lo_ok else f"> {lo:g}"
        raise _Invalid(key, f"must be {low}" + (f" and <= {hi:g}" if math.isfinite(hi) else "") + f", got {v!r}")
    return x


def _window(key: str, v: Any) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in v)
    except (TypeError, ValueError):
        raise _Invalid(key, f"an epoch window is [first, last], got {v!r}") from None
    if a < 1 or b < a:
        raise _Invalid(key, f"an epoch window is [first, last] with 1 <= first <= last, got [{a}, {b}]")
    return a, b


@dataclass(frozen=True)
class Policy:
    """The thresholds in force. A plain checked dataclass: compare-runs is a read-only command and
    its cold start should not pay for a validation framework."""

    max_memory_fraction: float = 0.90
    max_map_drop: float = 0.02
    map_early_epochs: tuple[int, int] = (1, 1)
    map_late_epochs: tuple[int, int] = (3, 5)
    max_leak_gib_per_hour: float = 1.0
    # memory_leak is only judged over at least this much steady-state time: a few seconds of RSS
    # growth in a short CPU run extrapolated to an hour would read as a leak.
    min_leak_window_s: float = 600.0
    max_data_wait_fraction: float = 0.30
    max_slowdown: float = 0.5
    min_improvement: float = 0.0  # used by registry promotion, carried here so one file holds the policy

    def __post_init__(self) -> None:
        for key in _RANGES:
            object.__setattr__(self, key, _number(key, getattr(self, key)))
        for key in ("map_early_epochs", "map_late_epochs"):
            object.__setattr__(self, key, _window(key, getattr(self, key)))
        if self.map_late_epochs[0] <= self.map_early_epochs[1]:
            raise _Invalid("map_late_epochs", "map_late_epochs must start after map_early_epochs ends")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["map_early_epochs"] = list(self.map_early_epochs)
        d["map_late_epochs"] = list(self.map_late_epochs)
        return d


FIELDS = tuple(f.name for f in fields(Policy))


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(FIELDS)})"


def make_policy(values: dict[str, Any] | None = None, source: str = "policy") -> Policy:
    """Build a Policy from a mapping; unknown keys and bad values raise PolicyError with a suggestion."""
    values = dict(values or {})
    for key in values:
        if key not in FIELDS:
            raise PolicyError(f"{source}: unknown key '{key}'{_suggest(str(key))}")
    try:
        return Policy(**values)
    except _Invalid as e:
        raise PolicyError(f"{source}: {e.key}: {e.message}") from None


def load_policy(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Policy:
    """Defaults <- `path` (or configs/decision.yaml when it exists) <- overrides (flags; None values ignored)."""
    from ..yaml_file import load_mapping

    values: dict[str, Any] = {}
    source = "defaults"
    file = Path(path) if path else (DEFAULT_POLICY_FILE if DEFAULT_POLICY_FILE.exists() else None)
    if file is not None:
        source = str(file)
        values.update(load_mapping(file, PolicyError, "policy file", expected="a mapping of policy keys"))
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k] = v
    return make_policy(values, source)


def memory_limit_fraction(path: str | Path | None = None) -> float:
    """The fraction drawn as `memory/limit_gib` in runs' memory panels: the policy's (`path`, else the
    default file), else the built-in 0.90."""
    try:
        return load_policy(path or None).max_memory_fraction
    except PolicyError:
        return Policy().max_memory_fraction
