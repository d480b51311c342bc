"""AutoBatch on the judging side (issue 19, item 3): `batch_size` records the request (-1, 0.7), the run is
judged, fitted and recommended by the batch it settled on (`batch_size_effective`), and neither
`implausible` nor `batch_changed` follows from the request alone. Same for Ultralytics-native runs.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner
from mlflow.entities import Metric, Param
from test_compare_e2e import EXP, log_run

from sai_mlflow import keys as K
from sai_mlflow.cli import cli
from sai_mlflow.compare import render
from sai_mlflow.compare.decision import decide
from sai_mlflow.compare.policy import Policy
from sai_mlflow.compare.record import record_from_keys
from sai_mlflow.importers import ImportFailed
from sai_mlflow.importers.history_file import import_history_file
from sai_mlflow.importers.ultralytics_mapping import batch_request, identity_tags
from sai_mlflow.tracking.store import get_or_create_experiment

P = Policy()
BASE = {K.TAG_MODEL: "m", K.TAG_IMGSZ: "640", K.TAG_DATASET_DIGEST: "d", K.TAG_GPU: "g", K.TAG_CACHE_MODE: "none",
        K.TAG_DATA_ON_TMPFS: "false"}


def rec(name, request, effective, peak=40.0, eta=3600.0, run_kind="train"):
    tags = {**BASE, K.TAG_BATCH_SIZE: request, K.TAG_RUN_KIND: run_kind}
    if effective is not None:
        tags[K.TAG_BATCH_SIZE_EFFECTIVE] = str(effective)
    return record_from_keys(name, tags, {K.SUMMARY_PEAK_GIB: peak, K.SUMMARY_TOTAL_GIB: 140.0,
                                         K.SUMMARY_ETA_FULL_S: eta, K.SUMMARY_IMAGES_PER_S: 100.0}, run_name=name)


@pytest.mark.parametrize("request_text", ["-1", "0.7", "0.5"])
def test_an_autobatch_request_is_neither_implausible_nor_a_changed_batch(request_text):
    r = rec("auto", request_text, 16)
    assert r.autobatch and r.batch == 16 and r.batch_per_device == 16
    v = decide([r], P).verdicts[0]
    assert v.reason("implausible") is None and v.reason("batch_changed") is None
    assert v.verdict == "recommended"
    obj = render.to_json_obj(decide([r], P))
    assert obj["runs"][0]["batch_size"] == float(request_text) and obj["recommended"]["batch_size"] == 16
    assert render.row_cells(decide([r], P).verdicts[0])[1] == request_text  # the request, as recorded


def test_other_batch_values_still_are_implausible_or_changed():
    for bad in ("0", "-2", "1.5", "abc", "2.0e300"):
        assert decide([rec("bad", bad, 16)], P).verdicts[0].reason("implausible") is not None, bad
    halved = decide([rec("oom", "32", 16)], P).verdicts[0]
    assert halved.reason("batch_changed").severity == "warn"


def test_fit_and_suggestion_use_the_settled_batch():
    runs = [rec("auto", "-1", 32, peak=37.0), rec("b64", "64", 64, peak=73.0)]
    d = decide(runs, P)
    assert d.fit.batches == (32, 64) and d.suggested_batch == d.fit.largest_batch_under(126.0)
    # AutoBatch's choice beside the recommendation and the fit's suggestion
    words = render.verdict_paragraph(d)
    assert "AutoBatch: auto asked for batch=-1 and settled on 32" in words
    assert f"largest batch predicted under the limit {d.suggested_batch}" in words
    assert render.to_json_obj(d)["autobatch"] == [{"run_id": "auto", "run_name": "auto", "requested": -1,
                                                  "batch_size_effective": 32, "devices": 1}]


def test_autobatch_beside_the_probes_recommendation():
    """A training that used AutoBatch, judged with probe runs as evidence: both choices side by side."""
    probes = [rec("p32", "32", 32, peak=37.0, run_kind="probe"), rec("p64", "64", 64, peak=73.0, run_kind="probe")]
    d = decide([rec("auto", "0.7", 48, peak=55.0)], P, evidence=probes)
    line = render.autobatch_line(d)
    assert line.startswith("AutoBatch: auto asked for batch=0.7 and settled on 48")
    assert "recommended batch 48" in line and f"predicted under the limit {d.suggested_batch}" in line
    assert "AutoBatch:" in render.to_markdown(d)


def test_a_logged_autobatch_run_is_judged_by_its_settled_batch(client):
    auto = log_run(client, "auto", batch=-1, effective=16)
    log_run(client, "b8", batch=8, summary={K.SUMMARY_ETA_FULL_S: 9000.0})
    assert client.get_run(auto).data.tags[K.TAG_BATCH_SIZE] == "-1"
    res = CliRunner().invoke(cli, ["compare-runs", "--experiment", EXP, "--tracking-uri", client.tracking_uri,
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.output)
    run = next(r for r in obj["runs"] if r["run_id"] == auto)
    assert run["verdict"] == "recommended" and run["batch_size"] == -1 and run["batch_size_effective"] == 16
    assert not {x["code"] for x in run["reasons"]} & {"implausible", "batch_changed"}
    assert obj["recommended"] == {"run_id": auto, "batch_size": 16}


def test_an_ultralytics_native_autobatch_run(client):
    """A run Ultralytics' own callback logged with batch -1 on four devices: read, never rejected for it."""
    exp = get_or_create_experiment(client, "native")
    rid = client.create_run(exp, run_name="native").info.run_id
    params = {"model": "yolov8n.yaml", "imgsz": "640", "batch": "-1", "data": "/nowhere/data.yaml",
              "device": "0,1,2,3", "epochs": "10", "cache": "False"}
    client.log_batch(rid, params=[Param(k, v) for k, v in params.items()],
                     metrics=[Metric("metrics/mAP50B", 0.3 + e / 100, 0, e) for e in range(3)]
                     + [Metric(K.TRAIN_LOSSES[0], 1.0, 0, e) for e in range(3)])
    client.set_terminated(rid)
    res = CliRunner().invoke(cli, ["compare-runs", rid, "--tracking-uri", client.tracking_uri, "--format", "json"])
    run = json.loads(res.output)["runs"][0]
    assert run["run_kind"] == "ultralytics" and run["batch_size"] == -1 and run["devices"] == 4
    assert not {x["code"] for x in run["reasons"] if x["severity"] != "info"} & {"implausible", "batch_changed"}
    assert run["verdict"] != "rejected" or "incomplete" in {x["code"] for x in run["reasons"]}
    assert identity_tags(params)[K.TAG_BATCH_SIZE] == "-1"


def test_history_file_takes_an_autobatch_request(client, tmp_path):
    f = tmp_path / "h.yaml"
    run = "{name: auto, start: 2026-11-01T00:00:00Z, batch: -1, batch_effective: 16, speed: {step_s: 0.2, batches: 40}}"
    f.write_text(textwrap.dedent(f"format: sai-history/1\nexperiment: hist\nruns:\n  - {run}\n"))
    (res,) = import_history_file(client, f)
    tags = client.get_run(res.run_id).data.tags
    assert (tags[K.TAG_BATCH_SIZE], tags[K.TAG_BATCH_SIZE_EFFECTIVE]) == ("-1", "16")
    assert client.get_run(res.run_id).data.params["batch"] == "-1"
    f.write_text(f.read_text().replace(", batch_effective: 16", ""))
    with pytest.raises(ImportFailed, match="AutoBatch request: give batch_effective"):
        import_history_file(client, f)
    assert [batch_request(v) for v in (-1, "0.7", 16, "16", 0, 1.5, "x", True)] == [-1, 0.7, 16, 16, None, None,
                                                                                   None, None]
