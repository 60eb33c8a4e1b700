"""NVIDIA GPUs through NVML, behind a small interface so tests can inject a fake NVML.

`GpuSource.sample()` returns one GpuSample per GPU; a value NVML cannot give for a device (e.g.
encoder utilization on a GPU without NVENC, power on some Jetsons) is None and its metric is
left out. No NVML library (CPU-only box) → `NvmlGpuSource.open()` returns None.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("ggvision.health.gpu")


@dataclass(frozen=True)
class GpuSample:
    index: str  # the Prometheus `gpu` label
    name: str
    utilization_ratio: float | None = None
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    temperature_celsius: float | None = None
    power_watts: float | None = None
    encoder_utilization_ratio: float | None = None
    decoder_utilization_ratio: float | None = None


class GpuSource(Protocol):
    def sample(self) -> list[GpuSample]: ...

    def close(self) -> None: ...


class NvmlGpuSource:
    """GPU metrics from an NVML binding: the `pynvml` module (nvidia-ml-py) or a fake with its API."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        nvml.nvmlInit()
        self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        self.names = []
        for h in self.handles:
            name = nvml.nvmlDeviceGetName(h)
            self.names.append(name.decode() if isinstance(name, bytes) else str(name))
        self._failed: set[tuple[int, str]] = set()  # (gpu, what) that raised: not asked again

    @classmethod
    def open(cls, nvml: Any = None) -> NvmlGpuSource | None:
        """The real NVML when present (None when the library or a driver is missing, or no GPU)."""
        try:
            if nvml is None:
                import pynvml as nvml
            src = cls(nvml)
        except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError...
            log.info("no NVIDIA GPU metrics: %s", e)
            return None
        if not src.handles:
            src.close()
            return None
        log.info("NVML: %d GPU(s): %s", len(src.handles), ", ".join(src.names))
        return src

    def _get(self, i: int, what: str, fn: Any) -> Any:
        if (i, what) in self._failed:
            return None
        try:
            return fn()
        except Exception as e:  # NVMLError_NotSupported and friends: this device lacks it
            self._failed.add((i, what))
            log.info("GPU %d: no %s (%s)", i, what, e)
            return None

    def sample(self) -> list[GpuSample]:
        n = self.nvml
        out = []
        for i, h in enumerate(self.handles):
            util = self._get(i, "utilization", lambda h=h: n.nvmlDeviceGetUtilizationRates(h))
            mem = self._get(i, "memory", lambda h=h: n.nvmlDeviceGetMemoryInfo(h))
            temp = self._get(i, "temperature", lambda h=h: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU))
            power_mw = self._get(i, "power", lambda h=h: n.nvmlDeviceGetPowerUsage(h))
            enc = self._get(i, "encoder utilization", lambda h=h: n.nvmlDeviceGetEncoderUtilization(h))
            dec = self._get(i, "decoder utilization", lambda h=h: n.nvmlDeviceGetDecoderUtilization(h))
            out.append(GpuSample(
                index=str(i), name=self.names[i],
                utilization_ratio=util.gpu / 100.0 if util is not None else None,
                memory_used_bytes=float(mem.used) if mem is not None else None,
                memory_total_bytes=float(mem.total) if mem is not None else None,
                temperature_celsius=float(temp) if temp is not None else None,
                power_watts=power_mw / 1000.0 if power_mw is not None else None,
                # Encoder/decoder utilization come as [percent, sampling period in µs].
                encoder_utilization_ratio=enc[0] / 100.0 if enc is not None else None,
                decoder_utilization_ratio=dec[0] / 100.0 if dec is not None else None,
            ))
        return out

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass
