"""com.ggvision.Health: hardware/ML/network/application metrics, Prometheus endpoint, IoT Core summary, watchdogs."""

from ..config.health import HealthConfig
from .collectors import DiskCollector, HostCollector, Prober, ProcessCollector, RssTrend
from .exporter import METRICS, Collected, HealthCollector, encode_summary, samples, summary
from .gpu import GpuSample, GpuSource, NvmlGpuSource
from .state import AppState
from .watchdog import Watchdogs

__all__ = ["METRICS", "AppState", "Collected", "DiskCollector", "GpuSample", "GpuSource", "HealthCollector",
           "HealthConfig", "HostCollector", "NvmlGpuSource", "ProcessCollector", "Prober", "RssTrend", "Watchdogs",
           "encode_summary", "samples", "summary"]
