"""An MLflow pyfunc model around Ultralytics detection weights: load it, predict, serve it.

Logged as *model code* (MLflow 3's "models from code"): this very file is copied into the model,
so loading or serving it needs mlflow, ultralytics (torch, OpenCV) and pandas, but not sai_mlflow.
Keep this module free of `sai_mlflow` imports for that reason.

Model
- artifacts: `weights` (the Ultralytics .pt file, normally the run's best.pt)
- model config: `names` (class id -> name), `imgsz` (inference size), `conf`, `iou`, `max_det`
  defaults, `device` (None = Ultralytics' choice: first GPU if any, else CPU)

Input: a DataFrame with a column `image`, one image per row, each a file path (readable where
the model runs) or the image file's bytes base64-encoded (a `data:image/...;base64,` prefix is
allowed). Params (optional, per request): `conf`, `iou`, `max_det`.

Output: a DataFrame with one row per detection, columns `image_index` (row of the input),
`class_id`, `class_name`, `confidence`, `x1`, `y1`, `x2`, `y2` (pixels of the original image,
top-left origin). An image without detections contributes no row.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

INPUT_COLUMN = "image"
OUTPUT_COLUMNS = ("image_index", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2")
OUTPUT_TYPES = {"image_index": "long", "class_id": "long", "class_name": "string", "confidence": "double",
                "x1": "double", "y1": "double", "x2": "double", "y2": "double"}
DEFAULT_PARAMS = {"conf": 0.25, "iou": 0.7, "max_det": 300}
WEIGHTS_ARTIFACT = "weights"
PREDICT_CHUNK = 16  # images handed to Ultralytics at once


class ImageInputError(ValueError):
    """An input row that is neither a readable image file nor base64-encoded image bytes."""


def decode_image(value: Any, row: int):
    """One `image` cell -> a BGR uint8 array (what Ultralytics takes). Paths are tried first, then base64.

    OpenCV decodes: Pillow's `Image.open` is patched by Ultralytics to pip-install a HEIF plugin
    on an unidentified image, which a serving process must never do.
    """
    import cv2
    import numpy as np

    data: bytes | None = None
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("data:") and "," in text:
            text = text.split(",", 1)[1]
        elif len(text) < 4096 and os.path.isfile(text):
            try:
                with open(text, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise ImageInputError(f"row {row}: cannot read {text!r} ({e})") from None
            text = None
        if text is not None:
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                shown = text if len(text) <= 60 else text[:57] + "..."
                raise ImageInputError(
                    f"row {row}: {shown!r} is neither an existing file nor base64-encoded image bytes") from None
    else:
        raise ImageInputError(f"row {row}: expected a path or base64 string, got {type(value).__name__}")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise ImageInputError(f"row {row}: the bytes ({len(data or b'')}) are not an image OpenCV can decode")
    return img


def empty_output() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=("int64" if t == "long" else "float64" if t == "double" else "object"))
                         for c, t in OUTPUT_TYPES.items()})


def detections_frame(results, names: dict[int, str], offset: int = 0):
    """Ultralytics Results (one per image) -> the output DataFrame."""
    import numpy as np

    parts = []
    for i, r in enumerate(results):
        boxes = r.boxes
        if boxes is None or len(boxes) == 0:
            continue
        xyxy = boxes.xyxy.cpu().numpy().astype("float64")
        cls = boxes.cls.cpu().numpy().astype("int64")
        conf = boxes.conf.cpu().numpy().astype("float64")
        parts.append(pd.DataFrame({
            "image_index": np.full(len(cls), offset + i, dtype="int64"),
            "class_id": cls,
            "class_name": [names.get(int(c), str(int(c))) for c in cls],
            "confidence": conf,
            "x1": xyxy[:, 0], "y1": xyxy[:, 1], "x2": xyxy[:, 2], "y2": xyxy[:, 3],
        }))
    if not parts:
        return empty_output()
    return pd.concat(parts, ignore_index=True)[list(OUTPUT_COLUMNS)]


class YoloDetectorModel(PythonModel):
    """pyfunc wrapper: DataFrame of images in, one row per detection out."""

    def load_context(self, context) -> None:
        from ultralytics import YOLO

        cfg = dict(context.model_config or {})
        self.names = {int(k): str(v) for k, v in (cfg.get("names") or {}).items()}
        self.imgsz = int(cfg.get("imgsz", 640))
        self.device = cfg.get("device")
        self.defaults = {k: cfg.get(k, v) for k, v in DEFAULT_PARAMS.items()}
        self.model = YOLO(context.artifacts[WEIGHTS_ARTIFACT], task="detect")
        if not self.names:
            self.names = {int(k): str(v) for k, v in self.model.names.items()}

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException

        if isinstance(model_input, dict):
            model_input = pd.DataFrame(model_input)
        if not isinstance(model_input, pd.DataFrame) or INPUT_COLUMN not in model_input.columns:
            raise MlflowException.invalid_parameter_value(
                f"input must be a DataFrame with a column '{INPUT_COLUMN}' (file paths or base64-encoded images)")
        p = {**self.defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
        values = list(model_input[INPUT_COLUMN])
        frames = []
        for start in range(0, len(values), PREDICT_CHUNK):
            try:
                images = [decode_image(v, start + j) for j, v in enumerate(values[start:start + PREDICT_CHUNK])]
            except ImageInputError as e:
                raise MlflowException.invalid_parameter_value(str(e)) from None
            results = self.model.predict(images, imgsz=self.imgsz, conf=float(p["conf"]), iou=float(p["iou"]),
                                         max_det=int(p["max_det"]), device=self.device, verbose=False)
            frames.append(detections_frame(results, self.names, offset=start))
        if not frames:
            return empty_output()
        out = pd.concat(frames, ignore_index=True)
        return out if len(out) else empty_output()


# MLflow runs this file as the model's code under a generated module name; importing it as part of
# the package must not register a model.
if __name__ != "sai_mlflow.backend.mlflow_pyfunc":
    mlflow.models.set_model(YoloDetectorModel())
