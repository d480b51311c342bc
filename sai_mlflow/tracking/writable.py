"""Can this run's data land anywhere? Checked before training, without creating anything.

Every run writes its spool first (docs/durability.md), so the spool folder must be writable; an
unwritable sqlite store alone is an outage (the run is spooled and `sync` uploads it later).
"""

from __future__ import annotations

import os
from pathlib import Path


def _cannot_create(path: Path) -> str | None:
    """Why `mkdir -p path` and writing inside it would fail, or None; looks only, creates nothing."""
    p = path.resolve()
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if not p.is_dir():
        return f"{p} is a file, not a folder"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} is not writable"
    return None


def sqlite_path(tracking_uri: str) -> Path | None:
    return Path(tracking_uri[len("sqlite:///"):]) if tracking_uri.startswith("sqlite:///") else None


def tracking_unwritable(tracking_uri: str, spool_dir: Path) -> str | None:
    """Why neither the spool nor the store can take this run's data, or None."""
    spool = _cannot_create(spool_dir)
    if spool is None:
        return None
    db = sqlite_path(tracking_uri)
    store = _cannot_create(db.parent) if db is not None else None
    where = f"the spool folder {spool_dir} cannot be written ({spool})"
    if store is not None:
        where += f", nor the store {tracking_uri} ({store})"
    return where
