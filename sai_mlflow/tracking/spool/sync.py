"""`sync`: upload what is still only local, into the run it belongs to, and set its final status."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ... import keys as K
from .format import KEEP_ENV, Spool, summarize
from .upload import Uploader, drain

LOCAL_ID_TAG = K.TAG_LOCAL_RUN_ID


@dataclass
class SyncResult:
    spool_run_id: str
    run_id: str | None = None
    uploaded_metrics: int = 0
    status: str | None = None
    state: str = ""   # synced / live / dry-run / failed
    message: str = ""


def _ensure_run(client, spool: Spool, meta: dict) -> str:
    """The MLflow run for this spool; for an offline (`local-`) spool, found by tag or created once."""
    bound = spool.bound_run_id()
    if bound:
        return bound
    from ..store import get_or_create_experiment, resolve_experiment

    exp_id = get_or_create_experiment(client, meta.get("experiment") or resolve_experiment())
    found = client.search_runs([exp_id], filter_string=f"tags.`{LOCAL_ID_TAG}` = '{spool.run_id}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
    else:
        tags = {**(meta.get("tags") or {}), LOCAL_ID_TAG: spool.run_id}
        run = client.create_run(exp_id, start_time=meta.get("created_ms"), tags=tags,
                                run_name=meta.get("run_name") or None)
        run_id = run.info.run_id
    spool.bind(run_id)
    return run_id


def sync_spool(spool: Spool, tracking_uri: str | None = None, dry_run: bool = False) -> SyncResult:
    """Upload one spool from its watermark and set the status the run should end with."""
    res = SyncResult(spool.run_id, run_id=spool.bound_run_id())
    if not spool.try_lock():
        res.state, res.message = "live", "a live process is still writing this spool; left alone"
        return res
    try:
        pend = summarize(spool)
        res.status = pend.status or "KILLED"
        if dry_run:
            res.state = "dry-run"
            return res
        meta = spool.meta()
        from ..store import make_client, resolve_tracking_uri

        uri = tracking_uri or meta.get("tracking_uri") or resolve_tracking_uri()
        client = make_client(uri)
        res.run_id = _ensure_run(client, spool, meta)
        spool.open_for_append()  # drops a torn tail
        if pend.status is None:  # no terminal record: the process died (SIGKILL, OOM, power)
            end_ms = pend.last_ts_ms or int(spool.log.stat().st_mtime * 1000)
            spool.append({"t": "s", "status": "KILLED", "end_ms": end_ms, "by": "sync"})
        res.uploaded_metrics = drain(spool, Uploader(client, res.run_id))
        res.state = "synced"
        if spool.watermark >= spool.end and os.environ.get(KEEP_ENV, "").lower() not in ("1", "true", "yes"):
            spool.remove()
        return res
    except Exception as e:
        res.state, res.message = "failed", f"{type(e).__name__}: {str(e)[:300]}"
        return res
    finally:
        spool.close()
