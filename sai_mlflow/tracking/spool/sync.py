"""`sync`: upload what is still only local, into the run it belongs to, and set its final status."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ... import keys as K
from ...errors import StoreConfigError
from .format import KEEP_ENV, Spool, summarize
from .records import Status
from .upload import StoreRefused, drain, refusal_reason


@dataclass
class SyncResult:
    spool_run_id: str
    run_id: str | None = None
    uploaded_metrics: int = 0
    status: str | None = None
    state: str = ""   # synced / live / dry-run / failed
    message: str = ""
    created: bool = False  # the target store had no run for this spool: sync created one
    kept: list[str] = field(default_factory=list)  # why a synced spool was kept on disk
    missing: list[str] = field(default_factory=list)  # artifact files gone before they were uploaded


def _find(backend, run_id: str):
    """The run in this store, or None when the store has no such run; other failures raise."""
    try:
        return backend.get_run(run_id)
    except Exception as e:
        reason = refusal_reason(e, run_id)
        if reason:
            raise StoreRefused(reason) from e
        raise


def _ensure_run(backend, spool: Spool, meta: dict) -> tuple[str, bool]:
    """The run this spool uploads into, in this store: the one it is bound to, its own MLflow run, the one
    an earlier sync created (found by tag), or a new one. Returns (run id, created).

    Switching to another run (another store, or one restored from an older backup that lacks the run)
    moves the watermark back to 0: what was acknowledged was acknowledged by another run, and a resend
    into the same run adds nothing (docs/durability.md, exactly once).
    """
    current = spool.bound_run_id()
    run_id = None
    for candidate in dict.fromkeys(x for x in (current, None if spool.local else spool.run_id) if x):
        run = _find(backend, candidate)
        if run is None:
            continue
        if run.deleted:
            raise StoreRefused(f"run {candidate} is deleted in the store; restore it "
                               f"(`mlflow runs restore --run-id {candidate}`) and sync again; nothing was uploaded")
        run_id = candidate
        break
    created = False
    if run_id is None:
        from ..address import resolve_experiment

        experiment = meta.get("experiment") or resolve_experiment()
        run_id = backend.find_run(experiment, K.TAG_LOCAL_RUN_ID, spool.run_id)
        if run_id is None:
            tags = {**(meta.get("tags") or {}), K.TAG_LOCAL_RUN_ID: spool.run_id}
            run_id = backend.create_run(experiment, meta.get("run_name") or None, tags,
                                        meta.get("artifact_location") or None, start_ms=meta.get("created_ms")).run_id
            created = True
    if run_id != current:
        spool.set_watermark(0)
        spool.bind(run_id)
    return run_id, created


def _point_run_file(path: str | None, local_id: str, run_id: str) -> None:
    """The checkpoint's run-id file named the local id: point it at the synced run, so `--resume` continues it."""
    if not path:
        return
    try:
        f = Path(path)
        if f.read_text().strip() == local_id:
            f.write_text(run_id + "\n")
    except OSError:
        pass  # moved or read-only: --resume still finds the run by its sai.local_run_id tag


def sync_spool(spool: Spool, tracking_uri: str | None = None, dry_run: bool = False) -> SyncResult:
    """Upload one spool from its watermark and set the status the run should end with.

    The spool is deleted only once the store has acknowledged everything up to the terminal status, and
    nothing was refused or found corrupt (those are kept on disk for the user, with the reason).
    """
    res = SyncResult(spool.run_id, run_id=spool.bound_run_id())
    from .writer import release, take_over, writer_of

    # the writer's flock, else (the writer is dead, a child it forked still holds it) its PID says it is gone;
    # and the folder's flock, so two syncs never upload one spool at once
    locked = spool.try_lock()
    pid, alive = (None, False) if locked else writer_of(spool)
    taken = None if alive else take_over(spool)
    if taken is None:
        spool.close()
        who = f" (pid {pid})" if pid else ""
        res.state, res.message = "live", (f"a live process{who} is still writing this spool; left alone" if alive
                                          else "another sync is uploading this spool; left alone")
        return res
    try:
        pend = summarize(spool)
        res.status = pend.status or "KILLED"
        if dry_run:
            res.state = "dry-run"
            return res
        meta = spool.meta()
        from ...backend import backend_for
        from ..address import resolve_tracking_uri, with_credentials

        # meta.json holds the URI without its password: MLFLOW_TRACKING_URI (or PGPASSWORD) supplies it
        uri = tracking_uri or with_credentials(meta.get("tracking_uri") or "") or resolve_tracking_uri()
        backend = backend_for(uri)
        res.run_id, res.created = _ensure_run(backend, spool, meta)
        if spool.local:
            _point_run_file(meta.get("run_id_file"), spool.run_id, res.run_id)
        spool.open_for_append()  # drops a torn tail
        if pend.status is None:  # no terminal record: the process died (SIGKILL, OOM, power)
            end_ms = pend.last_ts_ms or int(spool.log.stat().st_mtime * 1000)
            spool.append(Status("KILLED", end_ms, by="sync"))
        up = backend.writer(res.run_id)
        res.uploaded_metrics = drain(spool, up)
        res.missing = up.missing
        res.state = "synced"
        for off, size in pend.corrupt:
            res.kept.append(f"corrupt record skipped: {size} bytes at byte offset {off} of {spool.log}")
        refused = spool.rejected()
        if refused:
            res.kept.append(f"{len(refused)} item(s) refused by the store for their content, listed in "
                            f"{spool.dir / 'rejected.jsonl'}")
        done = spool.watermark >= spool.end
        if done and not res.kept and os.environ.get(KEEP_ENV, "").lower() not in ("1", "true", "yes"):
            spool.remove()
        return res
    except StoreConfigError:
        raise  # wrong URI, login or permission: the command says so and exits 2; the spool stays
    except Exception as e:
        from ...redact import redact_text

        text = str(e) if isinstance(e, StoreRefused) else f"{type(e).__name__}: {str(e)[:300]}"
        res.state, res.message = "failed", redact_text(text)
        if not tracking_uri and spool.meta().get("uri_userinfo_removed"):
            res.message += ("; the run was started with credentials in its tracking URI, which the spool does not "
                            "keep: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or pass --tracking-uri")
        return res
    finally:
        spool.close()
        release(taken)
