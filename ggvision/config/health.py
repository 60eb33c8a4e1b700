"""com.ggvision.Health's configuration as a model: every key, its range and its default (the recipe's).

`parse(HealthConfig, cfg)` gives the whole configuration or a ConfigError naming the key path; the component
passes `validator(HealthConfig)` to ComponentApp, so a deployment with a bad value is refused with that text:
- periods, windows and thresholds are range-checked numbers (numeric strings accepted);
- `promBind` is an IP address, `dataPath` absolute or empty, `probes` at most 32 distinct 'host:port';
- `cloudwatch.namespace` is a CloudWatch namespace PutMetricData accepts, `cloudwatch.topic` a local topic;
- unknown keys are refused (`accessControl` travels along and is ignored).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from topicmatch import valid_publish_topic

from ..contract import topics
from .base import ComponentConfig, ConfigModel, Flag, number, whole

DEFAULT_INFERENCE = "com.ggvision.Inference"
MAX_PROBES = 32


def parse_endpoint(text: Any) -> tuple[str, int]:
    """'host:port' or '[v6]:port' → (host, port); ValueError otherwise."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(f"expected 'host:port', got {text!r}")
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or any(c.isspace() for c in host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected 'host:port' with a port from 1 to 65535, got {text!r}")
    return host, int(port)


def _endpoint(v: Any) -> str:
    parse_endpoint(v)
    return v


def _probe_list(v: Any) -> Any:
    if not isinstance(v, list | tuple) or len(v) > MAX_PROBES:
        raise ValueError(f"expected a list of at most {MAX_PROBES} 'host:port' strings")
    return v


def _distinct(v: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(v)) != len(v):
        raise ValueError("duplicate endpoints")
    return v


def _ip_address(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected an IP address, got {v!r}")
    try:
        ipaddress.ip_address(v)
    except ValueError:
        raise ValueError(f"expected an IP address (e.g. 127.0.0.1 or 0.0.0.0), got {v!r}") from None
    return v


def _absolute_or_empty(v: Any) -> str:
    if not isinstance(v, str) or (v and not v.startswith("/")):
        raise ValueError(f"expected an absolute path (or empty for the default), got {v!r}")
    return v


def _component_name(v: Any) -> str:
    if not isinstance(v, str) or not v or len(v) > 128:
        raise ValueError(f"expected a component name, got {v!r}")
    return v


Endpoint = Annotated[str, BeforeValidator(_endpoint)]
"""'host:port' or '[v6]:port', the port from 1 to 65535."""


def _namespace(v: Any) -> str:
    """PutMetricData's Namespace: 1-255 characters, pattern `[^:].*`, never the reserved `AWS/` prefix (CloudWatch
    API reference, PutMetricData; developer guide "CloudWatch metrics", Input data)."""
    if not isinstance(v, str) or not 1 <= len(v) <= 255 or v.startswith(":") or not v.isascii():
        raise ValueError(f"expected a CloudWatch namespace (1 to 255 ASCII characters, not starting with ':'), "
                         f"got {v!r}")
    if v.startswith("AWS/"):
        raise ValueError(f"namespaces starting with 'AWS/' are reserved for AWS services, got {v!r}")
    return v


def _publish_topic(v: Any) -> str:
    reason = valid_publish_topic(v) if isinstance(v, str) else "not a string"
    if reason:
        raise ValueError(f"expected a local topic to publish on: {reason}")
    return v


class CloudWatchConfig(ConfigModel):
    """CloudWatch metrics through the aws.greengrass.Cloudwatch component (its input topic)."""

    enabled: Flag = True
    namespace: Annotated[str, BeforeValidator(_namespace)] = "ggvision"
    # The component's InputTopic; the recipe's com.ggvision.Health:pubsub:3 policy must name the same topic.
    topic: Annotated[str, BeforeValidator(_publish_topic)] = topics.CLOUDWATCH_PUT


class DiskBudgetConfig(ConfigModel):
    """The suite's disk budget (docs/reliability.md, "The disk budget"): Health counts every file under `root`,
    raises `disk-low` when the headroom falls below `lowBytes` and, once it is below zero, tells the holders of
    video, clips, snapshots and results (in that order) to give up enough to get back to half of `lowBytes`."""

    enabled: Flag = True
    root: Annotated[str, BeforeValidator(_absolute_or_empty)] = ""  # "": the runtime's root (work/'s parent)
    budget_bytes: whole(0, 1 << 50) = 0  # the most the suite may keep under root; 0: only the reserve applies
    reserve_bytes: whole(0, 1 << 50) = 1 << 30  # kept free on root's filesystem, whoever else writes there
    low_bytes: whole(1, 1 << 50) = 1 << 30  # headroom under which disk-low fires (eviction starts at 0)
    period_s: number(1, 3600) = 10.0  # one count of root (a directory walk) per period


class HealthConfig(ComponentConfig):
    """The whole configuration of com.ggvision.Health."""

    period_s: number(0.2, 3600) = 5.0  # one collection per period
    summary_period_s: number(1, 86400) = 60.0  # one health summary to IoT Core per period
    prom_port: whole(0, 65535) = 9108  # 0: no Prometheus endpoint
    prom_bind: Annotated[str, BeforeValidator(_ip_address)] = "127.0.0.1"
    data_path: Annotated[str, BeforeValidator(_absolute_or_empty)] = ""  # "": the parent of the work folder
    probes: Annotated[tuple[Endpoint, ...], BeforeValidator(_probe_list), AfterValidator(_distinct)] = ()
    probe_timeout_s: number(0.05, 30) = 2.0
    probe_window: whole(1, 1000) = 20
    leak_window: whole(3, 10000) = 60
    hung_after_s: number(1, 86400) = 30.0
    camera_silent_s: number(1, 86400) = 30.0
    disk_min_free_ratio: number(0, 1) = 0.1
    mem_min_available_ratio: number(0, 1) = 0.1
    inference_component: Annotated[str, BeforeValidator(_component_name)] = DEFAULT_INFERENCE
    restart_inference: Flag = True
    gpu: Flag = True
    cloudwatch: CloudWatchConfig = CloudWatchConfig()  # metrics sent every summaryPeriodS
    disk_budget: DiskBudgetConfig = DiskBudgetConfig()
