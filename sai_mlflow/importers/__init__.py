"""Bring runs trained elsewhere into MLflow with the contract's keys, so compare-runs judges them like live runs.

- `history_file`: a YAML description (measured numbers + ordinary shapes) -> `run_kind=replay` runs;
- `ultralytics_dir`: an Ultralytics run dir (args.yaml, results.csv, weights) -> `run_kind=import` runs.

Both are idempotent: each run carries a fingerprint tag, and a run whose fingerprint is already in the
experiment is not logged again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..keys import TAG_IMPORT_FINGERPRINT, TAG_IMPORT_SOURCE  # noqa: F401  (re-exported for the importers)
from ..redact import redact_mapping, redact_text


class ImportFailed(ValueError):
    """Input that cannot be imported (malformed file, missing args.yaml): one clear message, exit 2."""


@dataclass
class ImportResult:
    run_id: str
    run_name: str
    experiment: str
    action: str  # "imported" | "already imported"
    experiment_id: str = "0"  # for the printed link into the UI

    def __post_init__(self) -> None:
        self.run_name = redact_text(self.run_name)  # printed


def fingerprint(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:20]


def find_imported(client, experiment_id: str, fp: str):
    """The run already holding fingerprint `fp` in the experiment, or None."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_IMPORT_FINGERPRINT}` = '{fp}'",
                              max_results=1)
    return runs[0] if runs else None


@contextmanager
def atomic_run(client, experiment_id: str, run_name: str, start_ms: int, fp: str,
               tags: dict[str, str] | None = None) -> Iterator[str]:
    """A new run that either ends up whole, with fingerprint `fp` set last, or is deleted again.

    A half-made run holding the fingerprint would make the next import say "already imported" and log
    nothing; a deleted run is invisible to `find_imported` (MLflow searches active runs only). The name and
    tags are redacted here, for both importers.
    """
    rid = client.create_run(experiment_id, start_time=start_ms, run_name=redact_text(run_name),
                            tags=redact_mapping(tags or {})).info.run_id
    try:
        yield rid
        client.set_tag(rid, TAG_IMPORT_FINGERPRINT, fp)
    except BaseException:
        try:
            client.delete_run(rid)
        except Exception:  # the store itself failed: the error being raised says so
            pass
        raise
