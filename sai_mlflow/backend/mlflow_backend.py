"""MLflow as the tracking backend (backend/__init__.py is the interface): runs, writing, dataset, model."""

from __future__ import annotations

from .interface import RunRef
from .mlflow_write import RunWriter, http_status


class MlflowBackend:
    def __init__(self, uri: str, client=None) -> None:
        from .mlflow_store import make_client

        self.uri = uri
        self.client = client if client is not None else make_client(uri)

    @classmethod
    def of(cls, client) -> MlflowBackend:
        """Around an MlflowClient that already exists."""
        return cls(str(client.tracking_uri), client)

    # --- runs ---
    def experiment_id(self, name: str, artifact_location: str | None = None) -> str:
        from .mlflow_store import get_or_create_experiment

        return get_or_create_experiment(self.client, name, artifact_location)

    def create_run(self, experiment: str, run_name: str | None, tags: dict[str, str],
                   artifact_location: str | None = None, start_ms: int | None = None) -> RunRef:
        exp_id = self.experiment_id(experiment, artifact_location)
        run = self.client.create_run(exp_id, start_time=start_ms, tags=tags, run_name=run_name or None)
        return RunRef(run.info.run_id, exp_id)

    def get_run(self, run_id: str) -> RunRef | None:
        try:
            run = self.client.get_run(run_id)
        except Exception as e:
            if http_status(e) == 404:
                return None
            raise
        return RunRef(run_id, run.info.experiment_id, run.info.status, run.info.lifecycle_stage == "deleted",
                      dict(run.data.params), dict(run.data.tags))

    def find_run(self, experiment: str, tag: str, value: str) -> str | None:
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        found = self.client.search_runs([exp.experiment_id], max_results=1, filter_string=f"tags.`{tag}` = '{value}'")
        return found[0].info.run_id if found else None

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def next_steps(self, run_id: str, keys: tuple[str, ...]) -> tuple[int, ...]:
        def next_step(key: str) -> int:
            return max((m.step for m in self.client.get_metric_history(run_id, key)), default=-1) + 1

        return tuple(next_step(k) for k in keys)

    # --- writing ---
    def writer(self, run_id: str) -> RunWriter:
        return RunWriter(self.client, run_id)

    def log_dataset(self, run_id: str, name: str, digest: str, source: str) -> None:
        from .mlflow_write import log_dataset

        log_dataset(self.client, run_id, name, digest, source)

    def log_model(self, run_id: str, weights: str, names, imgsz: int, **details) -> str:
        from .mlflow_model import log_detector_model

        return log_detector_model(self.client, run_id, weights, names, imgsz, **details)

    def find_model(self, run_id: str) -> str:
        from .mlflow_model import find_run_model

        return find_run_model(self.client, self.client.get_run(run_id))
