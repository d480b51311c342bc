#!/usr/bin/env python3
"""Audit throughput and /dev/shm staging throughput against a plain `cp -r` of the same tree, in one run.

    .venv/bin/python benchmarks/audit_staging.py [--images 20000] [--big-files 256] [--json]

Builds a synthetic fire/smoke set (small JPEGs, one label file each) in a temp dir, then measures:
  * audit(): images/s with image-header checks, in-process (workers=1) and with the default workers;
  * stage() into a tmpfs: seconds and MiB/s (SHA-256 of every file, re-read verify, atomic rename),
    a second stage (nothing to copy), and `cp -r` of the same tree into the same tmpfs;
  * the same two copies on a tree of few large files (1 MiB "images"), where bytes dominate.
Everything it writes is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sai_mlflow.data.audit import audit, is_on_tmpfs  # noqa: E402
from sai_mlflow.data.staging import stage  # noqa: E402
from sai_mlflow.data.synthetic import SyntheticSpec, generate  # noqa: E402


def _tree_bytes(root: Path) -> tuple[int, int]:
    n = b = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            n += 1
            b += os.path.getsize(os.path.join(dirpath, f))
    return n, b


def _drop(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _copy_pair(src_yaml: Path, shm: Path, label: str) -> dict:
    src = src_yaml.parent
    files, nbytes = _tree_bytes(src)
    t = time.perf_counter()
    r = stage(src_yaml, shm / f"{label}-staged", progress=False)
    t_stage = time.perf_counter() - t
    t = time.perf_counter()
    r2 = stage(src_yaml, shm / f"{label}-staged", progress=False)
    t_again = time.perf_counter() - t
    assert r2.up_to_date
    t = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(shm / f"{label}-cp")], check=True)
    t_cp = time.perf_counter() - t
    _drop(shm / f"{label}-staged")
    _drop(shm / f"{label}-cp")
    mib = nbytes / 2**20
    return {
        "tree": label, "files": files, "mib": round(mib, 1),
        "stage_s": round(t_stage, 2), "stage_mib_s": round(mib / t_stage, 1), "stage_files_s": round(files / t_stage),
        "stage_again_s": round(t_again, 2),
        "cp_s": round(t_cp, 2), "cp_mib_s": round(mib / t_cp, 1), "cp_files_s": round(files / t_cp),
        "stage_over_cp": round(t_stage / t_cp, 2), "staged_files": r.copied_files,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000, help="train images (val adds 5 %%)")
    p.add_argument("--big-files", type=int, default=256, help="1 MiB files in the large-file tree")
    p.add_argument("--shm", default="/dev/shm", help="tmpfs to stage into")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if not is_on_tmpfs(a.shm):
        sys.exit(f"{a.shm} is not a tmpfs")
    work = Path(tempfile.mkdtemp(prefix="sai-bench-"))
    shm = Path(tempfile.mkdtemp(prefix="sai-bench-", dir=a.shm))
    out: dict = {"cpus": len(os.sched_getaffinity(0))}
    try:
        t = time.perf_counter()
        small = generate(work / "small", SyntheticSpec(train=a.images, val=max(1, a.images // 20), width=64, height=48))
        out["generate_s"] = round(time.perf_counter() - t, 1)
        n = a.images + max(1, a.images // 20)
        for workers in (1, None):
            t = time.perf_counter()
            res = audit(small, check_images=True, workers=workers)
            dt = time.perf_counter() - t
            assert res.train_images + res.val_images == n and not res.corrupt
            out[f"audit_{'serial' if workers == 1 else 'parallel'}"] = {
                "images": n, "s": round(dt, 2), "images_per_s": round(n / dt)}
        t = time.perf_counter()
        audit(small, check_images=False)
        out["audit_no_headers"] = {"images": n, "s": round(time.perf_counter() - t, 2)}
        out["copy_small"] = _copy_pair(small, shm, "small")

        big = work / "big"
        for split, count in (("train", a.big_files), ("val", max(1, a.big_files // 8))):
            (big / "images" / split).mkdir(parents=True)
            (big / "labels" / split).mkdir(parents=True)
            for i in range(count):
                (big / "images" / split / f"{i:05d}.jpg").write_bytes(os.urandom(2**20))
                (big / "labels" / split / f"{i:05d}.txt").write_text("0 0.5 0.5 0.1 0.1\n")
        (big / "data.yaml").write_text(f"path: {big}\ntrain: images/train\nval: images/val\nnames: [fire, smoke]\n")
        out["copy_big"] = _copy_pair(big / "data.yaml", shm, "big")
    finally:
        _drop(work)
        _drop(shm)
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print(f"cpus {out['cpus']}; generated {n} images in {out['generate_s']} s")
    for k in ("audit_serial", "audit_parallel"):
        v = out[k]
        print(f"{k:15s} {v['images']} images in {v['s']} s = {v['images_per_s']} images/s")
    print(f"audit_no_headers {out['audit_no_headers']['s']} s")
    for k in ("copy_small", "copy_big"):
        v = out[k]
        print(f"{v['tree']:5s} tree {v['files']} files {v['mib']} MiB: "
              f"stage {v['stage_s']} s ({v['stage_mib_s']} MiB/s, "
              f"{v['stage_files_s']} files/s), again {v['stage_again_s']} s; "
              f"cp -r {v['cp_s']} s ({v['cp_mib_s']} MiB/s, "
              f"{v['cp_files_s']} files/s); stage/cp = {v['stage_over_cp']}x")


if __name__ == "__main__":
    main()
