"""The write-ahead spool on its own and against a real sqlite store: framing, torn tails, watermark, sync."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sai_mlflow.tracking.sink import Batch
from sai_mlflow.tracking.spool import (
    Spool,
    SpoolingSink,
    Uploader,
    clean_batch,
    drain,
    encode,
    list_spools,
    read_records,
    safe_key,
    summarize,
    sync_spool,
)


def _sink(tmp_path, client=None, run_id="r1", **kw):
    return SpoolingSink(client, run_id, root=tmp_path / "spool", report=lambda m: None, **kw)


def test_records_round_trip_and_torn_tail_is_dropped(tmp_path):
    sink = _sink(tmp_path)
    for i in range(5):
        sink.write(Batch(metrics=[("m", float(i), 1000 + i, i)]))
    path = sink.spool.log
    whole = path.read_bytes()
    sink.spool.close()
    for cut in (1, 5, 9, len(encode({"t": "m", "p": [["m", 4.0, 1004, 4]]})) - 1):
        path.write_bytes(whole[:-cut])  # a crash mid-append
        recs = [r for _, r in read_records(path)]
        assert [r["p"][0][3] for r in recs] == [0, 1, 2, 3]
    sp = Spool(path.parent).open_for_append()  # reopening truncates the torn tail, then appends cleanly
    sp.append({"t": "m", "p": [["m", 9.0, 2000, 9]]})
    assert [r["p"][0][3] for _, r in read_records(path)] == [0, 1, 2, 3, 9]


def test_a_corrupt_record_in_the_middle_is_skipped_never_misread(tmp_path):
    sink = _sink(tmp_path)
    for i in range(3):
        sink.write(Batch(metrics=[("m", float(i), 1, i)]))
    sink.spool.close()
    data = bytearray(sink.spool.log.read_bytes())
    rec = len(encode({"t": "m", "p": [["m", 0.0, 1, 0]]}))
    data[rec + 12] ^= 0x01  # flip a bit inside the second record's payload
    sink.spool.log.write_bytes(bytes(data))
    gaps = []
    assert [r["p"][0][3] for _, r in read_records(sink.spool.log, gaps=gaps)] == [0, 2]
    assert gaps == [(rec, rec)]


def test_watermark_restart_sends_every_point_once(tmp_path, client):
    exp = client.create_experiment("e")
    run_id = client.create_run(exp).info.run_id
    sp = Spool(tmp_path / "spool" / run_id)
    sp.try_lock()
    sp.open_for_append()
    for i in range(25):  # 25 records x 100 points: several requests
        sp.append({"t": "m", "p": [["m", float(i * 100 + j), 1000 + j, i * 100 + j] for j in range(100)]})
    up = Uploader(client, run_id)
    sent = drain(sp, up, deadline=0)  # nothing sent with an expired deadline
    assert sent == 0 and sp.watermark == 0
    from sai_mlflow.tracking.spool import upload_step

    n, m = upload_step(sp, up)
    assert m == 1000 and sp.watermark > 0  # one request: <= 1000 metrics
    wm = sp.watermark
    sp.close()
    sp2 = Spool(sp.dir)  # a new process: starts from the durable watermark
    assert sp2.watermark == wm
    sp2.set_watermark(0)  # even a lost watermark (ack lost) does not duplicate: the store dedups
    drain(sp2, up)
    hist = client.get_metric_history(run_id, "m")
    assert sorted(m.step for m in hist) == list(range(2500))


def test_sink_offline_then_sync_creates_run_once_with_status(tmp_path, client, sqlite_uri):
    sink = _sink(tmp_path, None, "local-abc", meta={"tracking_uri": sqlite_uri, "experiment": "off",
                                                   "run_name": "r", "tags": {"stage": "1"}})
    sink.write(Batch(metrics=[("a(b)", 1.0, 1, 0), ("x", float("inf"), 1, 0), ("n", float("nan"), 1, 0),
                              ("s", "oops", 1, 0)], params={"lr0": "0.1", "long": "y" * 7000}, tags={"t": "v"}))
    sink.log_artifact(str(tmp_path / "missing.txt"))
    messages = []
    sink.report = messages.append
    sink.terminate("FAILED")
    assert len(messages) == 1 and "sai-mlflow sync --run local-abc" in messages[0]
    sp = list_spools(tmp_path / "spool")[0]
    p = summarize(sp)
    assert p.metrics == 3 and p.status == "FAILED" and p.set_aside[0][3] == "non-numeric value"
    res = sync_spool(sp)
    assert res.state == "synced", res.message
    run = client.get_run(res.run_id)
    assert run.info.status == "FAILED" and run.data.tags["stage"] == "1"
    assert set(run.data.metrics) == {"a_b", "x", "n"} and math.isnan(run.data.metrics["n"])
    assert "x" in run.data.tags["sai.note.inf_clamped"] and "a(b) -> a_b" in run.data.tags["sai.note.keys_mapped"]
    assert len(run.data.params["long"]) == 6000
    assert not sp.dir.exists()  # fully synced: removed
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_sync_after_kill_sets_killed_and_skips_live(tmp_path, client, sqlite_uri):
    exp = client.create_experiment("k")
    run_id = client.create_run(exp).info.run_id
    sink = _sink(tmp_path, None, run_id, meta={"tracking_uri": sqlite_uri})
    sink.write(Batch(metrics=[("m", 1.0, 5, 0)]))
    sp = Spool(sink.spool.dir)
    assert sync_spool(sp).state == "live"  # the writer still holds the lock
    sink.spool.close()  # what a SIGKILL does to the lock
    res = sync_spool(sp)
    assert res.state == "synced" and res.status == "KILLED"
    assert client.get_run(run_id).info.status == "KILLED"


def test_live_sink_uploads_and_cleans_up(tmp_path, client):
    exp = client.create_experiment("live")
    run_id = client.create_run(exp).info.run_id
    sink = _sink(tmp_path, client, run_id)
    for i in range(30):
        sink.write(Batch(metrics=[(f"k{j}", float(i), 1, i) for j in range(100)]))
    sink.terminate("FINISHED")
    assert not sink.spool.dir.exists()
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(run_id, "k7")) == 30


_weird = st.one_of(st.text(max_size=300), st.integers(), st.none(), st.just("metrics/mAP50(B)"),
                   st.just("a//b"), st.just("/x"), st.just(".."), st.just("./a"), st.just("a\n"))
_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-10**400, max_value=10**400),
                     st.text(max_size=5), st.none(), st.booleans(), st.binary(max_size=3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_weird, _values, st.one_of(st.integers(), st.none()),
                          st.one_of(st.integers(), st.floats(), st.none())), max_size=20),
       st.dictionaries(_weird.filter(lambda k: k is not None and not isinstance(k, int)),
                       st.one_of(st.text(max_size=7000), st.integers(), st.none()), max_size=5))
def test_fuzzed_keys_and_values_never_raise_and_keys_are_valid(tmp_path, metrics, params):
    from mlflow.utils.validation import _validate_metric_name, _validate_param_name

    c = clean_batch(Batch(metrics=list(metrics), params=dict(params), tags=dict(params)))
    for k, v, ts, _step in c.metrics:
        _validate_metric_name(k)
        assert isinstance(v, float) and ts >= 0
    for k, v in list(c.params.items()) + list(c.tags.items()):
        _validate_param_name(k)
        assert len(v) <= 8000
    assert all(len(v) <= 6000 for v in c.params.values())
    assert len(c.metrics) + len(c.set_aside) == len(metrics)
    sink = _sink(tmp_path, None, f"local-{os.getpid()}")
    sink.write(Batch(metrics=list(metrics), params=dict(params)))
    recs = [r for _, r in sink.spool.records(0)]
    assert sum(len(r["p"]) for r in recs if r["t"] == "m") == len(c.metrics)
    sink.spool.remove()


@pytest.mark.parametrize("key,expected", [("metrics/mAP50(B)", "val/mAP50"), ("a//b", "a/b"), ("/x", "x"),
                                          ("..", "_"), ("ok/key-1.2 :x", "ok/key-1.2 :x")])
def test_safe_key(key, expected):
    assert safe_key(key) == expected


def _answer(status: int, body: str):
    import requests

    r = requests.Response()
    r.status_code, r._content, r.encoding = status, body.encode(), "utf-8"
    return r


@pytest.mark.parametrize("status, body, kept, expected", [
    (400, '{"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}', False, 400),  # MLflow's own code
    (404, '{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"}', False, 404),
    (413, "<html>413 Request Entity Too Large</html>", False, 413),  # not JSON: the status is in MLflow's text
    (413, "<html>413 Request Entity Too Large</html>", True, 413),
    (422, '{"detail": "unprocessable"}', False, 500),  # JSON but not MLflow's: INTERNAL_ERROR, the status is lost
    (422, '{"detail": "unprocessable"}', True, 422),  # ... unless the response is kept (RunWriter._post)
    (429, "Too Many Requests", True, 429),
    (502, "<html>502 Bad Gateway</html>", False, 502),
])
def test_http_status_reads_the_answers_own_status(status, body, kept, expected):
    from mlflow.utils.rest_utils import verify_rest_response

    from sai_mlflow.tracking.spool.upload import http_status

    resp = _answer(status, body)
    with pytest.raises(Exception) as info:
        verify_rest_response(resp, "/api/2.0/mlflow/runs/log-batch")
    if kept:
        info.value.response = resp
    assert http_status(info.value) == expected


def test_http_status_of_an_outage_and_of_other_errors():
    from mlflow.exceptions import MlflowException, RestException

    from sai_mlflow.tracking.spool.upload import http_status

    # what MLflow raises when retries run out on a 503 (max_retries=0): no answer to read, an outage
    outage = MlflowException("API request to http://h/api/2.0/mlflow/runs/log-batch failed with exception "
                             "HTTPConnectionPool(...): Max retries exceeded (Caused by ResponseError('too many 503 "
                             "error responses'))")
    assert http_status(outage) == 500
    # a server's message that quotes the text is not read as the status: MLflow's code is
    quoted = RestException({"error_code": "INVALID_PARAMETER_VALUE",
                            "message": "API request to endpoint /x failed with error code 413 != 200"})
    assert http_status(quoted) == 400
    assert http_status(ValueError("failed with error code 413")) is None
