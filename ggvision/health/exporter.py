"""What Health exports: the Prometheus metric families and the IoT Core summary, from one `Collected`.

The tick builds a `Collected` and swaps it in; a scrape only formats the latest one (scrapes never
collect, so scraping often costs nothing extra and every scrape between two ticks agrees).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..contract import disk
from ..contract.metrics import METRICS
from ..contract.schemas import HEALTH_SUMMARY
from .budget import Budget
from .collectors import ComponentProcs, DiskSample, HostSample, ProbeResult
from .gpu import GpuSample
from .state import STORAGE_CONDITIONS, AppView, ArmFigures, InferenceMetrics

SUMMARY_SCHEMA = HEALTH_SUMMARY
IOT_MAX_BYTES = 128 * 1024  # IoT Core's message limit (the local bridge enforces it too)
SUMMARY_MAX_BYTES = IOT_MAX_BYTES - 1024  # headroom for the MQTT topic and properties


@dataclass
class ComponentInfo:
    state: str
    version: str
    restarts: int = 0


@dataclass
class Collected:
    """One tick's view of the box."""

    timestamp: float  # epoch
    uptime_s: float
    host: HostSample | None = None
    disk: DiskSample | None = None
    budget: Budget | None = None  # the latest disk budget (counted every diskBudget.periodS)
    procs: dict[str, ComponentProcs] = field(default_factory=dict)
    gpus: list[GpuSample] = field(default_factory=list)
    probes: dict[str, ProbeResult] = field(default_factory=dict)
    network_sent: float | None = None
    app: AppView | None = None
    detection_fps: dict[str, float] = field(default_factory=dict)
    components: dict[str, ComponentInfo] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    active_alerts: list[dict[str, Any]] = field(default_factory=list)


def samples(c: Collected) -> dict[str, list[tuple[tuple[str, ...], float]]]:
    """Metric name -> [(label values, value)]; a name without data has no entry."""
    out: dict[str, list[tuple[tuple[str, ...], float]]] = {}

    def put(name: str, labels: tuple[str, ...], value: float | None) -> None:
        if value is not None:
            out.setdefault(name, []).append((labels, float(value)))

    if c.host is not None:
        h = c.host
        put("ggvision_cpu_usage_ratio", ("all",), h.cpu_all)
        for i, v in enumerate(h.cpu_per_core):
            put("ggvision_cpu_usage_ratio", (str(i),), v)
        put("ggvision_load1", (), h.load1)
        for s, v in h.temperatures.items():
            put("ggvision_temperature_celsius", (s,), v)
        put("ggvision_memory_available_bytes", (), h.memory_available)
        put("ggvision_swap_used_bytes", (), h.swap_used)
    for name, p in c.procs.items():
        put("ggvision_component_rss_bytes", (name,), p.rss)
        put("ggvision_component_rss_growth_bytes_per_hour", (name,), p.growth_per_hour)
    if c.disk is not None:
        put("ggvision_disk_free_bytes", (c.disk.path,), c.disk.free)
        put("ggvision_disk_total_bytes", (c.disk.path,), c.disk.total)
        put("ggvision_disk_write_bytes_per_second", (), c.disk.write_bytes_per_s)
    if c.budget is not None:
        b = c.budget
        put("ggvision_disk_budget_used_bytes", (), b.used)
        put("ggvision_disk_budget_bytes", (), b.budget)
        put("ggvision_disk_budget_headroom_bytes", (), b.headroom)
        put("ggvision_disk_budget_level", (), disk.LEVELS.index(b.level))
        put("ggvision_disk_write_latency_seconds", (), c.disk.write_latency_s)
    for g in c.gpus:
        put("ggvision_gpu_utilization_ratio", (g.index,), g.utilization_ratio)
        put("ggvision_gpu_memory_used_bytes", (g.index,), g.memory_used_bytes)
        put("ggvision_gpu_memory_total_bytes", (g.index,), g.memory_total_bytes)
        put("ggvision_gpu_temperature_celsius", (g.index,), g.temperature_celsius)
        put("ggvision_gpu_power_watts", (g.index,), g.power_watts)
        put("ggvision_gpu_encoder_utilization_ratio", (g.index,), g.encoder_utilization_ratio)
        put("ggvision_gpu_decoder_utilization_ratio", (g.index,), g.decoder_utilization_ratio)
    if c.app is not None:
        for model, st in c.app.models.items():
            m = st.metrics
            for q, v in (("0.5", m.p50_ms), ("0.95", m.p95_ms), ("0.99", m.p99_ms)):
                put("ggvision_inference_latency_seconds", (model, q), v / 1000.0 if v is not None else None)
            put("ggvision_inference_batches_per_second", (model,), m.batches_per_s)
            put("ggvision_model_load_seconds", (model,), m.load_ms / 1000.0 if m.load_ms is not None else None)
            put("ggvision_inference_errors", (model,), st.errors_total)
            put("ggvision_inference_error_ratio", (model,), st.error_ratio)
            put("ggvision_inference_score_mean", (model,), m.score_mean)
            put("ggvision_inference_provider_info", (model, m.version or "", m.provider or ""), 1)
            if m.arms is not None:
                _put_arm(put, m)
        for prio, v in c.app.backlog.items():
            put("ggvision_uplink_backlog_bytes", (prio,), v)
        for cam, v in c.app.cameras.items():
            put("ggvision_camera_input_fps", (cam,), v.input_fps)
            put("ggvision_camera_decoded_fps", (cam,), v.decoded_fps)
            put("ggvision_camera_detection_fps", (cam,), c.detection_fps.get(cam, 0.0))
            put("ggvision_camera_up", (cam,), 1 if v.up else 0)
            put("ggvision_camera_frame_age_seconds", (cam,), v.frame_age_s)
            if v.decoder is not None:
                put("ggvision_camera_decoder_info", (cam, v.decoder), 1)
        for topic, n in c.app.malformed.items():
            put("ggvision_health_malformed_messages", (topic,), n)
        for comp, d in c.app.disk.items():
            for cls in disk.CLASSES:
                put("ggvision_disk_held_bytes", (comp, cls), d.held.get(cls, 0))
                put("ggvision_disk_evicted_bytes", (comp, cls), d.evicted.get(cls, 0))
        for cam, a in c.app.analytics.items():
            for (line, direction, label), n in a.crossings.items():
                put("ggvision_line_crossings", (cam, line, direction, label), n)
            for zone, n in a.occupancy.items():
                put("ggvision_zone_occupancy", (cam, zone), n)
            for kind, n in a.hits.items():
                put("ggvision_zone_rule_hits", (cam, kind), n)
        for comp, r in c.app.storage.items():
            for cond in STORAGE_CONDITIONS:
                put("ggvision_storage_errors", (comp, cond), r.errors.get(cond, 0))
                put("ggvision_storage_degraded", (comp, cond), 1 if cond in r.active else 0)
    for ep, r in c.probes.items():
        put("ggvision_endpoint_up", (ep,), 1 if r.up else 0)
        put("ggvision_endpoint_latency_seconds", (ep,), r.latency_s)
        put("ggvision_endpoint_loss_ratio", (ep,), r.loss_ratio)
    put("ggvision_network_sent_bytes", (), c.network_sent)
    for name, ci in c.components.items():
        put("ggvision_component_up", (name,), 1 if ci.state in ("RUNNING", "FINISHED") else 0)
        put("ggvision_component_state", (name, ci.state), 1)
        put("ggvision_component_restarts", (name,), ci.restarts)
        put("ggvision_component_info", (name, ci.version), 1)
    put("ggvision_uptime_seconds", (), c.uptime_s)
    for kind, n in c.alerts.items():
        put("ggvision_health_alerts_active", (kind,), n)
    return out


class HealthCollector(Collector):
    """prometheus_client collector over the latest Collected (swap with `update`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, list[tuple[tuple[str, ...], float]]] = {}

    def update(self, c: Collected) -> None:
        s = samples(c)
        with self._lock:
            self._samples = s

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            current = self._samples
        for name, (kind, help_text, labels) in METRICS.items():
            rows = current.get(name)
            if not rows:
                continue
            fam: Metric = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, help_text,
                                                                                          labels=labels)
            for values, v in rows:
                fam.add_metric(list(values), v)  # type: ignore[attr-defined]
            yield fam

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked registration: families come and go with their sources


# -- IoT Core summary ----------------------------------------------------------------------------
def _put_arm(put: Any, m: InferenceMetrics) -> None:
    """The ggvision_ab_* families of one arm (labels: the configured model id and the arm)."""
    f = m.arms
    assert f is not None
    mid, arm = f.model_id, f.arm
    for q, v in (("0.5", m.p50_ms), ("0.95", m.p95_ms)):
        put("ggvision_ab_latency_seconds", (mid, arm, q), v / 1000.0 if v is not None else None)
    for label, v in f.detections_per_frame.items():
        put("ggvision_ab_detections_per_frame", (mid, arm, label), v)
    total = sum(f.score_hist)
    for i, n in enumerate(f.score_hist):  # bucket i holds scores in [i/10, (i+1)/10)
        put("ggvision_ab_confidence_ratio", (mid, arm, f"{(i + 1) / len(f.score_hist):.1f}"),
            n / total if total else None)
    if arm == "a":  # the experiment's figures travel once, with A
        for outcome, labels in f.agreement.items():
            for label, v in labels.items():
                put("ggvision_ab_agreement", (mid, outcome, label), v)
        put("ggvision_ab_b_skipped_frames", (mid,), f.b_skipped)
        put("ggvision_ab_b_failures", (mid,), f.b_failed)


def _arm_summary(f: ArmFigures) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f.model_id, "arm": f.arm, "mode": f.mode,
                           "detections_per_frame": {k: _r(v, 4) for k, v in f.detections_per_frame.items()},
                           "frames": None if f.frames is None else int(f.frames),
                           "score_hist": [int(h) for h in f.score_hist]}
    if f.arm == "a":
        out.update(b_skipped=f.b_skipped, b_failed=f.b_failed, agreement=f.agreement)
    return out


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(v, nd)


def summary(c: Collected, thing: str, period_s: float) -> dict[str, Any]:
    """`health-summary/1.0` (untrimmed). The rollout health gates read inference_error_ratio,
    inference_p95_ms, cameras.*.detection_fps, detection_fps_total and components.*.state."""
    doc: dict[str, Any] = {"schema": SUMMARY_SCHEMA, "thing": thing, "timestamp": round(c.timestamp, 3),
                           "period_s": period_s, "uptime_s": round(c.uptime_s, 1)}
    if c.host is not None:
        h = c.host
        doc["host"] = {"cpu_ratio": _r(h.cpu_all), "load1": _r(h.load1, 2),
                       "memory_available_bytes": int(h.memory_available),
                       "memory_available_ratio": _r(h.memory_available / h.memory_total if h.memory_total else None),
                       "swap_used_bytes": int(h.swap_used),
                       "max_temperature_c": _r(max(h.temperatures.values()), 1) if h.temperatures else None}
    if c.disk is not None:
        d = c.disk
        doc["disk"] = {"path": d.path, "free_bytes": int(d.free), "total_bytes": int(d.total),
                       "free_ratio": _r(d.free / d.total if d.total else None),
                       "write_bytes_per_s": _r(d.write_bytes_per_s, 0), "write_latency_s": _r(d.write_latency_s, 5)}
    if c.budget is not None:
        b = c.budget
        doc["disk_budget"] = {"used_bytes": b.used, "budget_bytes": b.budget, "headroom_bytes": b.headroom,
                              "level": b.level}
    if c.gpus:
        doc["gpus"] = {g.index: {"name": g.name, "utilization_ratio": _r(g.utilization_ratio),
                                 "memory_used_bytes": g.memory_used_bytes, "memory_total_bytes": g.memory_total_bytes,
                                 "temperature_c": g.temperature_celsius, "power_w": _r(g.power_watts, 1),
                                 "encoder_ratio": _r(g.encoder_utilization_ratio),
                                 "decoder_ratio": _r(g.decoder_utilization_ratio)} for g in c.gpus}
    app = c.app
    if app is not None:
        models = {}
        for model, st in app.models.items():
            m = st.metrics
            models[model] = {"version": m.version, "provider": m.provider, "p50_ms": m.p50_ms, "p95_ms": m.p95_ms,
                             "p99_ms": m.p99_ms, "batches_per_s": m.batches_per_s, "load_ms": m.load_ms,
                             "errors_total": st.errors_total, "error_ratio": _r(st.error_ratio, 5),
                             "score_mean": _r(m.score_mean, 4), "role": m.role}
            if m.shadow:
                models[model]["shadow"] = {k: _r(v, 4) for k, v in m.shadow.items()}
            if m.arms is not None:
                models[model]["ab"] = _arm_summary(m.arms)
        doc["inference"] = models
        primaries = [st for st in app.models.values() if st.metrics.role == "primary"]  # shadows never serve
        ratios = [st.error_ratio for st in primaries]
        p95s = [st.metrics.p95_ms for st in primaries if st.metrics.p95_ms is not None]
        doc["inference_error_ratio"] = _r(max(ratios), 5) if ratios else None  # worst model
        doc["inference_p95_ms"] = max(p95s) if p95s else None
        cams = {cam: {"up": v.up, "input_fps": _r(v.input_fps, 2), "decoded_fps": _r(v.decoded_fps, 2),
                      "detection_fps": _r(c.detection_fps.get(cam, 0.0), 2), "frame_age_s": _r(v.frame_age_s, 1),
                      "decoder": v.decoder}
                for cam, v in sorted(app.cameras.items())}
        doc["cameras_total"] = len(cams)
        doc["cameras_up"] = sum(1 for v in app.cameras.values() if v.up)
        doc["detection_fps_total"] = _r(sum(c.detection_fps.get(cam, 0.0) for cam in app.cameras), 2)
        doc["cameras"] = cams
        doc["uplink_backlog_bytes"] = app.backlog
        doc["malformed_messages"] = sum(app.malformed.values())
        doc["storage"] = {comp: {"errors": {k: int(v) for k, v in r.errors.items()}, "degraded": dict(r.active)}
                          for comp, r in sorted(app.storage.items()) if r.errors or r.active}
    doc["endpoints"] = {ep: {"up": r.up, "latency_s": _r(r.latency_s, 4), "loss_ratio": _r(r.loss_ratio)}
                        for ep, r in c.probes.items()}
    doc["components"] = {name: {"state": ci.state, "version": ci.version, "restarts": ci.restarts,
                                **({"rss_bytes": int(c.procs[name].rss),
                                    "rss_growth_bytes_per_hour": _r(c.procs[name].growth_per_hour, 0),
                                    "uptime_s": round(c.timestamp - c.procs[name].started, 1)}
                                   if name in c.procs else {})}
                         for name, ci in sorted(c.components.items())}
    doc["alerts"] = c.active_alerts
    doc["truncated"] = False
    return doc


def _size(doc: dict[str, Any]) -> int:
    return len(json.dumps(doc, separators=(",", ":")).encode())


def encode_summary(doc: dict[str, Any], limit: int = SUMMARY_MAX_BYTES) -> bytes:
    """The summary as JSON within `limit` bytes. Over it, per-camera detail is trimmed first (cameras that are
    down or without detections are kept before healthy ones), then per-component detail, then alerts; the
    document says so: `truncated: true` and `omitted: {section: how many entries left out}`."""
    if _size(doc) <= limit:
        return json.dumps(doc, separators=(",", ":")).encode()
    doc = dict(doc, truncated=True, omitted={})
    for section, key in (("cameras", lambda kv: bool(kv[1]["up"] and (kv[1]["detection_fps"] or 0) > 0)),
                         ("components", lambda kv: kv[1]["state"] in ("RUNNING", "FINISHED")),
                         ("alerts", None)):
        items = doc.get(section)
        if not items:
            continue
        entries = list(items.items()) if isinstance(items, dict) else list(items)
        if key is not None:
            entries.sort(key=key)  # problems first (False < True)
        lo, hi = 0, len(entries)  # the most entries that fit (binary search)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            trial = dict(doc, **{section: dict(entries[:mid]) if isinstance(items, dict) else entries[:mid]},
                         omitted={**doc["omitted"], section: len(entries) - mid})
            if _size(trial) <= limit:
                lo = mid
            else:
                hi = mid - 1
        doc[section] = dict(entries[:lo]) if isinstance(items, dict) else entries[:lo]
        doc["omitted"] = {**doc["omitted"], section: len(entries) - lo}
        if _size(doc) <= limit:
            break
    data = json.dumps(doc, separators=(",", ":")).encode()
    if len(data) > limit:  # still too big (e.g. a huge endpoint list): the essentials only
        keep = ("schema", "thing", "timestamp", "period_s", "uptime_s", "inference_error_ratio", "inference_p95_ms",
                "cameras_total", "cameras_up", "detection_fps_total", "truncated")
        data = json.dumps({k: doc[k] for k in keep if k in doc} | {"omitted": {"all_detail": True}},
                          separators=(",", ":")).encode()
    return data
