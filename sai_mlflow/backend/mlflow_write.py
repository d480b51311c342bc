"""Writing into one MLflow run: what the spool replays (live upload and `sync` alike).

Over HTTP the batch and the status go as single REST requests with no client-side retries (the spool's
uploader backs off and resends; MLflow's own client would retry for minutes); a local store takes the
client's calls. `http_status` reads what an MLflow error means for the spool (docs/durability.md).
"""

from __future__ import annotations

import math
import re

# the text MLflow gives an answer whose body is not JSON (mlflow/utils/rest_utils.py, verify_rest_response)
_STATUS_TEXT = re.compile(r"API request to endpoint \S+ failed with error code (\d{3}) ")


class RunWriter:
    """Sends one run's records to MLflow: a batch, an artifact, the model, the final status."""

    def __init__(self, client, run_id: str, timeout_s: float = 10.0) -> None:
        self.client = client
        self.run_id = run_id
        self.timeout_s = timeout_s
        self.http = str(client.tracking_uri).startswith(("http://", "https://"))
        self.missing: list[str] = []  # artifact files gone from disk before they were uploaded

    def _post(self, endpoint: str, body: dict) -> None:
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        creds = self.client._tracking_client.store.get_host_creds()
        resp = http_request(creds, endpoint, "POST", max_retries=0, backoff_factor=0,
                            timeout=self.timeout_s, json=body)
        try:
            verify_rest_response(resp, endpoint)
        except Exception as e:
            # MLflow's error keeps only its own error code: an answer that is not MLflow's (a proxy's 413,
            # a JSON 422) becomes INTERNAL_ERROR (500). Keep the response, as requests' HTTPError does.
            e.response = resp
            raise

    def log_batch(self, metrics: list, params: dict, tags: dict) -> None:
        """metrics: [key, value, timestamp ms, step] lists; params and tags: text by key."""
        if self.http:
            self._post("/api/2.0/mlflow/runs/log-batch", {
                "run_id": self.run_id,
                "metrics": [{"key": k, "value": _json_float(v), "timestamp": ts, "step": s} for k, v, ts, s in metrics],
                "params": [{"key": k, "value": v} for k, v in params.items()],
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            })
            return
        from mlflow.entities import Metric, Param, RunTag

        self.client.log_batch(self.run_id, metrics=[Metric(k, v, ts, s) for k, v, ts, s in metrics],
                              params=[Param(k, v) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])

    def probe(self) -> None:
        from ..tracking.address import probe

        probe(self.client.tracking_uri, timeout_s=min(3.0, self.timeout_s))

    def log_artifact(self, path: str, artifact_path: str | None) -> None:
        self.probe()  # the artifact client retries for minutes: only start when the server answers
        self.client.log_artifact(self.run_id, path, artifact_path)

    def log_model(self, path: str, names: dict, imgsz: int) -> None:
        from .mlflow_model import log_detector_model

        self.probe()
        log_detector_model(self.client, self.run_id, path, names, imgsz)

    def terminate(self, status: str, end_ms: int | None) -> None:
        if self.http:
            body = {"run_id": self.run_id, "run_uuid": self.run_id, "status": status}
            if end_ms:
                body["end_time"] = int(end_ms)
            self._post("/api/2.0/mlflow/runs/update", body)
        else:
            self.client.set_terminated(self.run_id, status, end_time=end_ms)


def _json_float(v: float):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def http_status(e: BaseException) -> int | None:
    """The HTTP status an MLflow error stands for (REST and local stores alike), else None (not MLflow's).

    The answer's own status comes first: MLflow maps any status it has no error code for (413, 422, ...) to
    INTERNAL_ERROR, which reads as 500, an outage. In order: the response `RunWriter._post` keeps on the
    error; the status in MLflow's text for a non-JSON answer ("failed with error code 413"); MLflow's error
    code (a local store, or a call made through MLflow's client with a JSON answer).
    """
    try:
        from mlflow.exceptions import MlflowException
    except Exception:
        return None
    if not isinstance(e, MlflowException):
        return None
    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(status, int) and 400 <= status <= 599:
        return status
    m = _STATUS_TEXT.match(str(getattr(e, "message", "")))
    if m:
        return int(m.group(1))
    try:
        return int(e.get_http_status_code())
    except Exception:
        return None


def is_store_error(e: BaseException) -> bool:
    """The store answered with an error (MLflow's exception), as opposed to a bug or an outage of this process."""
    try:
        from mlflow.exceptions import MlflowException
    except Exception:
        return False
    return isinstance(e, MlflowException)


def log_dataset(client, run_id: str, name: str, digest: str, source: str, context: str = "train") -> None:
    """The run's training dataset as an MLflow dataset input (the UI's "Datasets used")."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    client.log_inputs(run_id, datasets=[DatasetInput(Dataset(name=name, digest=digest, source_type="local",
                                                             source=source),
                                                     tags=[InputTag("mlflow.data.context", context)])])


def log_records(client, run_id: str, metrics=(), params: dict | None = None, tags: dict | None = None) -> int:
    """Plain records through the client (its own retries), cut into requests MLflow accepts; returns the call
    count. metrics: (key, value, timestamp ms, step); params and tags: text by key."""
    from mlflow.entities import Metric, Param, RunTag

    from ..tracking.batching import log_batch_chunked

    return log_batch_chunked(client, run_id, metrics=[Metric(k, v, ts, s) for k, v, ts, s in metrics],
                             params=[Param(k, v) for k, v in (params or {}).items()],
                             tags=[RunTag(k, v) for k, v in (tags or {}).items()])
