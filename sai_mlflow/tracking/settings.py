"""Tracking settings that travel through the environment, so Ultralytics' DDP workers get them too."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, fields

from ..keys import ENV_RUN_ID
from .store import resolve_experiment, resolve_tracking_uri

_ENV = {
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "experiment": "MLFLOW_EXPERIMENT_NAME",
    "run_id": ENV_RUN_ID,
    "run_name": "SAI_MLFLOW_RUN_NAME",
    "stage": "SAI_MLFLOW_STAGE",
    "memory_interval_s": "SAI_MLFLOW_MEMORY_INTERVAL_S",
    "publish_interval_s": "SAI_MLFLOW_PUBLISH_INTERVAL_S",
    "final_flush_timeout_s": "SAI_MLFLOW_FLUSH_TIMEOUT_S",
    "log_model": "SAI_MLFLOW_LOG_MODEL",
    "run_kind": "SAI_MLFLOW_RUN_KIND",
    "guard_stop_on": "SAI_MLFLOW_GUARD_STOP_ON",
    "policy_file": "SAI_MLFLOW_POLICY_FILE",
    "artifact_location": "SAI_MLFLOW_ARTIFACT_LOCATION",
}


@dataclass
class TrackingSettings:
    tracking_uri: str = ""
    experiment: str = ""
    run_id: str = ""
    run_name: str = ""
    stage: str = ""
    memory_interval_s: float = 0.5
    publish_interval_s: float = 5.0
    final_flush_timeout_s: float = 10.0
    log_model: bool = True
    run_kind: str = "train"         # `probe` for a run of `sai-mlflow probe`
    guard_stop_on: str = ""         # reason codes, comma-separated: the live guard stops on these
    policy_file: str = ""           # the guard's policy (else configs/decision.yaml)
    artifact_location: str = ""

    @classmethod
    def from_env(cls) -> "TrackingSettings":
        s = cls()
        for f in fields(cls):
            raw = os.environ.get(_ENV[f.name])
            if raw is None or raw == "":
                continue
            if f.type in ("float", float):
                try:
                    setattr(s, f.name, float(raw))
                except ValueError:
                    pass
            elif f.type in ("bool", bool):
                setattr(s, f.name, raw.strip().lower() not in ("0", "false", "no", "off"))
            else:
                setattr(s, f.name, raw)
        s.tracking_uri = resolve_tracking_uri(s.tracking_uri or None)
        s.experiment = resolve_experiment(s.experiment or None)
        return s

    def to_env(self) -> dict[str, str]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v not in ("", None):
                out[_ENV[f.name]] = ("1" if v else "0") if isinstance(v, bool) else str(v)
        return out


@contextmanager
def environment(settings: TrackingSettings):
    """Put settings into os.environ for the duration of one training, then restore what was there."""
    new = settings.to_env()
    old = {k: os.environ.get(k) for k in _ENV.values()}
    for k in _ENV.values():
        os.environ.pop(k, None)
    os.environ.update(new)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
