"""Getting tracked data into MLflow: where it goes, and shipping it off the training thread."""
