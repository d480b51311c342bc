"""The background publisher against the shipped in-memory sink: batching, failure, recovery, bounded close.

No assert here reads a clock: the publisher's own cycle counter (`flush`) and counts of store calls say what
happened. Timeouts are only there so a broken publisher fails the test instead of hanging it.
"""

import threading

from sai_mlflow.tracking.publisher import Publisher
from sai_mlflow.tracking.sink import Batch, MemorySink

PATIENCE_S = 120  # far beyond any load: only a publisher that never answers reaches it


def _points(n, key="m"):
    return Batch(metrics=[(key, float(i), 0, i) for i in range(n)])


class CountingSink(MemorySink):
    """The in-memory sink, counting every write it was asked for (failed ones too)."""

    def __init__(self, fail=False):
        super().__init__(fail=fail)
        self.attempts = 0

    def write(self, batch):
        self.attempts += 1
        super().write(batch)


def test_delivers_everything_in_order_and_sets_status():
    sink = MemorySink()
    pub = Publisher(sink, [], interval_s=0.05, report=lambda m: None).start()
    pub.put(_points(2500))
    pub.put(Batch(params={"lr0": "0.01"}, tags={"batch_size": "8"}))
    assert pub.close("FINISHED", timeout=PATIENCE_S)
    assert [s for s, _ in sink.series("m")] == list(range(2500))
    assert sink.params == {"lr0": "0.01"} and sink.tags == {"batch_size": "8"}
    assert sink.status == "FINISHED"


def test_store_failure_is_reported_once_kept_and_retried():
    messages = []
    sink = CountingSink(fail=True)
    pub = Publisher(sink, [], interval_s=0.02, report=messages.append).start()
    pub.put(_points(10))
    assert pub.flush(timeout=PATIENCE_S)
    pub.put(_points(5, key="n"))
    for _ in range(100):  # retry now rather than after the back-off, until the store was tried 3 times
        if sink.attempts >= 3:
            break
        pub._next_try = 0.0
        assert pub.flush(timeout=PATIENCE_S)
    assert sink.attempts >= 3 and sink.metrics == []
    assert len(messages) == 1 and "failed" in messages[0], messages  # once, however many failures
    sink.fail = False
    pub._next_try = 0.0
    assert pub.flush(timeout=PATIENCE_S)
    assert [s for s, _ in sink.series("m")] == list(range(10)) and len(sink.series("n")) == 5  # kept, once each
    assert len(messages) == 2 and "back" in messages[1], messages
    assert pub.close("FINISHED", timeout=PATIENCE_S)
    assert len(sink.series("m")) == 10 and sink.status == "FINISHED"


def test_close_is_bounded_when_the_store_stays_down():
    messages = []
    pub = Publisher(MemorySink(fail=True), [], interval_s=0.05, report=messages.append).start()
    pub.put(_points(100))
    returned, result = threading.Event(), []

    def closer():
        result.append(pub.close("FINISHED", timeout=1.0))
        returned.set()

    threading.Thread(target=closer, daemon=True).start()
    assert returned.wait(PATIENCE_S), "close() with the store down did not return"
    assert result == [False]
    assert pub.has_backlog()  # nothing was thrown away: the spool or `sync` can still take it


def test_a_broken_collector_does_not_stop_the_others():
    messages = []
    sink = MemorySink()

    def broken():
        raise RuntimeError("boom")

    pub = Publisher(sink, [broken, lambda: _points(3)], interval_s=0.05, report=messages.append).start()
    assert pub.close(None, timeout=PATIENCE_S)
    assert len(sink.series("m")) >= 3
    assert any("collector failed" in m for m in messages)
