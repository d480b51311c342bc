"""A 2-process DDP training on the CPU (gloo) through Ultralytics' own launcher (torch.distributed.run).

Ultralytics gives `device=cpu` world size 0 (no DDP) and its `_setup_ddp` builds a CUDA device; this subclass of
the tracked trainer changes only that: the world size is SAI_TEST_DDP_WORLD, the process group is gloo on the
CPU, DistributedDataParallel gets no `device_ids` (it refuses them for a CPU module), and the final validation
of best.pt selects the CPU (a DDP rank's validator asks CUDA for its current device). Everything else is
the product's path: the launcher opens the run, the workers are rebuilt from this module by Ultralytics' DDP
file, rank 0 records, Ultralytics broadcasts `stop`.

Run as a script (the test does): `python tests/ddp_cpu_trainer.py SPEC.json`; SPEC has `args` (Ultralytics
overrides) and `settings` (TrackingSettings fields). Exit 128+signal when stopped by a signal.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

import torch.distributed as dist
from torch import nn
from ultralytics.utils import LOCAL_RANK, RANK

from sai_mlflow.trainer import Terminated, TrackedDetectionTrainer

WORLD = int(os.environ.get("SAI_TEST_DDP_WORLD", "2"))


class CpuDdpTrainer(TrackedDetectionTrainer):
    """The tracked trainer with a CPU world size: Ultralytics' own assignments to these two are ignored."""

    world_size = property(lambda self: WORLD, lambda self, value: None)
    ddp = property(lambda self: LOCAL_RANK == -1, lambda self, value: None)  # the launcher spawns, workers train

    def _setup_ddp(self):
        dist.init_process_group("gloo", timeout=timedelta(seconds=900), rank=RANK, world_size=WORLD)

    def _setup_train(self):
        real = nn.parallel.DistributedDataParallel

        def cpu_ddp(module, device_ids=None, **kw):  # CPU modules take no device_ids
            return real(module, **kw)

        nn.parallel.DistributedDataParallel = cpu_ddp
        try:
            return super()._setup_train()
        finally:
            nn.parallel.DistributedDataParallel = real

    def final_eval(self):
        import ultralytics.engine.validator as validator

        real_backend, real_device_backend = validator.AutoBackend, validator.get_torch_device_backend

        class NoCuda:  # a DDP rank's validator asks CUDA for its current device; here there is none
            @staticmethod
            def current_device():
                return 0

        validator.get_torch_device_backend = lambda device_type: NoCuda
        validator.AutoBackend = lambda *a, **kw: real_backend(*a, **{**kw, "device": self.device})
        try:
            return super().final_eval()
        finally:
            validator.AutoBackend, validator.get_torch_device_backend = real_backend, real_device_backend


def main(spec_path: str) -> int:
    from ddp_cpu_trainer import CpuDdpTrainer as Trainer  # by module path, as Ultralytics' DDP file imports it

    from sai_mlflow.tracking.settings import TrackingSettings, environment

    with open(spec_path) as f:
        spec = json.load(f)
    with environment(TrackingSettings(**spec["settings"])):
        trainer = Trainer(overrides=spec["args"])
        try:
            trainer.train()
        except Terminated as e:
            return 128 + e.signum
        finally:  # what the launcher can say about its run (the command prints its links from it)
            launched = trainer.sai_launched_run
            print("launched run:", json.dumps(launched and [launched.run_id, launched.experiment_id]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
