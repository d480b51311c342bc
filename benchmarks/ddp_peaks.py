"""Two GPUs against one at the same per-device batch: per-device NVML peaks, the largest device, speed.

Runs the real command twice into one sqlite store: `sai-mlflow train` on device 0 at batch B, then on
devices 0,1 at batch 2B (Ultralytics' batch is the total; each device holds B). Prints, per run, the
`devices` tag, each device's peak (`memory/device/<i>/used_gib`), `summary/peak_gib` (the largest device),
steady s/batch and images/s, and the ratio of the 2-GPU peak to the 1-GPU peak (about 1 when the
per-device memory is what the single run needs, plus DDP's communication buffers).

    python benchmarks/ddp_peaks.py --model yolov8s.yaml --imgsz 1440 --size 1440x808 --batch 16   # >= 2 GPUs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov8s.yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--size", default="640x480", help="synthetic image WIDTHxHEIGHT")
    ap.add_argument("--batch", type=int, default=16, help="per-device batch")
    ap.add_argument("--train", type=int, default=512, help="synthetic train images")
    ap.add_argument("--val", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ddp-peaks-"))
    env = {**os.environ, "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg", "YOLO_CONFIG_DIR": str(tmp / "ycfg"),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    cli = [sys.executable, "-m", "sai_mlflow.cli"]
    subprocess.run([*cli, "make-synthetic", "--out", str(tmp / "data"), "--train", str(args.train),
                    "--val", str(args.val), "--size", args.size], cwd=tmp, env=env, check=True)
    for name, device, batch in (("one-gpu", "0", args.batch), ("two-gpus", "0,1", 2 * args.batch)):
        r = subprocess.run([*cli, "train", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"),
                            "--tracking-uri", uri, "--experiment", "ddp-peaks", "--run-name", name,
                            "--set", f"data={tmp / 'data' / 'data.yaml'}", "--set", f"model={args.model}",
                            "--set", f"imgsz={args.imgsz}", "--set", f"batch={batch}", "--set", f"device={device}",
                            "--set", f"epochs={args.epochs}", "--set", f"workers={args.workers}",
                            "--set", "amp=true", "--set", f"project={tmp / 'runs'}",
                            "--set", "tracking.log_model=false",
                            "--skip-preflight"], cwd=tmp, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name}: sai-mlflow train failed (exit {r.returncode})\n{r.stderr[-3000:]}")
            return 1
    from mlflow import MlflowClient

    from sai_mlflow import keys as K

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("ddp-peaks")
    peaks = {}
    print(f"\nDDP check: {args.model} imgsz {args.imgsz}, {args.batch} images per device, {args.epochs} epochs")
    print(f"{'run':<9} {'devices':>7} {'batch':>5} {'peak GiB (largest)':>18} {'per device GiB':<28} "
          f"{'s/batch':>8} {'img/s':>7} {'gpu'}")
    for run in sorted(c.search_runs([exp.experiment_id]), key=lambda r: r.info.start_time):
        t, m = run.data.tags, run.data.metrics
        devices = int(t.get(K.TAG_DEVICES, "1"))
        each = {k: max(p.value for p in c.get_metric_history(run.info.run_id, k))
                for k in sorted(m) if k.startswith(K.MEMORY_DEVICE_PREFIX)}
        per_device = ", ".join(f"{k.split('/')[2]}: {v:.1f}" for k, v in each.items()) or "-"
        peaks[devices] = m.get(K.SUMMARY_PEAK_GIB)
        nan = float("nan")
        print(f"{run.info.run_name:<9} {devices:>7} {t.get(K.TAG_BATCH_SIZE_EFFECTIVE):>5} "
              f"{m.get(K.SUMMARY_PEAK_GIB, nan):>18.2f} {per_device:<28} "
              f"{m.get(K.SUMMARY_STEP_S_STEADY, nan):>8.3f} {m.get(K.SUMMARY_IMAGES_PER_S, nan):>7.1f} "
              f"{t.get(K.TAG_GPU)}")
    if peaks.get(1) and peaks.get(2):
        print(f"2-GPU peak per device / 1-GPU peak at the same per-device batch: {peaks[2] / peaks[1]:.3f}")
    print(f"(store: {uri})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
