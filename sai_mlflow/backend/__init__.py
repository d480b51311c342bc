"""The one seam to the tracking backend (MLflow): the write side and the read side (`read_*.py`)."""
