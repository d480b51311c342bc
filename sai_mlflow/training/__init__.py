"""One tracked run inside a training process, in three parts wired by `tracker.RunTracker`:

- `state.py`: what is measured (the batch clock, epoch and validation times, mAP per epoch, the setup's tags)
  and the run's summary, computed from it in one place;
- `hooks.py`: the Ultralytics hook adapter (setup, train start, epoch start/end, fit epoch end → state, contract
  keys for the publisher); `collectors.py`: what the publisher thread takes from the state and the samplers;
- `closer.py`: the end (summary computed once, artifacts, run report, model, the bounded final flush).

The per-batch path (`trainer.py`'s batch hooks → `state.clock`) only reads the clock: no I/O, no GPU sync.
"""

from .state import RunState, dataset_name
from .tracker import RunTracker, devices_of

__all__ = ["RunState", "RunTracker", "dataset_name", "devices_of"]
