"""The detector model, as users call it: log a run's weights as a model, find a run's model again.

The work is the tracking backend's (`sai_mlflow/backend/mlflow_model.py`: a pyfunc model, a logged model on
MLflow 3, run artifacts under `model/` on a 2.x server); this name stays the public one (docs/registry.md).
"""

from ..backend.mlflow_model import (
                                    MODEL_NAME,
                                    MODEL_TYPE,
                                    ModelNotFound,
                                    example_image_b64,
                                    find_run_model,
                                    input_example,
                                    log_detector_model,
                                    model_name_for,
                                    pip_requirements,
                                    registry_source,
                                    signature,
)

__all__ = ["MODEL_NAME", "MODEL_TYPE", "ModelNotFound", "example_image_b64", "find_run_model", "input_example",
           "log_detector_model", "model_name_for", "pip_requirements", "registry_source", "signature"]
