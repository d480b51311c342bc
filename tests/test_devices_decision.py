"""Judging per device (issue 20, item 2): DDP runs are fitted, rejected and recommended by what one device
holds, and compared with runs on fewer devices by projected time.

Pure decision tests on records, and the same histories through the real importer (`import-history`) into
a real sqlite store, read back by compare-runs' loader and its CLI.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from sai_mlflow import keys as K
from sai_mlflow.cli import cli
from sai_mlflow.compare import render
from sai_mlflow.compare.decision import decide
from sai_mlflow.compare.loader import load_records
from sai_mlflow.compare.policy import Policy
from sai_mlflow.compare.record import record_from_keys
from sai_mlflow.importers.history_file import import_history_file
from sai_mlflow.importers.ultralytics_mapping import device_count, identity_tags

P = Policy()
H200 = "NVIDIA H200"


def rec(name, batch, devices, peak, eta, map50=None, gpu=H200, **summary):
    """A run as the loader builds it: contract tags and summary metrics through the one factory."""
    tags = {K.TAG_MODEL: "yolov8s.yaml", K.TAG_IMGSZ: "1440", K.TAG_DATASET_DIGEST: "d", K.TAG_GPU: gpu,
            K.TAG_BATCH_SIZE: str(batch), K.TAG_BATCH_SIZE_EFFECTIVE: str(batch), K.TAG_CACHE_MODE: "none",
            K.TAG_DATA_ON_TMPFS: "true"}
    if devices is not None:
        tags[K.TAG_DEVICES] = str(devices)
    m = {K.SUMMARY_PEAK_GIB: peak, K.SUMMARY_TOTAL_GIB: 140.0, K.SUMMARY_PEAK_FRACTION: peak / 140.0,
         K.SUMMARY_ETA_FULL_S: eta, K.SUMMARY_IMAGES_PER_S: batch / 0.3, K.SUMMARY_DATA_WAIT_FRACTION: 0.01,
         K.SUMMARY_EPOCHS_PLANNED: 110, **summary}
    return record_from_keys(name, tags, m, run_name=name, map50=map50,
                            map50_last_epoch=max(map50) if map50 else None)


def scaling_runs():
    """The issue's 1/2/4-device runs: 32, 64 and 96 per device at 37, 73 and 108 GiB per device."""
    return [rec("1gpu", 32, None, 37.0, 40 * 3600.0), rec("2gpu", 128, 2, 73.0, 12 * 3600.0),
            rec("4gpu", 384, 4, 108.0, 5 * 3600.0)]


def test_one_two_four_devices_are_judged_per_device():
    d = decide(scaling_runs(), P)
    obj = render.to_json_obj(d)
    runs = {r["run_id"]: r for r in obj["runs"]}
    assert [runs[n]["batch_per_device"] for n in ("1gpu", "2gpu", "4gpu")] == [32, 64, 96]
    assert [runs[n]["devices"] for n in ("1gpu", "2gpu", "4gpu")] == [1, 2, 4]
    assert obj["recommended"] == {"run_id": "4gpu", "batch_size": 384}  # by projected time
    assert all(r["verdict"] != "rejected" for r in obj["runs"])  # 108/140 = 77 % on the largest device
    assert 100 <= obj["suggested_batch_per_device"] <= 125
    assert obj["suggested_batch"] == 4 * obj["suggested_batch_per_device"]  # for the recommended run's 4 devices
    words = render.verdict_paragraph(d)
    assert f"--set batch={obj['suggested_batch']}` on 4 devices" in words and "per device" in words


def test_different_device_counts_rank_by_projected_time():
    """A 4-device run without a projected time is not ranked above a 1-device run that has one, even with
    the higher images/s: across device counts only the projected time compares like with like."""
    one = rec("1gpu", 32, None, 37.0, 10 * 3600.0)
    four = rec("4gpu", 384, 4, 108.0, None)
    d = decide([one, four], P)
    assert d.recommended.run_id == "1gpu"
    same = decide([rec("a", 32, None, 37.0, 10 * 3600.0), rec("b", 64, None, 73.0, None)], P)
    assert same.recommended.run_id == "b"  # one device count: images/s decides, as before


def seed_on_4_gpus():
    """The seed moved to a 4-GPU box: 512 = 128 per device at 138 of 140 GiB, 384 = 96 per device at 105 GiB."""
    maps = {1: 0.467, 2: 0.445, 3: 0.422, 4: 0.427, 5: 0.425}
    return [rec("b512", 512, 4, 138.0, 10.4 * 3600, map50=maps, **{K.SUMMARY_BEST_MAP50: 0.467}),
            rec("b384", 384, 4, 105.0, 14.8 * 3600)]


def test_seed_on_four_gpus_rejects_512_for_memory_and_suggests_4_x_116():
    d = decide(seed_on_4_gpus(), P)
    b512 = d.by_id("b512")
    assert b512.verdict == "rejected" and {"memory_over_limit", "map_degradation"} <= set(b512.codes("reject"))
    assert "on the largest of its 4 devices" in b512.reason("memory_over_limit").message
    assert d.recommended.run_id == "b384"
    assert d.suggested_batch_per_device == 116 and d.suggested_devices == 4 and d.suggested_batch == 464
    assert d.fit.batches == (96, 128)  # fitted per device, not against the totals 384 and 512


def test_suggested_total_is_null_when_device_counts_differ_and_none_is_recommended():
    runs = [rec("1gpu", 120, None, 130.0, 9 * 3600.0), rec("4gpu", 512, 4, 139.0, 3 * 3600.0)]
    d = decide(runs, P)
    assert d.recommended is None and d.suggested_batch_per_device is not None
    obj = render.to_json_obj(d)
    assert obj["suggested_batch"] is None and obj["suggested_batch_per_device"] == d.suggested_batch_per_device
    assert "times the devices you train on" in render.verdict_paragraph(d)


def test_a_run_on_mixed_gpu_models_is_not_comparable_with_one_model_runs():
    mixed = K.gpu_tag(["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"])
    assert mixed == "NVIDIA A100-SXM4-80GB + NVIDIA H100 80GB HBM3" and K.gpu_tag([H200] * 4) == H200
    assert K.gpu_models(mixed) == ["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"]
    runs = [rec("h100-a", 32, None, 37.0, 9000.0, gpu="NVIDIA H100 80GB HBM3"),
            rec("h100-b", 64, 2, 73.0, 8000.0, gpu="NVIDIA H100 80GB HBM3"),
            rec("mixed", 64, 2, 70.0, 7000.0, gpu=mixed)]
    d = decide(runs, P)
    assert d.by_id("mixed").verdict == "not_comparable"
    assert "gpu" in d.by_id("mixed").reason("not_comparable").message


def test_single_device_output_is_unchanged():
    """No `dev` column and no per-device wording when every run is on one device (the golden table holds)."""
    d = decide([rec("a", 32, None, 37.0, 9000.0), rec("b", 64, 1, 73.0, 8000.0)], P)
    assert render.columns(d) == render.COLUMNS
    assert "per device" not in render.verdict_paragraph(d)
    multi = decide(scaling_runs(), P)
    assert "dev" in render.columns(multi) and "| 4 |" in render.to_markdown(multi).replace("**", "")


def test_ultralytics_device_argument_gives_the_device_count():
    assert [device_count(v) for v in ("0,1,2,3", "[0, 1]", [0, 1, 2], "0", 0, "cuda:0", "cpu", "", None)] == \
        [4, 2, 3, 1, 1, 1, 1, None, None]
    assert identity_tags({"device": "0,1,2,3", "batch": "512"})[K.TAG_DEVICES] == "4"


# --- through the real importer and a real sqlite store -----------------------------------------------

SCALING_HISTORY = """\
format: sai-history/1
experiment: ddp
defaults:
  train_images: 37413
  epochs_planned: 110
  epochs_completed: 1
  validation_s: 20
  tags: {model: yolov8s.yaml, imgsz: 1440, gpu: NVIDIA H200, dataset_digest: d, data_on_tmpfs: true}
runs:
  - {name: 1gpu, start: 2026-11-01T00:00:00Z, batch: 32, speed: {step_s: 0.128, batches: 200},
     memory: {total_gib: 140, ramp: [[0, 20], [60, 37]]}}
  - {name: 2gpu, start: 2026-11-02T00:00:00Z, batch: 128, devices: 2, speed: {step_s: 0.27, batches: 200},
     memory: {total_gib: 140, ramp: [[0, 20], [60, 73]]}}
  - {name: 4gpu, start: 2026-11-03T00:00:00Z, batch: 384, devices: 4, speed: {step_s: 0.40, batches: 200},
     memory: {total_gib: 140, ramp: [[0, 20], [60, 108]]}}
"""

SEED_4GPU_HISTORY = """\
format: sai-history/1
experiment: seed4
defaults:
  train_images: 37413
  epochs_planned: 110
  tags: {model: yolov8s.yaml, imgsz: 1440, gpu: NVIDIA H200, dataset_digest: d, data_on_tmpfs: true}
runs:
  - name: b512
    start: 2026-11-01T00:00:00Z
    batch: 512
    devices: 4
    epochs_completed: 5
    validation_s: 25.7
    speed: {step_s: 1.07}
    memory: {total_gib: 140, ramp: [[0, 25], [20, 35], [90, 135]], val_gib: 138}
    epochs: {val/mAP50: [0.467, 0.445, 0.422, 0.427, 0.425]}
  - name: b384
    start: 2026-11-02T00:00:00Z
    batch: 384
    devices: 4
    speed: {step_s: 1.24, batches: 380}
    memory: {total_gib: 140, ramp: [[0, 25], [20, 35], [90, 105]]}
"""


def _import(client, tmp_path, text, name):
    f = tmp_path / f"{name}.yaml"
    f.write_text(textwrap.dedent(text))
    import_history_file(client, f)


def test_scaling_history_through_the_importer(client, tmp_path):
    _import(client, tmp_path, SCALING_HISTORY, "scaling")
    records = load_records(client, experiment="ddp", policy=P, progress=False)
    assert {r.run_name: (r.device_count, r.batch_per_device) for r in records} == {
        "1gpu": (1, 32), "2gpu": (2, 64), "4gpu": (4, 96)}
    d = decide(records, P)
    assert d.recommended.record.run_name == "4gpu"  # shortest projected time
    assert d.recommended.record.eta_full_s == min(r.eta_full_s for r in records)
    assert 100 <= d.suggested_batch_per_device <= 125 and d.suggested_batch == 4 * d.suggested_batch_per_device


def test_seed_on_four_gpus_through_the_cli(client, tmp_path):
    _import(client, tmp_path, SEED_4GPU_HISTORY, "seed4")
    tags = {r.info.run_name: r.data.tags for r in client.search_runs(
        [client.get_experiment_by_name("seed4").experiment_id])}
    assert tags["b512"][K.TAG_DEVICES] == "4" and tags["b512"][K.TAG_BATCH_SIZE] == "512"
    res = CliRunner().invoke(cli, ["compare-runs", "--experiment", "seed4", "--tracking-uri", client.tracking_uri,
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.output)
    runs = {r["run_name"]: r for r in obj["runs"]}
    assert runs["b512"]["verdict"] == "rejected"
    assert {"memory_over_limit", "map_degradation"} <= {x["code"] for x in runs["b512"]["reasons"]
                                                       if x["severity"] == "reject"}
    assert (runs["b512"]["batch_per_device"], runs["b384"]["batch_per_device"]) == (128, 96)
    assert obj["recommended"]["batch_size"] == 384
    assert obj["suggested_batch_per_device"] == pytest.approx(116, abs=2)
    assert obj["suggested_batch"] == 4 * obj["suggested_batch_per_device"]
    table = CliRunner().invoke(cli, ["compare-runs", "--experiment", "seed4", "--tracking-uri", client.tracking_uri,
                                     "--width", "250"])
    assert f"--set batch={obj['suggested_batch']}` on 4 devices" in " ".join(table.output.split())


def test_preflight_forecasts_per_device_and_names_the_total_for_the_planned_devices(tmp_path):
    """The seed's 1-GPU runs (96 and 128 per device) forecast a 4-GPU plan of batch 512 = 128 per device."""
    from sai_mlflow.preflight import ForecastRecord, GpuInfo, HostInfo, PreflightContext, run_checks

    gib = 2**30
    gpus = [GpuInfo(index=i, name=H200, total_bytes=140 * gib, used_bytes=gib // 2) for i in range(4)]
    host = HostInfo(cpu_count=64, ram_total=1024 * gib, ram_available=900 * gib, tmpfs_used=0, gpus=gpus)
    history = [ForecastRecord(96, 105.0, 140.0, "yolov8s.yaml", 1440, H200),
               ForecastRecord(512, 138.0, 140.0, "yolov8s.yaml", 1440, H200, devices=4)]  # 128 per device
    args = dict(data=str(tmp_path / "none.yaml"), model="yolov8s.yaml", batch=512, imgsz=1440, device="0,1,2,3")
    (f,) = [x for x in run_checks(PreflightContext(args=args, host=host, history=history))
            if x.code == "memory_forecast"]
    assert f.level == "error" and "128 per device on 4 devices" in f.message and "138.0 GiB" in f.message
    assert "largest batch predicted to fit: 464 (116 per device)" in f.message and f.fix == "batch: 464"
    args["batch"] = 384
    (ok,) = [x for x in run_checks(PreflightContext(args=args, host=host, history=history))
             if x.code == "memory_forecast"]
    assert ok.level == "info" and "105.0 GiB" in ok.message
