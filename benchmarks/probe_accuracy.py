"""How well two probes forecast a third batch's peak (validation included), and what a probe costs.

Runs the real commands: `sai-mlflow probe --batches A,B` (fresh processes, the tracked trainer), then a
real one-epoch `sai-mlflow train` at batch C, whose measured peak (any phase, validation at 2x included)
is compared with the probes' fit. On the CPU the memory is the process RSS, at an image size where
activations matter. Then each probe's cost is split into a fixed part (process start, model build,
validation, closing) and a per-batch part, and a three-probe session is projected onto the seed's
config (37,413 images at 1440, 1.24 s/batch at batch 96) against one epoch of it.

    .venv/bin/python benchmarks/probe_accuracy.py                       # CPU: imgsz 320, probes 4,8, measure 16
    .venv/bin/python benchmarks/probe_accuracy.py --device 0 --model yolov8s.yaml --imgsz 1440 \
        --size 1440x808 --probes 16,32 --measure 64 --train 640 --val 256 --probe-batches 60   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the seed (configs/history/seed_2024-08.yaml): b96 at 1.24 s/batch, 37,413 images, ~30 warm-up batches
# (first ~10 s, the rest ~1.5x steady), validation 25.7 s per epoch (measured at b128)
SEED_IMAGES, SEED_BATCH, SEED_STEP_S, SEED_VAL_S = 37413, 96, 1.24, 25.7
SEED_WARMUP, SEED_FIRST_S, SEED_WARMUP_LEVEL = 30, 10.0, 1.5


def cli(*args, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sai_mlflow.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="yolov8n.yaml")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--size", default="320x320", help="synthetic image WIDTHxHEIGHT")
    ap.add_argument("--train", type=int, default=96, help="synthetic train images")
    ap.add_argument("--val", type=int, default=64,
                    help="synthetic val images (>= 2 x measure, so validation batches are full)")
    ap.add_argument("--probes", default="4,8")
    ap.add_argument("--measure", type=int, default=16)
    ap.add_argument("--probe-batches", type=int, default=12)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--autobatch", action="store_true",
                    help="also train one epoch with Ultralytics' AutoBatch (batch=-1) and show its choice and peak")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="probe-acc-"))
    env = {**os.environ, "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg", "YOLO_CONFIG_DIR": str(tmp / "ycfg"),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    r = cli("make-synthetic", "--out", str(tmp / "data"), "--train", str(args.train), "--val", str(args.val),
            "--size", args.size, cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr
    common = ["--config", str(ROOT / "configs" / "cpu_smoke.yaml"), "--set", f"data={tmp / 'data' / 'data.yaml'}",
              "--set", f"imgsz={args.imgsz}", "--set", f"model={args.model}", "--set", f"device={args.device}",
              "--set", f"workers={args.workers}", "--set", f"project={tmp / 'runs'}", "--set", "epochs=1",
              "--tracking-uri", uri]
    if args.device != "cpu":
        common += ["--set", "amp=true"]

    t0 = time.monotonic()
    r = cli("probe", *common, "--batches", args.probes, "--probe-batches", str(args.probe_batches),
            "--format", "json", cwd=tmp, env=env)
    session_s = time.monotonic() - t0
    if r.returncode not in (0, 3):
        print(r.stderr[-4000:])
        return 1
    obj = json.loads(r.stdout)

    from sai_mlflow import keys as K
    from sai_mlflow.compare.memfit import fit_peak_memory
    from sai_mlflow.tracking.store import make_client

    client = make_client(uri)
    probes = []
    for run in obj["runs"]:
        m = client.get_run(run["run_id"]).data.metrics
        probes.append({"batch": run["batch_size_effective"], "peak": run["peak_gib"], "train": run["train_peak_gib"],
                       "val": run["val_peak_gib"], "step_s": run["step_s_steady"],
                       "batches": math.ceil(min(args.train, run["batch_size"] * args.probe_batches)
                                            / run["batch_size"]),
                       "warmup": m.get(K.SUMMARY_WARMUP_BATCHES, 0.0)})
    fit = fit_peak_memory([(p["batch"], p["peak"]) for p in probes])
    # the wall time of each probe process, from its run's start and end
    for run, p in zip(obj["runs"], probes):
        info = client.get_run(run["run_id"]).info
        p["wall_s"] = (info.end_time - info.start_time) / 1000.0
        p["per_batch_s"] = p["step_s"]
        p["fixed_s"] = p["wall_s"] - p["batches"] * p["step_s"]

    t0 = time.monotonic()
    r = cli("train", *common, "--set", f"batch={args.measure}", "--set", "tracking.log_model=false", cwd=tmp, env=env)
    train_s = time.monotonic() - t0
    if r.returncode != 0:
        print(r.stderr[-4000:])
        return 1
    exp = client.get_experiment_by_name("sai-smoke")
    (real,) = [x for x in client.search_runs([exp.experiment_id], filter_string="tags.run_kind = 'train'")]
    mm = real.data.metrics
    measured, m_train, m_val = mm[K.SUMMARY_PEAK_GIB], mm.get(K.EPOCH_TRAIN_PEAK_GIB), mm.get(K.EPOCH_VAL_PEAK_GIB)
    pred = fit.predict(args.measure)
    dep_pred, dep_meas = pred - fit.intercept_gib, measured - fit.intercept_gib

    print(f"\nprobe accuracy — device {args.device}, {args.model}, imgsz {args.imgsz}, memory "
          f"{'RSS' if args.device == 'cpu' else 'NVML'}; probes {args.probes} ({args.probe_batches} batches max), "
          f"measured batch {args.measure} in a real 1-epoch run")
    print(f"{'batch':>6} {'train peak':>11} {'val peak':>9} {'peak':>8} {'s/batch':>8} {'batches':>8} "
          f"{'wall s':>7} {'fixed s':>8} {'per-batch s':>12}")
    for p in probes:
        print(f"{p['batch']:>6} {p['train']:>11.3f} {p['val']:>9.3f} {p['peak']:>8.3f} {p['step_s']:>8.3f} "
              f"{p['batches']:>8} {p['wall_s']:>7.1f} {p['fixed_s']:>8.1f} {p['per_batch_s']:>12.3f}")
    print(f"{args.measure:>6} {m_train:>11.3f} {m_val:>9.3f} {measured:>8.3f}   (real run, {train_s:.0f} s)")
    print(f"fit: {fit.intercept_gib:.3f} GiB + {fit.slope_gib_per_image:.4f} GiB per image (validation included)")
    print(f"forecast for batch {args.measure}: {pred:.3f} GiB; measured {measured:.3f} GiB; "
          f"error of the total {100 * (pred - measured) / measured:+.1f} %; "
          f"of the batch-dependent part {100 * (dep_pred - dep_meas) / dep_meas:+.1f} % "
          f"({dep_pred:.3f} vs {dep_meas:.3f} GiB above the fit's fixed part)")
    print(f"probe session wall time: {session_s:.0f} s for {len(probes)} probes")

    if args.autobatch:
        autobatch(args, tmp, env, uri, client, probes, fit)

    # the seed: three probes (32, 64, 96) of 60 batches, fixed cost as measured here per probe
    fixed = sorted(p["fixed_s"] for p in probes)[len(probes) // 2]
    epoch_s = math.ceil(SEED_IMAGES / SEED_BATCH) * SEED_STEP_S + SEED_VAL_S
    val_img_s = SEED_IMAGES / math.ceil(SEED_IMAGES / SEED_BATCH) / SEED_STEP_S * 2  # validation ~2x training speed
    total = 0.0
    print(f"\nseed projection (37,413 images at 1440; {SEED_STEP_S} s/batch at {SEED_BATCH}, s/batch taken "
          f"proportional to the batch; warm-up {SEED_WARMUP} batches, first {SEED_FIRST_S:.0f} s, others "
          f"{SEED_WARMUP_LEVEL}x; validation 2 batches at 2x batch, at 2x training img/s; fixed {fixed:.0f} s "
          "per probe as measured here):")
    for b in (32, 64, 96):
        s = SEED_STEP_S * b / SEED_BATCH
        train = SEED_FIRST_S + (SEED_WARMUP - 1) * s * SEED_WARMUP_LEVEL + (60 - SEED_WARMUP) * s
        val = 2 * 2 * b / val_img_s
        total += fixed + train + val
        print(f"  probe b{b}: {fixed:.0f} s fixed + {train:.0f} s training (60 batches) + {val:.1f} s validation")
    print(f"  three-probe session {total:.0f} s = {total / 60:.1f} min vs one epoch at b96 {epoch_s:.0f} s = "
          f"{epoch_s / 60:.1f} min: ratio {total / epoch_s:.2f}")
    return 0


AUTOBATCH = """
import sys
from sai_mlflow.tracking.settings import TrackingSettings, environment
from sai_mlflow.trainer import TrackedDetectionTrainer
overrides = dict(model=sys.argv[1], data=sys.argv[2], imgsz=int(sys.argv[3]), device=sys.argv[4],
                 workers=int(sys.argv[5]), project=sys.argv[6], name="autobatch", epochs=1, batch=-1,
                 plots=False, val=True, amp=sys.argv[4] != "cpu", exist_ok=True)
with environment(TrackingSettings(tracking_uri=sys.argv[7], experiment="autobatch", run_name="autobatch",
                                  log_model=False, memory_interval_s=0.25)):
    TrackedDetectionTrainer(overrides=overrides).train()
"""


def autobatch(args, tmp: Path, env: dict, uri: str, client, probes: list, fit) -> None:
    """Ultralytics' AutoBatch (batch=-1: aims at 60 % of CUDA memory, training only) in the tracked
    trainer, so its chosen batch and its measured peak, validation included, sit beside the probes'."""
    from sai_mlflow import keys as K

    r = subprocess.run([sys.executable, "-c", AUTOBATCH, args.model, str(tmp / "data" / "data.yaml"), str(args.imgsz),
                        args.device, str(args.workers), str(tmp / "runs"), uri], cwd=tmp, env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"AutoBatch run failed: {r.stderr[-2000:]}")
        return
    (run,) = client.search_runs([client.get_experiment_by_name("autobatch").experiment_id])
    m, t = run.data.metrics, run.data.tags
    chosen = int(t[K.TAG_BATCH_SIZE_EFFECTIVE])
    print(f"AutoBatch (batch=-1): chose batch {chosen}; measured peak {m[K.SUMMARY_PEAK_GIB]:.3f} GiB "
          f"(train {m.get(K.EPOCH_TRAIN_PEAK_GIB, float('nan')):.3f}, "
          f"validation {m.get(K.EPOCH_VAL_PEAK_GIB, float('nan')):.3f}) "
          f"of {m.get(K.SUMMARY_TOTAL_GIB, float('nan')):.1f} GiB = "
          f"{100 * m.get(K.SUMMARY_PEAK_FRACTION, float('nan')):.1f} %; "
          f"the probes' fit forecast {fit.predict(chosen):.3f} GiB for it")


if __name__ == "__main__":
    sys.exit(main())
