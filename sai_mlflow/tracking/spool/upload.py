"""Replaying spool records through the tracking backend's run writer: what a refusal means, and draining
from the watermark. The writer (backend/, `RunWriter`) does the store's side; this file knows only records.

Idempotence: a request the store took but whose answer was lost is sent again; MLflow's SQL stores
key a metric on (run, key, timestamp, step, value), so the resend adds nothing, and params/tags
with the same value are no-ops. `sync` therefore never duplicates a point.
"""

from __future__ import annotations

import time

from ...backend import http_status
from ...backend import writer_for as Uploader  # Uploader(backend or client, run_id): the run's RunWriter
from .format import Spool
from .records import Batched, Request, Single, decode, needs_file

__all__ = ["CONTENT_STATUS", "StoreRefused", "Uploader", "drain", "http_status", "is_content_rejection",
           "refusal_reason", "upload_step"]


class StoreRefused(Exception):
    """The store answered but will not take anything for this run yet: the run is missing or deleted
    there, or the credentials were refused. Nothing is set aside; the data stays pending until fixed."""


_ACTIVE_STATE = "must be in the 'active' state"
CONTENT_STATUS = (400, 413, 422)  # bad request, too large, unprocessable: about the items sent


def refusal_reason(e: BaseException, run_id: str = "") -> str | None:
    """Why the store will take nothing for this run until someone acts, or None (an outage, or content)."""
    code = http_status(e)
    if code is None:
        return None
    run = f"run {run_id}" if run_id else "the run"
    if code == 404:
        return (f"the store has no {run} (another store, one restored from an older backup, or the run was "
                "purged); nothing was set aside")
    if code == 401:
        return ("the store refused the credentials (HTTP 401); set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to working ones and run `sai-mlflow sync`")
    if code == 403:
        return (f"the store denied permission to write {run} (HTTP 403); ask for edit permission, "
                "then run `sai-mlflow sync`")
    if _ACTIVE_STATE in str(e):
        return f"{run} is deleted in the store; restore it (`mlflow runs restore --run-id {run_id}`), then sync again"
    return None


def is_content_rejection(e: BaseException) -> bool:
    """The store validated these items and refused them for what they are (a bad key, a changed param):
    only these may be set aside. An outage (5xx, timeouts, refused connections) or a refusal of the
    run itself (missing, deleted, 401/403) is not: the data stays pending."""
    code = http_status(e)
    return code in CONTENT_STATUS and refusal_reason(e) is None


def _raise_for(e: BaseException, run_id: str) -> None:
    """Re-raise a failure that is not a content rejection; a refusal of the run as StoreRefused (says why)."""
    reason = refusal_reason(e, run_id)
    if reason is not None:
        raise StoreRefused(reason) from e
    if not is_content_rejection(e):
        raise e


def upload_step(spool: Spool, up, end: int | None = None) -> tuple[int, int]:
    """Send the next request's worth of records from the watermark. Returns (records, metrics) sent.

    Raises on an outage or a refusal of the run (StoreRefused): the watermark does not move. Only items
    the store rejects for their content go to rejected.jsonl.
    """
    req = Request()
    new_wm, n = spool.watermark, 0
    single = None
    for off, raw in spool.records(new_wm, end):
        rec = decode(raw)
        if isinstance(rec, Single):
            if n == 0:
                single, new_wm, n = rec, off, 1
            break
        if isinstance(rec, Batched):
            if n and not rec.fits(req):
                break
            rec.add_to(req)
        new_wm, n = off, n + 1  # set aside (documented in the spool, never sent), or unknown: skipped
    if n == 0:
        return 0, 0
    try:
        if single is not None:
            gone = needs_file(single)
            if gone:
                up.missing.append(gone)  # nothing to upload, nothing the store refused
            else:
                single.send(up)
        elif req:
            up.log_batch(req.metrics, req.params, req.tags)
    except Exception as e:
        _raise_for(e, up.run_id)
        _one_by_one(spool, up, req, single, e)
    spool.set_watermark(new_wm)
    return n, len(req.metrics)


def _one_by_one(spool, up, req: Request, single, error) -> None:
    """A request refused for its content: send item by item; the refused ones go to rejected.jsonl, kept on disk."""
    if single is not None:
        spool.add_rejected([{**single.to_dict(), "reason": str(error)[:300]}])
        return
    bad = []
    for k, v, ts, s in req.metrics:
        try:
            up.log_batch([[k, v, ts, s]], {}, {})
        except Exception as e:
            _raise_for(e, up.run_id)
            bad.append({"metric": k, "value": repr(v), "step": s, "reason": str(e)[:300]})
    for kind, items in (("param", req.params), ("tag", req.tags)):
        for k, v in items.items():
            try:
                up.log_batch([], {k: v} if kind == "param" else {}, {k: v} if kind == "tag" else {})
            except Exception as e:
                _raise_for(e, up.run_id)
                bad.append({kind: k, "value": v[:200], "reason": str(e)[:300]})
    if bad:
        spool.add_rejected(bad)


def drain(spool: Spool, up: Uploader, end: int | None = None, deadline: float | None = None) -> int:
    """Upload until the watermark reaches `end` (default: the valid end). Returns metrics sent."""
    sent = 0
    while deadline is None or time.monotonic() < deadline:
        n, m = upload_step(spool, up, end)
        if n == 0:
            break
        sent += m
    return sent
