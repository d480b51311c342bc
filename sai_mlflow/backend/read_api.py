"""What compare-runs reads from a tracking store, and which reader serves a URI.

Three readers give the same plain data (tags, params, latest metrics as dicts; series as rows):
- `read_sql.SqlReader`: MLflow's database schema read directly (sqlite through the standard library,
  PostgreSQL/MySQL through SQLAlchemy), no `mlflow` import: a cold compare-runs in about a second;
- `read_rest.RestReader`: an `mlflow server`'s documented REST API over plain HTTP, series requests
  side by side, the server sampling in SQL;
- `read_mlflow.MlflowReader`: MLflow's client, for every other store (plugins, databricks, file stores)
  and whenever a fast reader cannot read this store's schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import UserError
from ..telemetry.stats import sample_indices  # noqa: F401  (the readers' one sampling rule, re-exported)

Rows = list[tuple[int, int, float]]  # (step, timestamp ms, value), ordered; NaN kept as nan
Window = tuple[int, int] | None      # steps [lo, hi], None = the whole series
Advance = Callable[[], None] | None  # called once per run read (a progress bar)

MAX_POINTS = 2500  # an mlflow server's limit of points per run in one sampled request


@dataclass
class RunRow:
    """One run as compare-runs needs it; `steps` holds the step of each latest metric."""
    run_id: str
    run_name: str | None
    status: str | None
    experiment_id: str | None
    start_time: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)


class ReadError(UserError):
    """The store answered, and the answer is no (the message says what): one `Error:` line, exit 2."""


class NotFound(ReadError):
    """A run id the store does not know."""


class BadFilter(ReadError):
    """A filter string the store refuses."""


class RunReader(Protocol):
    uri: str  # as shown to users: never a password in it

    def experiment_id(self, name: str) -> str | None:
        """The active experiment's id, None when there is none by that name."""

    def experiment_names(self) -> list[str]:
        """Names of the active experiments (for a hint)."""

    def runs(self, run_ids: Sequence[str]) -> list[RunRow]:
        """These runs, in this order; NotFound names the first unknown id."""

    def search(self, experiment_id: str, filter_string: str = "") -> list[RunRow]:
        """The experiment's active runs matching the filter, by start time (then run id); BadFilter."""

    def series(self, key: str, windows: dict[str, Window], max_points: int, advance: Advance = None) -> dict[str, Rows]:
        """`key` of each run within its window, sampled to <= max_points by MLflow's rule (`sample_indices`)."""

    def artifact_text(self, run_id: str, path: str) -> str | None:
        """A small text artifact of the run, None when it has none."""


def ordered(rows: Iterable) -> Rows:
    """(step, timestamp, value) rows in one order for every reader: step, timestamp, value (NaN last)."""
    import math

    return sorted(((int(s), int(t), float(v)) for s, t, v in rows),
                  key=lambda x: (x[0], x[1], x[2] if math.isfinite(x[2]) else math.inf))

