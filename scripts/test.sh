#!/usr/bin/env bash
# The test command: installs what it needs, then runs the whole suite (real sqlite stores, a real
# `mlflow server` on 127.0.0.1, real CPU training on tiny synthetic images). GPU tests skip without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# Headless Chromium for the browser test (tests/test_ui_browser.py): Debian's package, when absent and we may.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing chromium (apt) for the browser test…" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "chromium could not be installed; tests/test_ui_browser.py will say so" >&2
fi
# strace for the spool's fsync test (tests/test_spool_fsync.py; it skips without it).
if ! command -v strace >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace) >/dev/null 2>&1 \
    || echo "strace could not be installed; tests/test_spool_fsync.py will skip" >&2
fi
export YOLO_OFFLINE=1 MPLBACKEND=Agg
exec .venv/bin/python -m pytest -q "$@"
