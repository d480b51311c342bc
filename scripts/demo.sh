#!/usr/bin/env bash
# The demo: install, synthetic data, two short CPU runs at different batch sizes into ./mlruns, the seed's
# history imported beside them, compare-runs over both with the verdict written into MLflow (--tag-runs,
# --log-report), the recommended CPU run promoted to demo-detector@champion. It ends by saying how to look.
# It works in its own names (experiments demo-smoke and demo-stage1, model demo-detector), so the README's
# next steps, which use sai-smoke, sai-net-stage1 and sai-net-detector, still work as written afterwards.
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
  $SAI train --config cpu_smoke.yaml --set batch=$b --set epochs=3 --run-name "cpu-b$b" --experiment demo-smoke
done
echo; echo "== compare-runs over the two CPU runs (experiment demo-smoke) =="
$COMPARE --experiment demo-smoke --plot mlruns/compare_smoke.png --tag-runs || true
SMOKE_BEST=$($COMPARE --experiment demo-smoke --format json 2>/dev/null \
  | "$REPO/.venv/bin/python" -c "import json, sys; r = json.load(sys.stdin)['recommended']; print(r['run_id'] if r else '')" || true)
if [ -n "$SMOKE_BEST" ]; then
  echo; echo "== promote the recommended CPU run to demo-detector@champion =="
  $SAI promote "$SMOKE_BEST" --model demo-detector --alias champion || true
fi
echo; echo "== the seed's 128-versus-96 decision, from its logged history (experiment demo-stage1) =="
$SAI import-history seed_2024-08.yaml --experiment demo-stage1
$COMPARE --experiment demo-stage1 --plot mlruns/compare_seed.png --tag-runs --log-report || true
echo
echo "How to look: $REPO/.venv/bin/sai-mlflow ui"
echo "  (serves ./mlruns on http://127.0.0.1:5000 and prints the link that opens MLflow in model-training mode;"
echo "   MLflow's own start page is in GenAI mode, with no runs and no Model registry)"
echo "then open the links printed above; the seed's verdict, side by side:"
$COMPARE --experiment demo-stage1 --format json 2>/dev/null \
  | "$REPO/.venv/bin/python" -c "import json, sys; l = json.load(sys.stdin)['links']; print('  compare:', l['compare']); print('  recommended run:', l['recommended'])" || true
echo "Plots:          mlruns/compare_smoke.png  mlruns/compare_seed.png"
echo "Next: the README's steps (they use their own experiments: sai-smoke, sai-net-stage1, sai-net-detector)."
