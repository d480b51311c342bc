"""Preflight checks on real files, a real tmpfs, a real MLflow store and injected host facts."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from sai_mlflow import keys as K
from sai_mlflow.data.audit import audit, is_on_tmpfs
from sai_mlflow.data.synthetic import SyntheticSpec, generate
from sai_mlflow.preflight import (
    CHECKS,
    Finding,
    ForecastRecord,
    GpuInfo,
    HostInfo,
    PreflightContext,
    findings_as_tags,
    has_errors,
    load_forecast_history,
    run_checks,
)
from sai_mlflow.ultralytics_args import checkpoint_batch

GIB = 2**30
HAS_SHM = os.path.isdir("/dev/shm") and is_on_tmpfs("/dev/shm") and os.access("/dev/shm", os.W_OK)
H200 = GpuInfo(index=0, name="NVIDIA H200", total_bytes=int(139.8 * GIB), used_bytes=int(0.5 * GIB))


def host(**kw) -> HostInfo:
    base = dict(cpu_count=16, ram_total=258 * GIB, ram_available=200 * GIB, tmpfs_used=34 * GIB, gpus=[H200])
    base.update(kw)
    return HostInfo(**base)


def codes(findings) -> dict[str, Finding]:
    return {f.code: f for f in findings}


def check(args, **ctx) -> dict[str, Finding]:
    ctx.setdefault("host", host())
    return codes(run_checks(PreflightContext(args=args, **ctx)))


@pytest.fixture(scope="module")
def disk_data(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("disk"), SyntheticSpec(train=40, val=10, width=96, height=64))


@pytest.fixture(scope="module")
def shm_data():
    if not HAS_SHM:
        pytest.skip("no writable tmpfs at /dev/shm")
    root = Path("/dev/shm") / f"sai-test-pf-{os.getpid()}-{time.monotonic_ns()}"
    try:
        yield generate(root, SyntheticSpec(train=40, val=10, width=96, height=64))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def base_args(data, **kw):
    a = dict(data=str(data), model="yolov8s.yaml", batch=16, imgsz=640, cache=False, workers=8, device=0)
    a.update(kw)
    return a


# --- double cache: the seed's 31.41 s/batch -------------------------------------------------

@pytest.mark.parametrize("cache", [True, "ram", "disk", "RAM", 1, "True", "1"])
def test_double_cache_on_tmpfs_is_an_error(shm_data, cache):
    f = check(base_args(shm_data, cache=cache))
    assert f["double_cache"].level == "error" and "cache: false" in f["double_cache"].fix
    assert "31.41" in f["double_cache"].message


@pytest.mark.parametrize("cache", [False, None, "false"])
def test_no_cache_on_tmpfs_is_fine(shm_data, cache):
    f = check(base_args(shm_data, cache=cache))
    assert "double_cache" not in f and not has_errors(list(f.values()))


def test_ambiguous_cache_is_refused_even_off_tmpfs(disk_data):
    f = check(base_args(disk_data, cache=1))
    assert f["arg_invalid"].level == "error" and "write false, 'ram' or 'disk'" in f["arg_invalid"].message
    assert "double_cache" not in f


def test_memory_limit_is_the_policy_s(disk_data, tmp_path, monkeypatch):
    """One memory limit: preflight's forecast follows configs/decision.yaml (the policy compare-runs uses)."""
    from sai_mlflow.compare import policy

    strict = tmp_path / "decision.yaml"
    strict.write_text("max_memory_fraction: 0.5\n")
    monkeypatch.setattr(policy, "DEFAULT_POLICY_FILE", strict)
    f = check(base_args(disk_data, batch=96, imgsz=1440), history=SEED_HISTORY)
    assert f["memory_forecast"].level == "error" and "50%" in f["memory_forecast"].message


def test_cache_on_disk_data_is_not_double(disk_data):
    assert "double_cache" not in check(base_args(disk_data, cache=True))


# --- cache=ram against RAM -----------------------------------------------------------------

def test_cache_ram_insufficient_with_figures(disk_data):
    # 50 images of 96x64 at imgsz 1440 -> 1440x960x3 = 3.96 MiB each, ~0.19 GiB; 2x wanted
    f = check(base_args(disk_data, cache="ram", imgsz=1440), host=host(ram_available=int(0.3 * GIB)))
    e = f["cache_ram_insufficient"]
    assert e.level == "error" and "0.2 GiB" in e.message and "available 0.3" in e.message
    ok = check(base_args(disk_data, cache="ram", imgsz=1440), host=host(ram_available=8 * GIB))
    assert "cache_ram_insufficient" not in ok and ok["cache_ram_estimate"].level == "info"


def test_cache_ram_estimate_without_image_headers(disk_data):
    f = check(base_args(disk_data, cache="ram", imgsz=1440), host=host(ram_available=int(0.3 * GIB)),
              check_images=False)
    assert f["cache_ram_insufficient"].level == "error"


# --- shm capacity ----------------------------------------------------------------------------

def test_shm_capacity_for_a_planned_stage(disk_data, tmp_path, monkeypatch):
    import sai_mlflow.data.staging as S

    monkeypatch.setattr(S, "fs_free_bytes", lambda p: 1000)
    f = check(base_args(disk_data), stage_dest=str(tmp_path / "shm"))
    assert f["shm_capacity"].level == "error" and "free" in f["shm_capacity"].message
    monkeypatch.undo()
    f = check(base_args(disk_data), stage_dest=str(tmp_path / "shm"))
    assert "shm_capacity" not in f and f["shm_stage_plan"].level == "info"
    assert not (tmp_path / "shm").exists()  # a check never writes


def test_shm_capacity_when_tmpfs_leaves_too_little_ram(shm_data):
    f = check(base_args(shm_data), host=host(ram_available=2 * GIB, tmpfs_used=120 * GIB))
    assert f["shm_capacity"].level == "error" and "120.0 GiB" in f["shm_capacity"].message


# --- imgsz -----------------------------------------------------------------------------------

def test_imgsz_list_is_coerced_with_vram_figure(disk_data):
    f = check(base_args(disk_data, imgsz=[1440, 808], batch=128))
    w = f["imgsz_coerced"]
    assert w.level == "warning" and "1440×1440" in w.message and "1.78×" in w.message and "138 GiB" in w.message


def test_imgsz_rounded_to_stride(disk_data):
    assert "trains at 832" in check(base_args(disk_data, imgsz=808))["imgsz_coerced"].message
    assert "imgsz_coerced" not in check(base_args(disk_data, imgsz=640))
    assert "imgsz_coerced" not in check(base_args(disk_data, imgsz=[640, 640]))


# --- dataset audit ---------------------------------------------------------------------------

def test_dataset_audit_counts_and_digest(disk_data):
    f = check(base_args(disk_data))
    info = f["dataset_audit"]
    assert info.level == "info" and audit(disk_data).digest in info.message and "train: 40 images" in info.message


def test_corrupt_data_is_a_warning_with_the_list(tmp_path):
    data = generate(tmp_path / "d", SyntheticSpec(train=12, val=4, width=64, height=48))
    imgs = sorted((tmp_path / "d" / "images" / "train").glob("*.jpg"))
    imgs[0].write_bytes(imgs[0].read_bytes()[:-200])
    imgs[1].write_bytes(os.urandom(500))
    (tmp_path / "d" / "labels" / "train" / "train_00002.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    ctx = PreflightContext(args=base_args(data), host=host())
    f = codes(run_checks(ctx))
    assert f["dataset_corrupt"].level == "warning" and imgs[0].name in f["dataset_corrupt"].message
    assert "truncated" in f["dataset_corrupt"].message and imgs[1].name in f["dataset_corrupt"].message
    assert f["dataset_bad_labels"].level == "warning" and "1 class outside" in f["dataset_bad_labels"].message
    assert not has_errors(list(f.values()))
    assert ctx.audit is not None and len(ctx.audit.corrupt) == 2  # stored back for the trainer


def test_empty_or_missing_split_is_an_error(tmp_path, disk_data):
    (tmp_path / "empty").mkdir()
    y = tmp_path / "empty.yaml"
    y.write_text(f"path: {disk_data.parent}\ntrain: images/train\nval: {tmp_path / 'empty'}\nnames: [fire, smoke]\n")
    assert check(base_args(y))["dataset_split_empty"].level == "error"
    y.write_text(f"path: {disk_data.parent}\ntrain: images/train\nnames: [fire, smoke]\n")
    assert check(base_args(y))["dataset_unreadable"].level == "error"
    assert check(base_args(tmp_path / "nope.yaml"))["dataset_unreadable"].level == "error"


def test_all_backgrounds_is_an_error(tmp_path):
    data = generate(tmp_path / "d", SyntheticSpec(train=4, val=2, width=32, height=32))
    for p in (tmp_path / "d" / "labels" / "train").glob("*.txt"):
        p.write_text("")
    assert check(base_args(data))["dataset_no_labels"].level == "error"


# --- workers, batch ----------------------------------------------------------------------------

def test_workers_vs_cores(disk_data):
    f = check(base_args(disk_data, workers=12), host=host(cpu_count=4))
    assert f["workers_vs_cores"].level == "warning" and "caps it at 4" in f["workers_vs_cores"].message
    assert "workers_vs_cores" not in check(base_args(disk_data, workers=12))
    two_gpus = host(gpus=[H200, GpuInfo(1, "NVIDIA H200", H200.total_bytes, 0)])
    f = check(base_args(disk_data, workers=12, device="0,1"), host=two_gpus)
    assert "caps it at 8" in f["workers_vs_cores"].message


def test_batch_vs_dataset_and_devices(disk_data):
    f = check(base_args(disk_data, batch=64))
    assert f["batch_vs_dataset"].level == "warning" and "40 usable train images" in f["batch_vs_dataset"].message
    two_gpus = host(gpus=[H200, GpuInfo(1, "NVIDIA H200", H200.total_bytes, 0)])
    assert check(base_args(disk_data, batch=15, device=[0, 1]), host=two_gpus)["batch_vs_devices"].level == "error"
    assert check(base_args(disk_data, batch=-1))["batch_vs_dataset"].level == "info"


# --- resume ----------------------------------------------------------------------------------

def test_batch_changed_on_resume(disk_data, tmp_path):
    import torch

    ckpt = tmp_path / "weights" / "last.pt"
    ckpt.parent.mkdir()
    torch.save({"epoch": 3, "train_args": {"batch": 128, "imgsz": 1440}}, ckpt)
    assert checkpoint_batch(ckpt) == 128
    f = check(base_args(disk_data, batch=96, resume=str(ckpt)))
    e = f["batch_changed_on_resume"]
    assert e.level == "error" and "128" in e.message and "epoch 0" in e.fix
    assert "batch_changed_on_resume" not in check(base_args(disk_data, batch=128, resume=str(ckpt)))
    assert check(base_args(disk_data, batch=96, resume=True), resume_batch=128)["batch_changed_on_resume"]
    assert check(base_args(disk_data, resume=str(tmp_path / "x.pt")))["resume_checkpoint_missing"].level == "error"
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert check(base_args(disk_data, resume=str(tmp_path / "bad.pt")))["resume_checkpoint_unreadable"]


# --- memory forecast: the seed's b128 at 98.6 % --------------------------------------------

SEED_HISTORY = [
    ForecastRecord(32, 37.2, 139.8, "yolov8s.yaml", 1440, "NVIDIA H200"),
    ForecastRecord(64, 72.8, 139.8, "yolov8s.yaml", 1440, "NVIDIA H200"),
    ForecastRecord(16, 9.0, 79.6, "yolov8s.yaml", 1440, "NVIDIA A100"),  # another GPU: not comparable
]


def test_memory_forecast_rejects_b128_and_names_the_batch_that_fits(disk_data):
    f = check(base_args(disk_data, batch=128, imgsz=[1440, 808]), history=SEED_HISTORY)
    e = f["memory_forecast"]
    assert e.level == "error" and "144.0 GiB" in e.message and "largest batch predicted to fit: 111" in e.message
    assert e.fix == "batch: 111"
    ok = check(base_args(disk_data, batch=96, imgsz=1440), history=SEED_HISTORY)["memory_forecast"]
    assert ok.level == "info" and "108.4 GiB" in ok.message
    strict = check(base_args(disk_data, batch=96, imgsz=1440), history=SEED_HISTORY, max_memory_fraction=0.7)
    assert strict["memory_forecast"].level == "error"


def test_memory_forecast_needs_two_comparable_batches(disk_data):
    f = check(base_args(disk_data, batch=128, imgsz=1440), history=SEED_HISTORY[:1])
    assert f["memory_forecast"].level == "info" and "no forecast" in f["memory_forecast"].message
    f = check(base_args(disk_data, batch=128, imgsz=1280), history=SEED_HISTORY)
    assert f["memory_forecast"].level == "info"


def test_load_forecast_history_from_a_real_store(client):
    exp = client.create_experiment("pf")
    rows = [("32", 37.2, "FINISHED", "yolov8s.yaml"), ("64", 72.8, "FINISHED", "yolov8s.yaml"),
            ("96", 139.0, "FAILED", "yolov8s.yaml"), ("64", 50.0, "FINISHED", "yolov8n.yaml")]
    for batch, peak, status, model in rows:
        run = client.create_run(exp, tags={K.TAG_BATCH_SIZE_EFFECTIVE: batch, K.TAG_MODEL: model,
                                           K.TAG_IMGSZ: "1440", K.TAG_GPU: "NVIDIA H200"})
        client.log_metric(run.info.run_id, K.SUMMARY_PEAK_GIB, peak)
        client.log_metric(run.info.run_id, K.SUMMARY_TOTAL_GIB, 139.8)
        client.set_terminated(run.info.run_id, status)
    recs = load_forecast_history(client, [exp], "models/yolov8s.yaml", 1440, None)
    assert sorted((r.batch_effective, r.peak_gib) for r in recs) == [(32, 37.2), (64, 72.8)]
    assert load_forecast_history(client, [exp], "yolov8s.yaml", 1440, "NVIDIA A100") == []
    f = check(dict(data="/nope.yaml", model="yolov8s.yaml", batch=128, imgsz=1440, device=0), history=recs)
    assert f["memory_forecast"].level == "error"


# --- GPU busy --------------------------------------------------------------------------------

def test_gpu_busy_and_missing(disk_data):
    busy = GpuInfo(0, "NVIDIA H200", H200.total_bytes, 40 * GIB)
    f = check(base_args(disk_data), host=host(gpus=[busy]))
    assert f["gpu_busy"].level == "warning" and "40.0 of 139.8 GiB" in f["gpu_busy"].message
    assert "gpu_busy" not in check(base_args(disk_data))  # 0.5 GiB: the driver's own
    assert check(base_args(disk_data, device=3))["gpu_missing"].level == "error"
    assert "gpu_busy" not in check(base_args(disk_data, device="cpu"), host=host(gpus=None))
    assert check(base_args(disk_data, device=0), host=host(gpus=None))["gpu_busy"].level == "info"


def test_real_host_probe_does_not_fail(disk_data):
    findings = run_checks(PreflightContext(args=base_args(disk_data, device="cpu")))
    assert all(f.code != "check_failed" for f in findings)


# --- robustness ------------------------------------------------------------------------------

def test_a_crashing_check_becomes_a_finding(disk_data, monkeypatch):
    import sai_mlflow.preflight as P

    def broken(state):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(P, "CHECKS", (("double_cache", broken),) + tuple(c for c in CHECKS if c[0] != "double_cache"))
    f = codes(P.run_checks(PreflightContext(args=base_args(disk_data), host=host())))
    assert f["check_failed"].level == "warning" and "double_cache" in f["check_failed"].message
    assert "dataset_audit" in f


def test_findings_serialise_and_tag(disk_data):
    findings = run_checks(PreflightContext(args=base_args(disk_data, imgsz=[1440, 808]), host=host()))
    json.dumps([f.to_dict() for f in findings])
    tags = findings_as_tags(findings + [Finding("warning", "check_failed", "a"),
                                        Finding("warning", "check_failed", "b")])
    assert tags["preflight.imgsz_coerced"].startswith("warning: ")
    assert {"preflight.check_failed", "preflight.check_failed.2"} <= set(tags)
    assert all(K.is_valid_key(k) for k in tags)
