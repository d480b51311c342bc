"""The compare-runs policy: thresholds from `configs/decision.yaml`, overridable by `--policy FILE` and flags.

Unknown keys are rejected with the closest valid key suggested, so a typo such as
`max_memory_fractoin` fails loudly (exit 2) instead of silently judging with the default.
The defaults below are the contract's values; `configs/decision.yaml` restates them (a test keeps
the two equal).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[2] / "configs" / "decision.yaml"


class PolicyError(ValueError):
    """A policy that cannot be used: one clear sentence (the CLI turns it into exit 2)."""


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_memory_fraction: float = Field(0.90, gt=0, le=1.0)
    max_map_drop: float = Field(0.02, ge=0, le=1.0)
    map_early_epochs: tuple[int, int] = (1, 1)
    map_late_epochs: tuple[int, int] = (3, 5)
    max_leak_gib_per_hour: float = Field(1.0, ge=0)
    # memory_leak is only judged over at least this much steady-state time: a few seconds of RSS
    # growth in a short CPU run extrapolated to an hour would read as a leak.
    min_leak_window_s: float = Field(600.0, ge=0)
    max_data_wait_fraction: float = Field(0.30, ge=0, le=1.0)
    max_slowdown: float = Field(0.5, ge=0)
    min_improvement: float = 0.0  # used by registry promotion, carried here so one file holds the policy

    @field_validator("map_early_epochs", "map_late_epochs")
    @classmethod
    def _window(cls, v: tuple[int, int]) -> tuple[int, int]:
        a, b = v
        if a < 1 or b < a:
            raise ValueError(f"an epoch window is [first, last] with 1 <= first <= last, got [{a}, {b}]")
        return (int(a), int(b))

    @model_validator(mode="after")
    def _order(self) -> Policy:
        if self.map_late_epochs[0] <= self.map_early_epochs[1]:
            raise ValueError("map_late_epochs must start after map_early_epochs ends")
        return self

    def as_dict(self) -> dict[str, Any]:
        d = self.model_dump()
        d["map_early_epochs"] = list(self.map_early_epochs)
        d["map_late_epochs"] = list(self.map_late_epochs)
        return d


FIELDS = tuple(Policy.model_fields)


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
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "policy"
        raise PolicyError(f"{source}: {where}: {err['msg']}") from None


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


def memory_limit_fraction() -> float:
    """The fraction drawn as `memory/limit_gib` in runs' memory panels: the default policy's, else 0.90."""
    try:
        return load_policy().max_memory_fraction
    except PolicyError:
        return Policy().max_memory_fraction
