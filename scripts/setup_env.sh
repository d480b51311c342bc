#!/usr/bin/env bash
# Create ./.venv with everything sai_mlflow needs (idempotent). Pins, as measured on the project's machines:
# torch 2.14.1 + torchvision 0.29.1 install from local files here; mlflow 3.18's skinny part is not served.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import sai_mlflow, ultralytics, mlflow, torch, pytest, hypothesis, psycopg, flask_wtf" 2>/dev/null \
   || [ ! -x .venv/bin/ruff ]; then
  echo "installing dependencies into .venv (a few minutes on a fresh machine)…" >&2
  .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q -e ".[test,postgres]" "mlflow==3.17.2" "ultralytics==8.4.190" 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -c "import sai_mlflow, ultralytics, mlflow, torch" >/dev/null
