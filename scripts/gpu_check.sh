#!/usr/bin/env bash
# GPU check: plain Ultralytics vs sai_mlflow's trainer, interleaved, on the same short config; prints a table
# (steady s/batch of each and their ratio, hook cost, NVML peak vs torch reserved peak, GPU syncs in our hooks).
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
if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  # YOLOv8s at imgsz 1440, batch 32: 640 images x 15 epochs = 300 batches per arm
  exec "$PY" benchmarks/overhead.py --device 0 --model yolov8s.yaml --imgsz 1440 --batch 32 \
    --train "${TRAIN:-640}" --epochs "${EPOCHS:-15}" --size 1440x808 --workers 12 --pairs "$PAIRS"
else
  echo "no CUDA GPU here: running the CPU path (tiny smoke settings)"
  exec "$PY" benchmarks/overhead.py --device cpu --pairs "$PAIRS" --epochs "${EPOCHS:-1}" --train "${TRAIN:-32}"
fi
