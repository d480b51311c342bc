"""Typed spool records: a spool written in the first format (one-letter dict records) is read and replayed by the
one dispatch table, each kind to its place in a real sqlite store; typed records write that same format."""

from __future__ import annotations

from sai_mlflow.tracking.spool import Spool, summarize, sync_spool
from sai_mlflow.tracking.spool.format import encode
from sai_mlflow.tracking.spool.records import Metrics, Params, SetAside, Status, Tags, decode


def test_a_first_format_spool_is_replayed_kind_by_kind(tmp_path, client, sqlite_uri):
    exp = client.create_experiment("old-spool")
    run_id = client.create_run(exp).info.run_id
    artifact = tmp_path / "notes.txt"
    artifact.write_text("hello")
    spool = Spool(tmp_path / "spool" / run_id).open_for_append()
    for record in ({"t": "p", "p": {"lr0": "0.01"}}, {"t": "g", "p": {"stage": "1"}},
                   {"t": "m", "p": [["loss", 0.5, 1000, 0], ["loss", 0.25, 2000, 1]]},
                   {"t": "x", "items": [["metric", "bad", "'x'", "non-numeric value"]]},
                   {"t": "a", "path": str(artifact), "ap": "docs"},
                   {"t": "s", "status": "FINISHED", "end_ms": 3000}):
        spool.append(record)
    spool.close()

    pending = summarize(spool)
    counts = (pending.params, pending.tags, pending.metrics, pending.artifacts, pending.status)
    assert counts == (1, 1, 2, 1, "FINISHED")
    assert pending.set_aside == [["metric", "bad", "'x'", "non-numeric value"]]
    assert sync_spool(spool, sqlite_uri).state == "synced"
    run = client.get_run(run_id)
    assert run.data.params == {"lr0": "0.01"} and run.data.tags["stage"] == "1"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(0, 0.5), (1, 0.25)]
    assert [f.path for f in client.list_artifacts(run_id, "docs")] == ["docs/notes.txt"]
    assert (run.info.status, run.info.end_time) == ("FINISHED", 3000)
    assert "bad" not in run.data.metrics  # set aside: kept in the spool's story, never sent


def test_typed_records_write_the_first_format():
    for typed, old in ((Metrics([["k", 1.0, 5, 0]]), {"t": "m", "p": [["k", 1.0, 5, 0]]}),
                       (Params({"a": "1"}), {"t": "p", "p": {"a": "1"}}),
                       (Tags({"b": "2"}), {"t": "g", "p": {"b": "2"}}),
                       (SetAside([["tag", "c", "?", "why"]]), {"t": "x", "items": [["tag", "c", "?", "why"]]}),
                       (Status("KILLED", 7, by="sync"), {"t": "s", "status": "KILLED", "end_ms": 7, "by": "sync"})):
        assert encode(typed) == encode(old)
        assert decode(old) == typed
    assert decode({"t": "future-kind", "p": 1}) is None  # a newer writer's record: skipped, not a crash
