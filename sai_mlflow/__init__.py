"""sai_mlflow: an experiment-tracking integrated trainer for Ultralytics YOLO."""

__version__ = "0.1.0"
