"""Cut metrics, params and tags into requests MLflow accepts (1000 metrics / 100 params / 100 tags)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

MAX_METRICS = 1000
MAX_PARAMS = 100
MAX_TAGS = 100
MAX_PARAM_CHARS = 6000


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def log_batch_chunked(client, run_id: str, metrics: Iterable = (), params: Iterable = (), tags: Iterable = ()) -> int:
    """Log mlflow entities (Metric/Param/RunTag) in as many log_batch calls as needed; returns the call count."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    calls = 0
    for part in chunks(params, MAX_PARAMS):
        client.log_batch(run_id, params=list(part))
        calls += 1
    for part in chunks(tags, MAX_TAGS):
        client.log_batch(run_id, tags=list(part))
        calls += 1
    for part in chunks(metrics, MAX_METRICS):
        client.log_batch(run_id, metrics=list(part))
        calls += 1
    return calls
