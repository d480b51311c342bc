#!/usr/bin/env bash
# The demo: install, synthetic data, two short CPU runs at different batch sizes into ./mlruns, the seed's
# history imported beside them, and compare-runs over both. Then it says how to look.
# Everything it writes (data/, mlruns/, runs/) goes under the folder it is run from; the tools come from
# the repository's .venv.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
bash "$REPO/scripts/setup_env.sh"
export YOLO_OFFLINE=1 MPLBACKEND=Agg
SAI="$REPO/.venv/bin/sai-mlflow"
COMPARE="$REPO/.venv/bin/compare-runs"
$SAI make-synthetic --out data/synthetic --train 64 --val 16 --size 160x96
for b in 4 8; do
  $SAI train --config "$REPO/configs/cpu_smoke.yaml" --set batch=$b --set epochs=3 --run-name "cpu-b$b"
done
echo; echo "== compare-runs over the two CPU runs (experiment sai-smoke) =="
$COMPARE --experiment sai-smoke --plot mlruns/compare_smoke.png || true
echo; echo "== the seed's 128-versus-96 decision, from its logged history (experiment sai-net-stage1) =="
$SAI import-history "$REPO/configs/history/seed_2024-08.yaml"
$COMPARE --experiment sai-net-stage1 --plot mlruns/compare_seed.png || true
echo
echo "Look at the runs:  $REPO/.venv/bin/mlflow ui --backend-store-uri sqlite:///$(pwd)/mlruns/mlflow.db   (then http://127.0.0.1:5000)"
echo "Plots:             mlruns/compare_smoke.png  mlruns/compare_seed.png"
