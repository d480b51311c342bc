"""The background publisher against the shipped in-memory sink: batching, failure, recovery, bounded close."""

import time

from sai_mlflow.tracking.publisher import Publisher
from sai_mlflow.tracking.sink import Batch, MemorySink


def _points(n, key="m"):
    return Batch(metrics=[(key, float(i), 0, i) for i in range(n)])


def test_delivers_everything_in_order_and_sets_status():
    sink = MemorySink()
    pub = Publisher(sink, [], interval_s=0.05, report=lambda m: None).start()
    pub.put(_points(2500))
    pub.put(Batch(params={"lr0": "0.01"}, tags={"batch_size": "8"}))
    assert pub.close("FINISHED", timeout=5)
    assert [s for s, _ in sink.series("m")] == list(range(2500))
    assert sink.params == {"lr0": "0.01"} and sink.tags == {"batch_size": "8"}
    assert sink.status == "FINISHED"


def test_store_failure_is_reported_once_kept_and_retried():
    messages = []
    sink = MemorySink(fail=True)
    pub = Publisher(sink, [], interval_s=0.02, report=messages.append).start()
    pub.put(_points(10))
    time.sleep(0.3)
    pub.put(_points(5, key="n"))
    time.sleep(0.3)
    assert len(messages) == 1 and "failed" in messages[0]
    sink.fail = False
    pub._next_try = 0.0
    assert pub.flush(timeout=5)
    assert len(sink.series("m")) == 10 and len(sink.series("n")) == 5
    assert len(messages) == 2 and "back" in messages[1]
    assert pub.close("FINISHED", timeout=5)


def test_close_is_bounded_when_the_store_stays_down():
    messages = []
    pub = Publisher(MemorySink(fail=True), [], interval_s=0.05, report=messages.append).start()
    pub.put(_points(100))
    t0 = time.monotonic()
    assert pub.close("FINISHED", timeout=1.0) is False
    assert time.monotonic() - t0 < 2.5
    assert pub.has_backlog()


def test_a_broken_collector_does_not_stop_the_others():
    messages = []
    sink = MemorySink()

    def broken():
        raise RuntimeError("boom")

    pub = Publisher(sink, [broken, lambda: _points(3)], interval_s=0.05, report=messages.append).start()
    assert pub.close(None, timeout=5)
    assert len(sink.series("m")) >= 3
    assert any("collector failed" in m for m in messages)
