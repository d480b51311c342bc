"""The pyfunc model's input/output contract, under its old name (the code is backend/mlflow_pyfunc.py)."""

from ..backend.mlflow_pyfunc import (
                                     DEFAULT_PARAMS,
                                     INPUT_COLUMN,
                                     OUTPUT_COLUMNS,
                                     OUTPUT_TYPES,
                                     WEIGHTS_ARTIFACT,
                                     ImageInputError,
                                     YoloDetectorModel,
                                     decode_image,
                                     detections_frame,
                                     empty_output,
)

__all__ = ["DEFAULT_PARAMS", "INPUT_COLUMN", "OUTPUT_COLUMNS", "OUTPUT_TYPES", "WEIGHTS_ARTIFACT", "ImageInputError",
           "YoloDetectorModel", "decode_image", "detections_frame", "empty_output"]
