"""Log a run's Ultralytics weights as an MLflow pyfunc model, and find a run's model again.

`log_detector_model(client_or_uri, run_id, weights_path, names, imgsz)` works on a run that is
still RUNNING (the end of a tracked run) or already ended; it uses an explicit MlflowClient, never
the fluent globals, and leaves the run's status alone. It returns `models:/<model_id>` on a store
with logged models (MLflow 3), else `runs:/<run_id>/model`: on a 2.x server the same pyfunc model is
logged as the run's artifacts under `model/` (said once per process, see mlflow_server.py).
"""

from __future__ import annotations

import base64
import io
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from .mlflow_pyfunc import DEFAULT_PARAMS, INPUT_COLUMN, OUTPUT_TYPES, WEIGHTS_ARTIFACT
from .mlflow_server import has_logged_models, note_once

MODEL_NAME = "model"  # the logged model's name within its run (runs:/<id>/model resolves to it)
MODEL_TYPE = "ultralytics-detector"
CODE_FILE = Path(__file__).resolve().parent / "mlflow_pyfunc.py"
REQUIREMENTS = ("mlflow", "ultralytics", "torch", "torchvision", "pandas", "pillow", "numpy")


class ModelNotFound(LookupError):
    """The run has no logged model."""


def _client(client_or_uri):
    if isinstance(client_or_uri, str) or client_or_uri is None:
        from ..tracking.address import resolve_tracking_uri
        from .mlflow_store import make_client

        return make_client(resolve_tracking_uri(client_or_uri))
    return client_or_uri


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", INPUT_COLUMN)]),
        outputs=Schema([ColSpec(t, c) for c, t in OUTPUT_TYPES.items()]),
        params=ParamSchema([ParamSpec("conf", "double", DEFAULT_PARAMS["conf"]),
                            ParamSpec("iou", "double", DEFAULT_PARAMS["iou"]),
                            ParamSpec("max_det", "long", DEFAULT_PARAMS["max_det"])]),
    )


def example_image_b64(width: int = 64, height: int = 48) -> str:
    """A small synthetic fire/smoke JPEG, base64-encoded: the model's input example."""
    from ..data.synthetic import scene_image

    buf = io.BytesIO()
    scene_image(width, height).save(buf, format="JPEG", quality=85)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def input_example():
    import pandas as pd

    return pd.DataFrame({INPUT_COLUMN: [example_image_b64()]})


def pip_requirements() -> list[str]:
    out = []
    for dist in REQUIREMENTS:
        try:
            out.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(dist)
    return out


def _names(names: Any) -> dict[str, str]:
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    return {str(int(k)): str(v) for k, v in dict(names).items()}


def model_name_for(run_name: str | None) -> str:
    """The logged model's name: the run's name (two runs' models are then told apart in the UI)."""
    import re

    cleaned = re.sub(r"[^\w.\-]+", "-", run_name or "").strip("-.")[:100]
    return cleaned or MODEL_NAME


def log_detector_model(client_or_uri, run_id: str, weights_path: str | Path, names, imgsz: int, *,
                       conf: float = DEFAULT_PARAMS["conf"], device: str | None = None,
                       name: str = MODEL_NAME, step: int = 0, metrics: dict[str, float] | None = None,
                       dataset: tuple[str, str] | None = None) -> str:
    """Log `weights_path` as a pyfunc model of run `run_id`; return `models:/<model_id>`.

    `names`: class id -> name (dict or list, e.g. `trainer.data['names']`); `imgsz`: inference size
    (an int; a [w, h] list takes its first value, as Ultralytics trains square). `metrics` (the run's
    summary) and `dataset` ((name, digest) it trained on) are attached to the logged model, so its UI
    page shows them instead of "No metrics recorded" and "Datasets used: None".
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    weights = Path(weights_path)
    if not weights.is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")
    if isinstance(imgsz, (list, tuple)):
        imgsz = imgsz[0]
    client = _client(client_or_uri)
    run = client.get_run(run_id)
    config = {"names": _names(names), "imgsz": int(imgsz), "conf": float(conf), "device": device,
              "iou": DEFAULT_PARAMS["iou"], "max_det": DEFAULT_PARAMS["max_det"]}
    if not has_logged_models(client):
        return _log_as_run_artifacts(client, run_id, weights, config)
    logged = client.create_logged_model(run.info.experiment_id, name=name, source_run_id=run_id,
                                        model_type=MODEL_TYPE, tags={"sai.weights": weights.name},
                                        params={"imgsz": str(int(imgsz)), "classes": str(len(config["names"]))})
    try:
        with tempfile.TemporaryDirectory(prefix="sai_model_") as tmp:
            local = Path(tmp) / "model"
            _save(local, weights, config, Model(artifact_path=name, run_id=run_id, model_id=logged.model_id))
            client.log_model_artifacts(logged.model_id, str(local))
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        try:
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        finally:
            raise
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
    if metrics:
        _log_model_metrics(client, run_id, logged.model_id, metrics, dataset, step)
    return f"models:/{logged.model_id}"


def _save(local: Path, weights: Path, config: dict, mlflow_model) -> None:
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(
        path=str(local), python_model=str(CODE_FILE), artifacts={WEIGHTS_ARTIFACT: str(weights)},
        model_config=config, signature=signature(), input_example=input_example(),
        pip_requirements=pip_requirements(), mlflow_model=mlflow_model,
        metadata={"sai_mlflow": {"task": "detect", "source_run_id": mlflow_model.run_id}},
    )


def _log_as_run_artifacts(client, run_id: str, weights: Path, config: dict) -> str:
    """A server without logged models (MLflow 2.x): the same pyfunc model, as the run's `model/` artifacts."""
    from mlflow.models import Model

    note_once(client, f"the model is logged as run artifacts under {MODEL_NAME}/ and registered from "
                      f"runs:/<run_id>/{MODEL_NAME}")
    with tempfile.TemporaryDirectory(prefix="sai_model_") as tmp:
        local = Path(tmp) / MODEL_NAME
        _save(local, weights, config, Model(artifact_path=MODEL_NAME, run_id=run_id))
        client.log_artifacts(run_id, str(local), MODEL_NAME)
    return f"runs:/{run_id}/{MODEL_NAME}"


def _log_model_metrics(client, run_id: str, model_id: str, metrics: dict[str, float],
                       dataset: tuple[str, str] | None, step: int) -> None:
    """MLflow 3 logged-model metrics: run metrics that also carry the model id (and dataset)."""
    import math
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    name, digest = dataset if dataset else (None, None)
    client.log_batch(run_id, metrics=[
        Metric(k, float(v), ts, step, model_id=model_id, dataset_name=name, dataset_digest=digest)
        for k, v in metrics.items() if v is not None and math.isfinite(float(v))])


def find_run_model(client, run) -> str:
    """The model uri of `run`'s newest READY logged model (else a `model/` artifact dir, else the
    `weights/best.pt` Ultralytics' own callback uploads); ModelNotFound."""
    from mlflow.entities import LoggedModelStatus

    run_id = run.info.run_id
    candidates = []
    outputs = getattr(run, "outputs", None)
    for out in (getattr(outputs, "model_outputs", None) or []):
        try:
            candidates.append(client.get_logged_model(out.model_id))
        except Exception:
            continue
    if not candidates and has_logged_models(client):
        token = None
        while True:
            page = client.search_logged_models([run.info.experiment_id], page_token=token)
            candidates.extend(m for m in page if m.source_run_id == run_id)
            token = page.token
            if not token:
                break
    ready = [m for m in candidates if m.status in (LoggedModelStatus.READY, "READY")]
    if ready:
        newest = max(ready, key=lambda m: m.creation_timestamp or 0)
        return f"models:/{newest.model_id}"
    try:
        if any(Path(f.path).name == "MLmodel" for f in _run_artifacts(client, run, MODEL_NAME)):
            return f"runs:/{run_id}/{MODEL_NAME}"
        # a run logged by Ultralytics' own MLflow callback: its model is the best.pt it uploaded
        from ..importers.ultralytics_mapping import BEST_WEIGHTS

        folder, _, name = BEST_WEIGHTS.rpartition("/")
        if any(Path(f.path).name == name for f in _run_artifacts(client, run, folder)):
            return f"runs:/{run_id}/{BEST_WEIGHTS}"
    except Exception:
        pass
    raise ModelNotFound(f"run {run_id} has no logged model (log one with sai_mlflow.model.log_detector_model, "
                        f"or train with tracking.log_model on)")


def _run_artifacts(client, run, path: str) -> list:
    """The run's own artifacts under `path`. (MlflowClient.list_artifacts with a path also searches logged
    models, which a 2.x server answers with a 404.)"""
    from mlflow.artifacts import list_artifacts

    return list_artifacts(artifact_uri=run.info.artifact_uri.rstrip("/") + "/" + path,
                          tracking_uri=client.tracking_uri)


def registry_source(client, model_uri: str) -> tuple[str, str | None]:
    """(storage location, logged model id or None) for registering `model_uri` with an explicit client.

    MLflow's SQL registry store resolves a `models:/<id>` source through a client on the *global*
    tracking URI, not the caller's; handing it the artifact location avoids that.
    """
    if model_uri.startswith("models:/m-"):
        model_id = model_uri[len("models:/"):]
        return client.get_logged_model(model_id).artifact_location, model_id
    if model_uri.startswith("runs:/"):
        run_id, _, path = model_uri[len("runs:/"):].partition("/")
        return client.get_run(run_id).info.artifact_uri.rstrip("/") + "/" + path, None
    return model_uri, None
