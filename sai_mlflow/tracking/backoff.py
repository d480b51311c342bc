"""One retry rule for the two loops that ship data: the publisher handing batches to its sink (a local spool
write), and the spool's uploader sending them to the store. Each failure doubles the wait (with jitter) up to a
cap; the first failure and the recovery are reported once each, a changed reason once more."""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    def __init__(self, first_s: float, max_s: float, report: Callable[[str], None], failed: str, back: str) -> None:
        """`failed` is formatted with {error}; `back` with {seconds}."""
        self.first_s, self.max_s = first_s, max_s
        self.report, self.failed_text, self.back_text = report, failed, back
        self.delay_s = first_s
        self.down_since: float | None = None
        self.last_kind = ""

    def failure(self, error: str, kind: str = "") -> float:
        """Note a failure; returns how long to wait before the next try. Reported when the loop goes down, and
        again when the `kind` of failure changes (an outage becoming a refusal of the run, say)."""
        if self.down_since is None or kind != self.last_kind:
            self.down_since = self.down_since or time.monotonic()
            self.report(self.failed_text.format(error=error))
        self.last_kind = kind
        wait = self.delay_s * random.uniform(0.75, 1.0)
        self.delay_s = min(self.delay_s * 2, self.max_s)
        return wait

    def success(self) -> None:
        if self.down_since is not None:
            self.report(self.back_text.format(seconds=f"{time.monotonic() - self.down_since:.0f}"))
        self.down_since, self.last_kind, self.delay_s = None, "", self.first_s

    @property
    def down(self) -> bool:
        return self.down_since is not None
