"""Gated promotion of a run's model into the MLflow model registry, with aliases (never stages).

`names.py` the names a promotion accepts; `lock.py` the `model@alias` lock (MLflow has no compare-and-set for
aliases); `gates.py` judging a run against the alias holder (reads only); `promote.py` promote and rollback
(registers, moves the alias, writes the audit tags). The application layer (`app/promote.py`) calls these.
"""

from .gates import GATES, NONE, Evaluation, Gate, Holder, current_holder, evaluate, get_run, judge  # noqa: F401
from .lock import LOCK_TTL_S, LOCK_WAIT_S, LockTimeout, promotion_lock  # noqa: F401
from .names import LOCK_INFIX, MAX_NAME_CHARS, PromotionError, check_names, lock_name  # noqa: F401
from .promote import (  # noqa: F401
    LEGACY_PREVIOUS_VERSION,
    RACE_PAUSE_ENV,
    TAG_ALIAS,
    TAG_BY,
    TAG_GATES,
    TAG_PREVIOUS_VERSION,
    TAG_ROLLBACK_BY,
    TAG_ROLLBACK_FROM,
    TAG_ROLLBACK_TIME,
    TAG_ROLLED_BACK_TIME,
    Outcome,
    gate_table_md,
    mark_alias_moved,
    promote,
    rollback,
    version_description,
    with_alias_note,
)
