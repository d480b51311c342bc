"""Write-ahead spool: every point, param, tag, artifact and status goes to a local log first.

format.py  record framing, the reader, one run's spool directory, what is pending
values.py  value cleaning (keys, texts, non-numbers set aside)
upload.py  the REST uploader, what a store's refusal means, draining from the watermark
sink.py    SpoolingSink: the publisher's sink, with its uploader thread
sync.py    `sai-mlflow sync`: upload a spool later, into the run it belongs to
"""

from .format import (
                     KEEP_ENV,
                     LOCAL_PREFIX,
                     SPOOL_ENV,
                     Pending,
                     Spool,
                     encode,
                     list_spools,
                     new_local_run_id,
                     read_records,
                     spool_root,
                     summarize,
                     valid_end,
)
from .spooling import SpoolingSink
from .sync import SyncResult, sync_spool
from .upload import StoreRefused, Uploader, drain, is_content_rejection, refusal_reason, upload_step
from .values import Cleaned, clean_batch, safe_key

__all__ = ["KEEP_ENV", "LOCAL_PREFIX", "SPOOL_ENV", "Cleaned", "Pending", "Spool", "SpoolingSink", "SyncResult",
           "StoreRefused", "Uploader", "clean_batch", "drain", "encode", "is_content_rejection", "list_spools",
           "new_local_run_id", "refusal_reason",
           "read_records", "safe_key", "spool_root", "summarize", "sync_spool", "upload_step", "valid_end"]
