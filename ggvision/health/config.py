"""com.ggvision.Health configuration: parsed and range-checked; unknown keys are refused."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from ..component.settings import boolean as _bool
from ..component.settings import number as _number
from ..component.settings import validator
from ..component.settings import whole_number as _int

DEFAULT_INFERENCE = "com.ggvision.Inference"


def parse_endpoint(text: Any, where: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' → (host, port)."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(f"{where}: expected 'host:port', got {text!r}")
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or any(c.isspace() for c in host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{where}: expected 'host:port' with a port from 1 to 65535, got {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class HealthConfig:
    period_s: float = 5.0
    summary_period_s: float = 60.0
    prom_port: int = 9108  # 0: no Prometheus endpoint
    prom_bind: str = "127.0.0.1"
    data_path: str = ""  # "": the parent of the component's work folder
    probes: tuple[str, ...] = ()
    probe_timeout_s: float = 2.0
    probe_window: int = 20
    leak_window: int = 60
    hung_after_s: float = 30.0
    camera_silent_s: float = 30.0
    disk_min_free_ratio: float = 0.1
    mem_min_available_ratio: float = 0.1
    inference_component: str = DEFAULT_INFERENCE
    restart_inference: bool = True
    gpu: bool = True


KNOWN = {"periodS", "summaryPeriodS", "promPort", "promBind", "dataPath", "probes", "probeTimeoutS", "probeWindow",
         "leakWindow", "hungAfterS", "cameraSilentS", "diskMinFreeRatio", "memMinAvailableRatio",
         "inferenceComponent", "restartInference", "gpu", "accessControl"}


def parse_config(cfg: dict[str, Any]) -> HealthConfig:
    """The configuration as a HealthConfig; ValueError naming the key on bad input."""
    unknown = sorted(set(cfg) - KNOWN)
    if unknown:
        raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
    bind = cfg.get("promBind", "127.0.0.1")
    if not isinstance(bind, str) or not bind:
        raise ValueError(f"promBind: expected an IP address, got {bind!r}")
    try:
        ipaddress.ip_address(bind)
    except ValueError:
        raise ValueError(f"promBind: expected an IP address (e.g. 127.0.0.1 or 0.0.0.0), got {bind!r}") from None
    data_path = cfg.get("dataPath", "")
    if not isinstance(data_path, str) or (data_path and not data_path.startswith("/")):
        raise ValueError(f"dataPath: expected an absolute path (or empty for the default), got {data_path!r}")
    probes = cfg.get("probes", [])
    if not isinstance(probes, list) or len(probes) > 32:
        raise ValueError("probes: expected a list of at most 32 'host:port' strings")
    for i, p in enumerate(probes):
        parse_endpoint(p, f"probes[{i}]")
    if len(set(probes)) != len(probes):
        raise ValueError("probes: duplicate endpoints")
    inference = cfg.get("inferenceComponent", DEFAULT_INFERENCE)
    if not isinstance(inference, str) or not inference or len(inference) > 128:
        raise ValueError(f"inferenceComponent: expected a component name, got {inference!r}")
    return HealthConfig(
        period_s=_number(cfg, "periodS", 5, 0.2, 3600),
        summary_period_s=_number(cfg, "summaryPeriodS", 60, 1, 86400),
        prom_port=_int(cfg, "promPort", 9108, 0, 65535),
        prom_bind=bind,
        data_path=data_path,
        probes=tuple(probes),
        probe_timeout_s=_number(cfg, "probeTimeoutS", 2, 0.05, 30),
        probe_window=_int(cfg, "probeWindow", 20, 1, 1000),
        leak_window=_int(cfg, "leakWindow", 60, 3, 10000),
        hung_after_s=_number(cfg, "hungAfterS", 30, 1, 86400),
        camera_silent_s=_number(cfg, "cameraSilentS", 30, 1, 86400),
        disk_min_free_ratio=_number(cfg, "diskMinFreeRatio", 0.1, 0, 1),
        mem_min_available_ratio=_number(cfg, "memMinAvailableRatio", 0.1, 0, 1),
        inference_component=inference,
        restart_inference=_bool(cfg, "restartInference", True),
        gpu=_bool(cfg, "gpu", True),
    )


validate = validator(parse_config)  # for ComponentApp: the reason a configuration is refused, or None
