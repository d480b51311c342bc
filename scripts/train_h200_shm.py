#!/usr/bin/env python3
"""The seed's habit, kept: `python scripts/train_h200_shm.py --stage 1 --epochs 110`.

A thin wrapper over `sai-mlflow train --config configs/h200_shm_stage1.yaml`; everything else
(preflight, tracking, resume) is the same command. Extra arguments pass through, e.g.
`--set batch=128` or `--resume runs/h200_shm_stage1/train/weights/last.pt`.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", default="1", help="stage tag (the seed trains stage 1)")
    p.add_argument("--epochs", type=int, default=110)
    p.add_argument("--config", default=str(ROOT / "configs" / "h200_shm_stage1.yaml"))
    known, rest = p.parse_known_args()
    from sai_mlflow.cli import cli

    cli.main(["train", "--config", known.config, "--set", f"stage={known.stage}",
              "--set", f"epochs={known.epochs}", *rest], prog_name="sai-mlflow")


if __name__ == "__main__":
    main()
