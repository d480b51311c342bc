#!/usr/bin/env bash
# The seed's "setup /dev/shm cache (run once)" step, as a thin wrapper over `sai-mlflow stage-shm`:
# capacity check first, verified copy into a hidden folder, atomic rename, idempotent reruns.
#
#   scripts/setup_shm_training.sh DATA_YAML [DEST] [--dry-run]
#   scripts/setup_shm_training.sh /data/fasdd/data.yaml                 # -> /dev/shm/fasdd
#   scripts/setup_shm_training.sh /data/fasdd/data.yaml /dev/shm/fasdd --dry-run
#
# Then train from DEST/data.yaml with cache: false (the images are already in RAM).
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    [[ $# -lt 1 ]] && exit 2 || exit 0
fi

data_yaml="$1"; shift
if [[ $# -gt 0 && "$1" != --* ]]; then
    dest="$1"; shift
else
    dest="/dev/shm/$(basename "$(cd "$(dirname "$data_yaml")" 2>/dev/null && pwd || dirname "$data_yaml")")"
fi

if command -v sai-mlflow >/dev/null 2>&1; then
    exec sai-mlflow stage-shm --data "$data_yaml" --dest "$dest" "$@"
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
[[ -x "$python" ]] || python="python3"
exec env PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$python" -m sai_mlflow.cli stage-shm --data "$data_yaml" --dest "$dest" "$@"
