"""MLflow's system-metric collectors (the classes behind the UI's System metrics tab), for telemetry/system.py."""

from __future__ import annotations


def mlflow_collectors() -> list:
    """MLflow's default monitors: CPU/RAM, disk, network, and NVIDIA/AMD GPU when present."""
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
    from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
    from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitors = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
    gpu = SystemMetricsMonitor._initialize_gpu_monitor(None)  # uses no instance state
    return monitors + ([gpu] if gpu is not None else [])
