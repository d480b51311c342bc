"""`sai-mlflow probe`: short real trainings at a few batch sizes, before the long run.

plan.py (pure: batch lists, --auto's next batch, subset sizes, the full run's projection),
subset.py (the probe's slice of the dataset), child.py (one probe, in a fresh process),
session.py (the parent run, the probes, the decision), report.py (table, JSON, markdown, plot).
"""
