"""Starter files that ship inside the package, as Ultralytics ships its cfg/: the CPU smoke config, the
H200 configs, the default decision policy and the seed's history (`sai_mlflow/configs/`; the repository's
`configs/` is the same folder).

A name that is not a file in the working folder (`--config cpu_smoke.yaml`, `configs/cpu_smoke.yaml`,
`import-history seed_2024-08.yaml`) resolves to the packaged starter; a file that exists is always used as
it is. `sai-mlflow init [DIR]` copies the starters out for editing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PACKAGED = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIG = PACKAGED / "cpu_smoke.yaml"
DEFAULT_POLICY = PACKAGED / "decision.yaml"


def resolve(path: str) -> str:
    """`path` when it exists (or is absolute); else the packaged starter it names; else `path` unchanged, so the
    caller's own error names what the user typed."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return path
    parts = p.parts[1:] if p.parts[:1] == ("configs",) else p.parts
    for candidate in (PACKAGED.joinpath(*parts), PACKAGED / "history" / p.name):
        if parts and candidate.is_file():
            return str(candidate)
    return path


def files() -> list[Path]:
    """Every starter, relative to the packaged folder."""
    return sorted(f.relative_to(PACKAGED) for f in PACKAGED.rglob("*.yaml"))


def copy_to(dest: Path) -> tuple[list[Path], list[Path]]:
    """Copy every starter under `dest` (keeping `history/`); an existing file is kept, never overwritten.
    Returns (written, kept)."""
    written, kept = [], []
    for rel in files():
        target = dest / rel
        if target.exists():
            kept.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGED / rel, target)
        written.append(target)
    return written, kept
