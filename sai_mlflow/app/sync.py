"""The `sync` flow: which spools are pending (all, or one run's), and uploading one; the command renders.

A wrong URI, login or permission is a UserError (exit 2): every spool would fail the same way, and each stays
pending. An outage is a result, not an error: the spool stays pending and the command says to run it again.
"""

from __future__ import annotations

from ..errors import StoreConfigError, UserError


def pending(run_id: str | None, spool_dir: str | None) -> tuple[list, str]:
    """(the spools to look at, the spool root they are under): one run's (by its id or the MLflow run it is
    bound to), else all; an unknown run is a UserError."""
    from ..tracking.spool import list_spools, spool_root

    root = str(spool_root(spool_dir))
    spools = list_spools(spool_dir)
    if run_id:
        spools = [s for s in spools if s.run_id == run_id or s.bound_run_id() == run_id]
        if not spools:
            raise UserError(f"no spool for run {run_id} under {root}")
    return spools, root


def upload(spool, tracking_uri: str | None):
    """Upload one spool from its watermark (tracking/spool's `sync_spool` result)."""
    from ..tracking.spool import sync_spool

    try:
        return sync_spool(spool, tracking_uri)
    except StoreConfigError as e:
        raise UserError(f"{e}; {spool.run_id} was not uploaded and stays in the spool") from None
