"""Which run a training process records into: a new one, an attached one (DDP worker, `--resume`), or a
local one spooled until the store is back (`sai-mlflow sync` creates it). The store is reached through the
tracking backend (backend/): this file decides, the backend does.

The run id is written to `weights/mlflow_run_id.txt`, so `--resume PATH/last.pt` continues the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import keys as K
from ..backend import TrackingBackend, backend_for, source_tags
from ..log import warn
from ..redact import redact_text
from .address import config_error
from .settings import TrackingSettings
from .sink import Sink
from .spool import LOCAL_PREFIX, SpoolingSink, new_local_run_id


@dataclass
class OpenedRun:
    run_id: str
    sink: Sink
    client: object | None = None  # the store's own client (backend.client); None: offline (spooled under a local id)
    resumed: bool = False
    existing_params: dict[str, str] = field(default_factory=dict)
    existing_tags: dict[str, str] = field(default_factory=dict)  # --resume: the request as first tagged
    # Where the resumed run's series go on (strictly increasing steps, no overlap): batch, memory sample,
    # window, system-metrics sample.
    next_steps: tuple[int, int, int, int] = (0, 0, 0, 0)
    experiment_id: str = ""  # for the printed link into the UI; empty offline
    backend: TrackingBackend | None = None  # None: offline


def open_run(trainer, settings: TrackingSettings) -> OpenedRun:
    """Create or attach to the run for `trainer`; a store that is down gives an offline run (spooled)."""
    run_file = Path(trainer.wdir) / K.RUN_ID_FILE
    run_id = settings.run_id
    if not run_id and trainer.args.resume and run_file.is_file():
        run_id = run_file.read_text().strip()
        if run_id.startswith(LOCAL_PREFIX):
            run_id = _synced_run_of(run_id, settings)
    opened = _attach(trainer, settings, run_id) if run_id else _create(trainer, settings)
    run_file.parent.mkdir(parents=True, exist_ok=True)
    run_file.write_text(opened.run_id + "\n")
    return opened


def _create(trainer, s: TrackingSettings) -> OpenedRun:
    tags = source_tags({K.TAG_RUN_KIND: s.run_kind, K.TAG_STAGE: s.stage})
    try:
        backend = backend_for(s.tracking_uri)
        run = backend.create_run(s.experiment, s.run_name_for(trainer.args.name), tags, s.artifact_location or None)
    except Exception as e:  # store down or unwritable: spool locally, `sai-mlflow sync` creates it later
        refused = config_error(e, s.tracking_uri, f"creating runs in experiment '{s.experiment}'")
        if refused is not None:  # a misconfiguration (bad URI, login, permission) is refused, not spooled
            raise refused from None
        return _offline(trainer, s, tags, e)
    return OpenedRun(run.run_id, _spooling_sink(backend, run.run_id, s), backend.client,
                     experiment_id=run.experiment_id, backend=backend)


def _offline(trainer, s: TrackingSettings, tags: dict, error: Exception) -> OpenedRun:
    run_id = new_local_run_id()
    run_file = Path(trainer.wdir) / K.RUN_ID_FILE
    try:  # the spool first: say "spooled locally" only once it is true
        sink = SpoolingSink(None, run_id, report=warn, meta={
            "tracking_uri": s.tracking_uri, "experiment": s.experiment,
            "run_name": s.run_name_for(trainer.args.name), "tags": tags, "run_id_file": str(run_file.resolve()),
            "artifact_location": s.artifact_location})
    except Exception as spool_error:
        raise RuntimeError(f"neither the store ({type(error).__name__}: {str(error)[:200]}) nor the spool "
                           f"({type(spool_error).__name__}: {str(spool_error)[:200]}) can be written") from None
    warn(f"sai_mlflow: the tracking store is not available ({type(error).__name__}: {str(error)[:300]}); "
         f"training continues and the run is spooled locally as {run_id}")
    return OpenedRun(run_id, sink)


def _synced_run_of(local_id: str, s: TrackingSettings) -> str:
    """--resume of a run that trained offline: continue the run `sync` made of it (syncing it now if needed)."""
    from .spool import Spool, spool_root, sync_spool

    spool = Spool(spool_root() / local_id)
    if spool.log.exists():
        res = sync_spool(spool, s.tracking_uri)
        if res.state != "synced":
            raise RuntimeError(f"run {local_id} trained offline and its spool could not be synced ({res.message})")
        warn(f"sai_mlflow: run {local_id} (trained offline) was synced as run {res.run_id}; resuming it")
        return res.run_id
    found = backend_for(s.tracking_uri).find_run(s.experiment, K.TAG_LOCAL_RUN_ID, local_id)
    if not found:
        raise RuntimeError(f"run {local_id} trained offline and was never synced to {s.tracking_uri}: "
                           "run `sai-mlflow sync` (or pass the store it was synced to with --tracking-uri)")
    return found


def _attach(trainer, s: TrackingSettings, run_id: str) -> OpenedRun:
    """DDP worker or --resume: the run must be reachable; a resumed run's steps continue from the store."""
    backend = backend_for(s.tracking_uri)
    run = backend.get_run(run_id)
    if run is None:  # a wrong id fails loudly: caught by the caller
        raise RuntimeError(f"run {run_id} does not exist in {s.tracking_uri}")
    opened = OpenedRun(run_id, _spooling_sink(backend, run_id, s), backend.client, resumed=bool(trainer.args.resume),
                       existing_params=run.params, existing_tags=run.tags, experiment_id=run.experiment_id,
                       backend=backend)
    if opened.resumed:
        opened.sink.wait_drained(30.0)  # a killed run's spool goes up first: steps go on from it
        opened.next_steps = backend.next_steps(run_id, RESUMED_SERIES)
    if run.status != "RUNNING":
        backend.reopen(run_id)
    return opened


# where a resumed run's series go on: batch, memory sample, window, system-metrics sample
RESUMED_SERIES = (K.BATCH_STEP_S, K.MEMORY_USED_GIB, K.MEMORY_WINDOW_PEAK_GIB,
                  K.SYSTEM_METRICS_PREFIX + "cpu_utilization_percentage")


def _spooling_sink(backend: TrackingBackend, run_id: str, s: TrackingSettings) -> SpoolingSink:
    """Write-ahead spool (docs/durability.md): an outage or a kill loses nothing; `sai-mlflow sync` uploads."""
    return SpoolingSink(backend, run_id, report=warn, upload_interval_s=s.publish_interval_s,
                        drain_timeout_s=max(1.0, s.final_flush_timeout_s - 3.0),
                        meta={"tracking_uri": s.tracking_uri, "experiment": s.experiment,
                              "run_name": redact_text(s.run_name)})
