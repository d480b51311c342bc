#!/usr/bin/env bash
# Create ./.venv with everything sai_mlflow needs (idempotent). Pins, as measured on the project's machines:
# torch 2.14.1 + torchvision 0.29.1 install from local files here; mlflow 3.18's skinny part is not served.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import sai_mlflow, ultralytics, mlflow, torch, pytest, hypothesis, psycopg, flask_wtf" 2>/dev/null; then
  echo "installing dependencies into .venv (a few minutes on a fresh machine)…" >&2
  .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q -e ".[test,postgres]" "mlflow==3.17.2" "ultralytics==8.4.190" 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -c "import sai_mlflow, ultralytics, mlflow, torch" >/dev/null
# Headless Chromium for the browser test (tests/test_ui_browser.py): Debian's package, when absent and we may.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing chromium (apt) for the browser test…" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "chromium could not be installed; tests/test_ui_browser.py will say so" >&2
fi
