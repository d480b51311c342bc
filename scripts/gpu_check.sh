#!/usr/bin/env bash
# GPU check: plain Ultralytics vs sai_mlflow's trainer, interleaved, on the same short config; prints a table
# (steady s/batch of each and their ratio, hook cost, NVML peak vs torch reserved peak, GPU syncs in our hooks).
# Then the probe check (benchmarks/probe_accuracy.py): probes at two batches forecast a third's peak,
# validation included, against a real run, with AutoBatch's chosen batch and its measured peak beside it.
# With more than one GPU visible, the DDP check (benchmarks/ddp_peaks.py): a 2-GPU training against the
# single-GPU one at the same per-device batch, each device's NVML peak and the largest.
# On the lent H200: carry .whl (ultralytics, mlflow, … — see the device README) and run this script.
# Without a GPU it runs the same comparison on the CPU with the tiny smoke settings.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
export YOLO_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
PAIRS=${PAIRS:-3}
PROBE=${PROBE:-1}   # 0: skip the probe check
if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  # YOLOv8s at imgsz 1440, batch 32: 640 images x 15 epochs = 300 batches per arm
  "$PY" benchmarks/overhead.py --device 0 --model yolov8s.yaml --imgsz 1440 --batch 32 \
    --train "${TRAIN:-640}" --epochs "${EPOCHS:-15}" --size 1440x808 --workers 12 --pairs "$PAIRS"
  # probes at 16 and 32 forecast 64 (validation included) against a real run at 64; AutoBatch beside it
  [ "$PROBE" = 1 ] && "$PY" benchmarks/probe_accuracy.py --device 0 --model yolov8s.yaml --imgsz 1440 \
    --size 1440x808 --probes 16,32 --measure 64 --train 640 --val 256 --probe-batches 60 --workers 12 --autobatch
  GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
  if [ "${DDP:-1}" = 1 ] && [ "$GPUS" -gt 1 ]; then   # DDP=0: skip the DDP check
    "$PY" benchmarks/ddp_peaks.py --model yolov8s.yaml --imgsz 1440 --size 1440x808 --batch 16 --train 640 \
      --val 64 --epochs 2 --workers 12
  else
    echo "DDP check skipped: $GPUS GPU visible (it needs two)"
  fi
else
  echo "no CUDA GPU here: running the CPU path (tiny smoke settings)"
  "$PY" benchmarks/overhead.py --device cpu --pairs "$PAIRS" --epochs "${EPOCHS:-1}" --train "${TRAIN:-32}"
  [ "$PROBE" = 1 ] && "$PY" benchmarks/probe_accuracy.py --device cpu --imgsz 64 --size 96x64 --probes 2,4 \
    --measure 8 --train 32 --val 16 --probe-batches 4 --autobatch
fi
exit 0
