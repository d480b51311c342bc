#!/usr/bin/env bash
# The test command: installs what it needs, then runs the whole suite (real sqlite stores, a real
# `mlflow server` on 127.0.0.1, real CPU training on tiny synthetic images). GPU tests skip without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export YOLO_OFFLINE=1 MPLBACKEND=Agg
exec .venv/bin/python -m pytest -q "$@"
