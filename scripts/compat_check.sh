#!/usr/bin/env bash
# Does sai_mlflow work with other MLflow / Ultralytics versions? Installs them into a side virtualenv and runs
# the loop a user runs: train (two tiny CPU runs into a sqlite store) -> compare-runs -> promote -> load the model.
#
#   bash scripts/compat_check.sh                   # the lower bounds pyproject.toml declares
#   bash scripts/compat_check.sh 3.10.1 8.4.0      # any MLflow client and Ultralytics version
#
# SAI_COMPAT_BASE=/path/to/venv reuses that environment's packages (torch, ...) underneath the side venv, so only
# MLflow and Ultralytics are installed (minutes instead of a torch download). The last line says what passed;
# docs/compatibility.md keeps the last result.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
lower() { sed -n "s/^ *\"$1[^\"]*>=\([0-9.]*\).*/\1/p" pyproject.toml | head -1; }
MLFLOW=${1:-$(lower mlflow)}
ULTRA=${2:-$(lower ultralytics)}
PY=${PYTHON:-python3}
VENV=${SAI_COMPAT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sai_mlflow/venvs/compat-mlflow-$MLFLOW-ultralytics-$ULTRA}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sai_compat.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export YOLO_CONFIG_DIR=$WORK/yolo  # before anything imports Ultralytics: another version resets the user's settings
say() { echo "compat_check: $*" >&2; }

if [ ! -f "$VENV/.sai-ready" ]; then
  say "creating $VENV (mlflow $MLFLOW, ultralytics $ULTRA)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  if [ -n "${SAI_COMPAT_BASE:-}" ]; then  # the base's packages, after the side venv's own
    site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    "$SAI_COMPAT_BASE/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > "$site/_sai_base.pth"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check "mlflow[auth]==$MLFLOW" "ultralytics==$ULTRA" 2>&1 \
    | grep -v "^WARNING: Location" || true
  touch "$VENV/.sai-ready"
fi
got=$("$VENV/bin/python" -c "import mlflow, ultralytics; print(mlflow.__version__, ultralytics.__version__)" 2>/dev/null \
  | tail -1)
[ "$got" = "$MLFLOW $ULTRA" ] || { say "the side venv has '$got', not '$MLFLOW $ULTRA'"; exit 2; }

export PYTHONPATH=$ROOT YOLO_OFFLINE=1 MLFLOW_TRACKING_URI=sqlite:///$WORK/mlruns/mlflow.db
export SAI_MLFLOW_SPOOL_DIR=$WORK/spool
cd "$WORK"
sai() { "$VENV/bin/python" -m sai_mlflow.cli "$@"; }
step() { say "$1"; shift; "$@" > "$WORK/step.log" 2>&1 || { tail -30 "$WORK/step.log" >&2; say "FAILED: mlflow $MLFLOW, ultralytics $ULTRA"; exit 1; }; }

"$VENV/bin/python" -c "from pathlib import Path; from sai_mlflow.data.synthetic import SyntheticSpec, generate; \
generate(Path('data'), SyntheticSpec(train=32, val=8, width=96, height=64))"
for name in a b; do
  step "train $name" sai train --config "$ROOT/configs/cpu_smoke.yaml" --set data="$WORK/data/data.yaml" \
    --set epochs=2 --set imgsz=64 --set project="$WORK/runs" --set name=$name --experiment compat
  grep -q "could not log the model\|not logged" "$WORK/step.log" && { say "train $name: the model was not logged"; exit 1; }
  grep "^run " "$WORK/step.log" | head -1 | awk '{print $2}' >> runs.txt
done
step "compare-runs" sai compare-runs --experiment compat --format json
step "promote" sai promote "$(head -1 runs.txt)" --model compat-detector --force
step "load the model" "$VENV/bin/python" -c "import mlflow, pandas as pd; from sai_mlflow.model import example_image_b64
m = mlflow.pyfunc.load_model('models:/compat-detector@champion'); m.predict(pd.DataFrame({'image': [example_image_b64()]}))"
say "PASSED: mlflow $MLFLOW, ultralytics $ULTRA (python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'))"
