"""A finding: what a check says (level, stable code, message, fix). Checks return them and print nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .. import keys as K

LEVELS = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    level: str  # 'error' | 'warning' | 'info'
    code: str  # stable, e.g. 'double_cache'
    message: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def has_errors(findings: list[Finding]) -> bool:
    return any(f.level == "error" for f in findings)


def findings_as_tags(findings: list[Finding]) -> dict[str, str]:
    """`preflight.<code>` -> 'level: message' for the run (check_failed ones numbered)."""
    out: dict[str, str] = {}
    for f in findings:
        key = f"{K.TAG_PREFLIGHT_PREFIX}{f.code}"
        n = 2
        while key in out:
            key, n = f"{K.TAG_PREFLIGHT_PREFIX}{f.code}.{n}", n + 1
        out[key] = f"{f.level}: {f.message}"[:5000]
    return out
