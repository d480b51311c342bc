"""The tracking settings of one training: the config's validated `tracking:` section plus where and what to log.

One schema (`config.TrackingSection`, extended here by the per-run fields) and one carrier: our own processes
hand the settings to Ultralytics' DDP workers and to probe children as ONE environment variable,
`SAI_MLFLOW_SETTINGS` (JSON), validated again on arrival. A bad value is refused with a message naming the
variable and the field, never dropped. A library user who trains `TrackedDetectionTrainer` directly may set
the single `SAI_MLFLOW_*` variables below instead (read through the same schema); the JSON one wins.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

from pydantic import ValidationError

from ..config import TrackingSection
from ..keys import ENV_RUN_ID
from ..redact import redact_text
from .address import resolve_experiment, resolve_tracking_uri

ENV_SETTINGS = "SAI_MLFLOW_SETTINGS"
MLFLOW_ENV = {"tracking_uri": "MLFLOW_TRACKING_URI", "experiment": "MLFLOW_EXPERIMENT_NAME"}  # MLflow's own
# the library path's single variables (documented ones: LOG_MODEL, FLUSH_TIMEOUT_S, RUN_ID); types come from the schema
LIBRARY_ENV = {
    **MLFLOW_ENV,
    "run_id": ENV_RUN_ID,
    "run_name": "SAI_MLFLOW_RUN_NAME",
    "stage": "SAI_MLFLOW_STAGE",
    "memory_interval_s": "SAI_MLFLOW_MEMORY_INTERVAL_S",
    "publish_interval_s": "SAI_MLFLOW_PUBLISH_INTERVAL_S",
    "final_flush_timeout_s": "SAI_MLFLOW_FLUSH_TIMEOUT_S",
    "log_model": "SAI_MLFLOW_LOG_MODEL",
    "artifact_location": "SAI_MLFLOW_ARTIFACT_LOCATION",
    "system_metrics": "SAI_MLFLOW_SYSTEM_METRICS",
    "system_metrics_interval_s": "SAI_MLFLOW_SYSTEM_METRICS_INTERVAL_S",
    "run_kind": "SAI_MLFLOW_RUN_KIND",
    "guard_stop_on": "SAI_MLFLOW_GUARD_STOP_ON",
    "policy_file": "SAI_MLFLOW_POLICY_FILE",
}


class SettingsError(ValueError):
    """Settings in the environment that cannot be used: one sentence naming the variable and the field."""


class TrackingSettings(TrackingSection):
    """The config's `tracking:` section (same fields, defaults and bounds) plus the run's own fields."""

    tracking_uri: str = ""
    experiment: str = ""
    run_id: str = ""
    run_name: str = ""
    stage: str = ""
    run_kind: str = "train"         # `probe` for a run of `sai-mlflow probe`
    guard_stop_on: str = ""         # reason codes, comma-separated: the live guard stops on these
    policy_file: str = ""           # the guard's policy (else configs/decision.yaml)

    @classmethod
    def from_config(cls, section: TrackingSection, **run) -> TrackingSettings:
        """A config's validated `tracking:` section plus the run's fields (tracking_uri=…, stage=…)."""
        return cls(**section.model_dump(), **run)

    @classmethod
    def from_env(cls) -> TrackingSettings:
        """`SAI_MLFLOW_SETTINGS` when set, else the library path's single variables; raises SettingsError."""
        raw = os.environ.get(ENV_SETTINGS)
        if raw:
            try:
                values = json.loads(raw)
                s = cls(**values) if isinstance(values, dict) else None
            except json.JSONDecodeError as e:
                raise SettingsError(f"{ENV_SETTINGS}: not JSON ({e.msg}); it is written by sai-mlflow, "
                                    "unset it to use the single SAI_MLFLOW_* variables") from None
            except ValidationError as e:
                raise SettingsError(f"{ENV_SETTINGS}: {_problems(e, lambda f: f)}") from None
            if s is None:
                raise SettingsError(f"{ENV_SETTINGS}: must be a JSON object of tracking settings")
        else:
            given = {f: os.environ[v] for f, v in LIBRARY_ENV.items() if os.environ.get(v, "") != ""}
            try:
                s = cls(**given)
            except ValidationError as e:
                raise SettingsError(_problems(e, lambda f: f"{LIBRARY_ENV.get(f, f)}={given.get(f)!r}")) from None
        s.tracking_uri = resolve_tracking_uri(s.tracking_uri or None)
        s.experiment = resolve_experiment(s.experiment or None)
        return s

    def run_name_for(self, ultralytics_name) -> str:
        """The run's name (these settings', else Ultralytics' `name`) through the redaction rule, on every path:
        the CLI, the library (SAI_MLFLOW_RUN_NAME), a DDP launcher, the spool, summary.md, the model's name."""
        return redact_text(self.run_name or str(ultralytics_name or ""))

    def to_json(self) -> str:
        return self.model_dump_json()


def _problems(e: ValidationError, name) -> str:
    parts = []
    for err in e.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        parts.append(f"{name(field)}: {err['msg']} (tracking.{field})" if field in TrackingSection.model_fields
                     else f"{name(field)}: {err['msg']}")
    return "; ".join(parts)


def hand_on(settings: TrackingSettings) -> None:
    """Put these settings where the next process (a DDP worker) reads them: the one variable."""
    os.environ[ENV_SETTINGS] = settings.to_json()


@contextmanager
def restored_settings():
    """The one variable as it was before (the DDP launcher hands a run id on; the next training must not
    attach to it)."""
    old = os.environ.get(ENV_SETTINGS)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_SETTINGS, None)
        else:
            os.environ[ENV_SETTINGS] = old


@contextmanager
def environment(settings: TrackingSettings):
    """Put settings into os.environ for the duration of one training (the one variable, and MLflow's own
    tracking URI and experiment for MLflow's code in the workers), then restore what was there."""
    names = [ENV_SETTINGS, *MLFLOW_ENV.values()]
    old = {k: os.environ.get(k) for k in names}
    hand_on(settings)
    for field, var in MLFLOW_ENV.items():
        value = getattr(settings, field)
        if value:
            os.environ[var] = value
        else:
            os.environ.pop(var, None)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
