"""Datasets: resolving data.yaml, synthetic fire/smoke data, audit and digest, /dev/shm staging."""
