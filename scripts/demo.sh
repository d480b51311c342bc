#!/usr/bin/env bash
# The demo: install, synthetic data, two short CPU runs at different batch sizes into ./mlruns, the seed's
# history imported beside them, compare-runs over both with the verdict written into MLflow (--tag-runs,
# --log-report), the recommended CPU run promoted to @champion. It ends with links into the MLflow UI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export YOLO_OFFLINE=1 MPLBACKEND=Agg
SAI=.venv/bin/sai-mlflow
$SAI make-synthetic --out data/synthetic --train 64 --val 16 --size 160x96
for b in 4 8; do
  $SAI train --config configs/cpu_smoke.yaml --set batch=$b --set epochs=3 --run-name "cpu-b$b"
done
echo; echo "== compare-runs over the two CPU runs (experiment sai-smoke) =="
.venv/bin/compare-runs --experiment sai-smoke --plot mlruns/compare_smoke.png --tag-runs || true
SMOKE_BEST=$(.venv/bin/compare-runs --experiment sai-smoke --format json 2>/dev/null \
  | .venv/bin/python -c "import json, sys; r = json.load(sys.stdin)['recommended']; print(r['run_id'] if r else '')" || true)
if [ -n "$SMOKE_BEST" ]; then
  echo; echo "== promote the recommended CPU run to sai-net-detector@champion =="
  $SAI promote "$SMOKE_BEST" --model sai-net-detector --alias champion || true
fi
if [ -f configs/history/seed_2024-08.yaml ]; then
  echo; echo "== the seed's 128-versus-96 decision, from its logged history (experiment sai-net-stage1) =="
  $SAI import-history configs/history/seed_2024-08.yaml
  .venv/bin/compare-runs --experiment sai-net-stage1 --plot mlruns/compare_seed.png --tag-runs --log-report || true
fi
echo
echo "Serve the UI:  .venv/bin/mlflow ui --backend-store-uri sqlite:///$(pwd)/mlruns/mlflow.db   (http://127.0.0.1:5000)"
echo "then open the links printed above; the seed's verdict, side by side:"
.venv/bin/compare-runs --experiment sai-net-stage1 --format json 2>/dev/null \
  | .venv/bin/python -c "import json, sys; l = json.load(sys.stdin)['links']; print('  compare:', l['compare']); print('  recommended run:', l['recommended'])" || true
echo "Plots:          mlruns/compare_smoke.png  mlruns/compare_seed.png"
