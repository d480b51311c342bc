"""The `model@alias` promotion lock: MLflow has no compare-and-set for aliases, so read-holder -> judge ->
register -> set alias runs under a lock every store enforces atomically, the unique name of a registered model.

The lock is a registered model named `<model>.promotion-lock.<alias>`, created on entry and deleted on exit
(one older than `LOCK_TTL_S` is taken as left by a dead process and broken). Two racing promotions are thus
serialised: the second is judged against, and records as its previous holder, the version the first promoted.
"""

from __future__ import annotations

import getpass
import os
import random
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from ..backend import is_store_error
from ..tracking.mlflow_errors import is_already_exists, is_not_found
from .names import PromotionError, lock_name

LOCK_TTL_S = 120.0
LOCK_WAIT_S = 60.0
OWNER_TAG = "sai.lock.owner"


class LockTimeout(PromotionError):
    """Another promotion of the same alias held the lock for longer than the wait."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def who() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _released(e: Exception) -> bool:
    """The store said the lock is not there: its holder released it between our two calls."""
    return is_store_error(e) and is_not_found(e)


@contextmanager
def promotion_lock(client, model_name: str, alias: str, wait_s: float = LOCK_WAIT_S,
                   ttl_s: float = LOCK_TTL_S) -> Iterator[None]:
    """Hold the `model@alias` promotion lock: an atomically created registered model (see module doc)."""
    name = lock_name(model_name, alias)
    deadline = time.monotonic() + wait_s
    owner = f"{who()} pid {os.getpid()} at {now()}"
    while True:
        try:
            client.create_registered_model(name, tags={OWNER_TAG: owner},
                                           description="sai-mlflow promotion lock; deleted when the promotion ends")
            break
        except Exception as e:
            # "not found" from a create: MLflow's SQL store met the unique name, then read the existing model to
            # word its error, and the holder deleted it in between. The lock is free: try again at once.
            if _released(e):
                continue
            if not (is_store_error(e) and is_already_exists(e)):
                raise
        try:  # held: break it if its owner died long ago
            rm = client.get_registered_model(name)
            age_s = time.time() - (rm.creation_timestamp or 0) / 1000.0
            if age_s > ttl_s:
                client.delete_registered_model(name)
                continue
        except Exception as e:
            if not _released(e):  # a refusal (403) would be met on every try: said now, not after the wait
                raise
            continue  # released between our attempts
        if time.monotonic() > deadline:
            raise LockTimeout(f"another promotion of {model_name}@{alias} holds the lock "
                              f"('{name}', {(rm.tags or {}).get(OWNER_TAG, 'owner unknown')}); "
                              f"retry later, or delete that registered model if its process is gone")
        time.sleep(0.1 + random.random() * 0.2)
    try:
        yield
    finally:
        try:
            client.delete_registered_model(name)
        except Exception as e:
            if not is_store_error(e):
                raise
