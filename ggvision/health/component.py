"""com.ggvision.Health: hardware, ML, network and application metrics; Prometheus; IoT Core summary; watchdogs.

Every `periodS` it samples the host (psutil), the GPUs (NVML), the component processes, TCP probes and
ListComponents, merges what the local topics told it (inference/capture/filter/uplink metrics, with each camera's
frame and detection times: no per-frame message), runs the watchdogs, and swaps the result into the Prometheus
collector. Every `summaryPeriodS` it publishes a `health-summary/1.0` to IoT Core (`ggvision/{thing}/metrics`,
QoS 1, ≤ 128 KB) and a few values as CloudWatch metric requests on `cloudwatch/metric/put` (`cloudwatch` settings),
which the AWS-provided aws.greengrass.Cloudwatch component batches into PutMetricData calls (PutComponentMetric
is refused by the nucleus to any component not named `aws.*`). Alerts go to `ggvision/v1/alerts/health` and to
IoT Core `ggvision/{thing}/events`. Configuration keys: ggvision/config/health.py.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from ..component import ComponentApp, error_text, run_component
from ..config.base import parse, validator
from ..config.health import HealthConfig, parse_endpoint
from ..contract import topics
from ..contract.metrics import CLOUDWATCH
from .budget import Budget, DiskBudget
from .collectors import DiskCollector, HostCollector, Prober, ProcessCollector, network_sent_bytes
from .exporter import Collected, ComponentInfo, HealthCollector, encode_summary, summary
from .gpu import GpuSource, NvmlGpuSource
from .state import AppState
from .watchdog import Watchdogs

log = logging.getLogger("ggvision.health")

NAME = "com.ggvision.Health"
ALERTS = topics.ALERTS.format(component="health")
DISK_BUDGET = topics.DISK_BUDGET
# Metrics only: frame and detection times come from Capture's and Inference's metrics (health/state.py), so Health
# costs nothing per frame (docs/performance.md, "Plumbing CPU per analysed frame").
SUBSCRIPTIONS = (topics.every(topics.METRICS),)
IOT_METRICS = topics.IOT_METRICS
IOT_EVENTS = topics.IOT_EVENTS
IPC_TIMEOUT_S = 10.0
ERROR_STATES = ("ERRORED", "BROKEN")
# PutMetricData refuses values whose magnitude is outside this range (0 aside), NaN and infinities (developer guide
# "CloudWatch metrics", Input data, `value`).
CW_MIN_MAGNITUDE, CW_MAX_MAGNITUDE = 8.515920e-109, 1.174271e+108


class _Once:
    """Log a recurring failure at its 1st, 10th, 100th... occurrence."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, what: str, err: Any) -> None:
        n = self.counts[what] = self.counts.get(what, 0) + 1
        if n in (1, 10, 100) or n % 1000 == 0:
            log.warning("%s failed (%d so far): %s", what, n, error_text(err) if isinstance(err, BaseException)
                        else err)


class HealthComponent:
    def __init__(self, app: ComponentApp, cfg: HealthConfig, gpu: GpuSource | None | str = "auto",
                 procs: ProcessCollector | None | str = "auto", thing: str | None = None) -> None:
        self.app = app
        self.cfg = cfg
        self.thing = thing or os.environ.get("AWS_IOT_THING_NAME", "unknown-thing")
        self.started = time.monotonic()
        self.state = AppState()
        self.watchdogs = Watchdogs(self.started)
        self.host = HostCollector()
        self.collector = HealthCollector()
        self._gpu_arg, self._procs_arg = gpu, procs
        self.gpu: GpuSource | None = None
        self.procs: ProcessCollector | None = None
        self.disk: DiskCollector | None = None
        self.budget: DiskBudget | None = None
        self.prober: Prober | None = None
        self._server: Any = None
        self._failed = _Once()
        self._pending: HealthConfig | None = None
        self._next_collect = self.started
        self._next_summary = self.started + min(cfg.summary_period_s, max(cfg.period_s * 2, 1.0))
        self._states: dict[str, str] = {}
        self._restarts: dict[str, int] = {}
        self._proc_restarts: dict[str, int] = {}
        self._error_pending: set[str] = set()
        self.latest: Collected | None = None
        self.published_summaries = 0
        self._sent_budget: Budget | None = None
        self.cloudwatch_requests = 0
        self.inference_restarts = 0
        self._configure(cfg, first=True)

    # -- configuration -----------------------------------------------------------------------
    def _data_path(self, cfg: HealthConfig) -> str:
        return cfg.data_path or str(Path.cwd().resolve().parent)  # <root>/work: where components keep data

    def _configure(self, cfg: HealthConfig, first: bool = False) -> None:
        old = None if first else self.cfg
        self.cfg = cfg
        if old is None or old.data_path != cfg.data_path:
            self.disk = DiskCollector(self._data_path(cfg))
        if old is None or old.disk_budget != cfg.disk_budget or old.data_path != cfg.data_path:
            root = cfg.disk_budget.root or str(Path(self._data_path(cfg)).parent)  # <root>: work/, logs/, packages/
            self.budget = DiskBudget(cfg.disk_budget, Path(root))
        if old is None or (old.probes, old.probe_timeout_s, old.probe_window) != (
                cfg.probes, cfg.probe_timeout_s, cfg.probe_window):
            if self.prober is not None:
                self.prober.close()
            self.prober = Prober([parse_endpoint(p) for p in cfg.probes], cfg.probe_timeout_s,
                                 cfg.probe_window)
        if old is None:
            self.procs = (ProcessCollector.from_environment(cfg.leak_window) if self._procs_arg == "auto"
                          else self._procs_arg)  # type: ignore[assignment]
        elif old.leak_window != cfg.leak_window and self.procs is not None:
            self.procs.set_window(cfg.leak_window)
        if old is None or old.gpu != cfg.gpu:
            if self.gpu is not None and self._gpu_arg == "auto":
                self.gpu.close()
            if not cfg.gpu:
                self.gpu = None
            else:
                self.gpu = NvmlGpuSource.open() if self._gpu_arg == "auto" else self._gpu_arg  # type: ignore[assignment]
        if old is not None and (old.prom_port, old.prom_bind) != (cfg.prom_port, cfg.prom_bind):
            self._stop_server()
            self._start_server()
        self._next_collect = min(self._next_collect, time.monotonic() + cfg.period_s)

    def reconfigure(self, raw: dict[str, Any]) -> None:
        """ComponentApp callback (IPC thread): applied by the next tick."""
        self._pending = parse(HealthConfig, raw)

    # -- start/stop --------------------------------------------------------------------------
    def _start_server(self) -> None:
        if self.cfg.prom_port == 0:
            return
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        try:
            self._server, _ = start_http_server(self.cfg.prom_port, addr=self.cfg.prom_bind, registry=registry)
            log.info("Prometheus metrics on http://%s:%d/metrics", self.cfg.prom_bind, self.cfg.prom_port)
        except OSError as e:
            log.error("Prometheus endpoint %s:%d unavailable: %s", self.cfg.prom_bind, self.cfg.prom_port, e)

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def start(self) -> None:
        for topic in SUBSCRIPTIONS:
            self.app.subscribe(topic, self.state.on_message)
        self._start_server()

    def close(self) -> None:
        self._stop_server()
        if self.prober is not None:
            self.prober.close()
        if self.gpu is not None and self._gpu_arg == "auto":
            self.gpu.close()

    # -- collection --------------------------------------------------------------------------
    def _list_components(self) -> dict[str, tuple[str, str]] | None:
        try:
            return {c.component_name: (str(c.state), c.version or "")
                    for c in self.app.client.list_components().components}
        except Exception as e:  # e.g. no aws.greengrass.Cli policy: states are then unknown
            self._failed("ListComponents", e)
            return None

    def _track_components(self, listed: dict[str, tuple[str, str]] | None, now: float) -> dict[str, ComponentInfo]:
        """Restarts: a transition into ERRORED/BROKEN or a new lifecycle process, once per event: a new process
        after an error already counted (its recovery) is not counted again."""
        procs = self.procs.restarts if self.procs is not None else {}
        new_gen = {n for n, k in procs.items() if k > self._proc_restarts.get(n, 0)}
        self._proc_restarts = dict(procs)
        errored = set()
        for name, (state, _) in (listed or {}).items():
            prev = self._states.get(name)
            if state in ERROR_STATES and prev is not None and prev not in ERROR_STATES:
                errored.add(name)
            if name == self.cfg.inference_component and state == "RUNNING" and prev not in (None, "RUNNING"):
                self.watchdogs.inference_restarted(now)
            self._states[name] = state
        for name in new_gen | errored:
            if name in new_gen and name in self._error_pending:
                self._error_pending.discard(name)  # the recovery of an error counted earlier
                continue
            self._restarts[name] = self._restarts.get(name, 0) + 1
            if name in errored and name not in new_gen:
                self._error_pending.add(name)
        if self.cfg.inference_component in new_gen:
            self.watchdogs.inference_restarted(now)
        return {name: ComponentInfo(state, version, self._restarts.get(name, 0))
                for name, (state, version) in (listed or {}).items()}

    def collect(self, now: float | None = None) -> tuple[Collected, list[dict[str, Any]], bool]:
        """One tick's measurements, the alert messages to publish, and whether to restart inference."""
        now = time.monotonic() if now is None else now
        c = Collected(timestamp=time.time(), uptime_s=now - self.started)
        c.host = self.host.sample()
        if self.disk is not None:
            try:
                c.disk = self.disk.sample(now)
            except OSError as e:
                self._failed(f"disk usage of {self.disk.path}", e)
        if self.procs is not None:
            c.procs = self.procs.sample(now)
        if self.gpu is not None:
            try:
                c.gpus = self.gpu.sample()
            except Exception as e:
                self._failed("NVML", e)
        if self.prober is not None:
            c.probes = self.prober.probe()
        c.network_sent = network_sent_bytes()
        listed = self._list_components()
        c.components = self._track_components(listed, now)
        app = c.app = self.state.view(self.cfg.camera_silent_s, now)
        c.detection_fps = {cam: v.detection_fps for cam, v in app.cameras.items()}
        inf = listed.get(self.cfg.inference_component) if listed is not None else None
        running = listed is None or (inf is not None and inf[0] == "RUNNING")  # unknown states: assume it runs
        if self.budget is not None and self.budget.due(now):
            try:
                c.budget = self.budget.sample({comp: d.held for comp, d in app.disk.items()}, now)
            except OSError as e:
                self._failed(f"disk budget of {self.budget.root}", e)
        elif self.budget is not None and self.cfg.disk_budget.enabled:
            c.budget = self.budget.latest
        events, restart = self.watchdogs.evaluate(self.cfg, app, c.host, c.disk, running, now, budget=c.budget,
                                                  budget_root=str(self.budget.root) if self.budget else "")
        c.alerts = self.watchdogs.counts()
        off = time.time() - time.monotonic()
        c.active_alerts = [a.to_message("firing", now, off) for a in self.watchdogs.active.values()]
        return c, events, restart

    # -- outputs -----------------------------------------------------------------------------
    def _iot(self, topic: str, payload: bytes) -> bool:
        from awsiot.greengrasscoreipc.model import QOS

        try:
            fut = self.app.client.publish_to_iot_core_async(topic_name=topic, qos=QOS.AT_LEAST_ONCE, payload=payload)
            fut.result(IPC_TIMEOUT_S)
            return True
        except Exception as e:  # offline spool full, no IoT Core bridge, not authorized...
            self._failed(f"PublishToIoTCore {topic}", e)
            return False

    def restart_inference(self) -> None:
        name = self.cfg.inference_component
        try:
            r = self.app.client.restart_component(component_name=name)
            self.inference_restarts += 1
            log.warning("inference looks hung: RestartComponent(%s): %s %s", name, r.restart_status, r.message or "")
        except Exception as e:
            log.error("RestartComponent(%s) failed: %s", name, e)
        self.watchdogs.inference_restarted(time.monotonic())

    def publish_alert(self, msg: dict[str, Any]) -> None:
        (log.warning if msg["state"] == "firing" else log.info)(
            "alert %s %s at %s: %s", msg["alert"], msg["state"], msg["where"], msg["message"])
        self.app.publish(ALERTS, msg)
        self._iot(IOT_EVENTS.format(thing=self.thing), json.dumps(msg, separators=(",", ":")).encode())

    def publish_budget(self, b: Budget) -> None:
        """disk-budget/1.0 to the holders (Capture, Uplink): the level for their status, and what to give up."""
        self._sent_budget = b
        if b.evict:
            log.warning("disk budget: headroom %d bytes (used %d, free %d): evicting %s", b.headroom, b.used, b.free,
                        ", ".join(f"{cls} {n} bytes" for cls, n in b.evict.items()))
        assert self.budget is not None
        self.app.publish(DISK_BUDGET, b.to_message(str(self.budget.root)))

    def publish_summary(self, c: Collected) -> bytes:
        data = encode_summary(summary(c, self.thing, self.cfg.summary_period_s))
        if self._iot(IOT_METRICS.format(thing=self.thing), data):
            self.published_summaries += 1
        self._put_cloudwatch(c)
        return data

    def cloudwatch_values(self, c: Collected) -> dict[str, float]:
        """The values sent to CloudWatch (names and units: contract.metrics.CLOUDWATCH); absent ones left out."""
        values: dict[str, float | None] = {}
        if c.host is not None:
            values["CpuUsage"] = c.host.cpu_all * 100
            values["MemoryAvailable"] = c.host.memory_available / 2**20
        if c.disk is not None and c.disk.total:
            values["DiskFree"] = c.disk.free / c.disk.total * 100
        if c.app is not None:
            values["CamerasUp"] = sum(1 for v in c.app.cameras.values() if v.up)
            values["DetectionFps"] = sum(c.detection_fps.values())
            p95 = [s.metrics.p95_ms for s in c.app.models.values() if s.metrics.p95_ms is not None]
            if p95:
                values["InferenceLatencyP95"] = max(p95)
            if c.app.models:
                values["InferenceErrorRate"] = max(s.error_ratio for s in c.app.models.values()) * 100
        values["AlertsActive"] = sum(c.alerts.values())
        out = {}
        for name, v in values.items():
            if v is None or not math.isfinite(v) or abs(v) >= CW_MAX_MAGNITUDE:
                continue
            out[name] = 0.0 if abs(v) < CW_MIN_MAGNITUDE else float(v)
        return out

    def _put_cloudwatch(self, c: Collected) -> int:
        """One request per value, in the shape the aws.greengrass.Cloudwatch component documents (developer guide
        "CloudWatch metrics", Input data); it adds the `coreName` dimension itself. Returns how many went out."""
        cw = self.cfg.cloudwatch
        if not cw.enabled:
            return 0
        sent = 0
        for name, value in self.cloudwatch_values(c).items():
            request = {"request": {"namespace": cw.namespace, "metricData": {
                "metricName": name, "value": value, "unit": CLOUDWATCH[name], "timestamp": c.timestamp}}}
            if self.app.publish(cw.topic, request):
                sent += 1
        if sent:
            self.cloudwatch_requests += sent
        else:
            self._failed(f"CloudWatch metric requests on {cw.topic}", "nothing could be published")
        return sent

    def tick(self) -> None:
        if self._pending is not None:
            cfg, self._pending = self._pending, None
            self._configure(cfg)
        now = time.monotonic()
        if now < self._next_collect:
            return
        self._next_collect = max(self._next_collect + self.cfg.period_s, now + self.cfg.period_s / 2)
        c, events, restart = self.collect(now)
        self.latest = c
        self.collector.update(c)
        if restart:
            self.restart_inference()
        for msg in events:  # before the budget: disk-low is out before any eviction it warns of
            self.publish_alert(msg)
        if c.budget is not None and c.budget is not self._sent_budget:
            self.publish_budget(c.budget)
        if now >= self._next_summary:
            self._next_summary = now + self.cfg.summary_period_s
            self.publish_summary(c)


def build(app: ComponentApp, cfg: dict[str, Any]) -> HealthComponent:
    comp = HealthComponent(app, parse(HealthConfig, cfg))
    app.on_config(comp.reconfigure)
    comp.start()
    return comp


def main() -> int:
    # Collection is due every periodS; the tick is only its granularity.
    return run_component(NAME, validator(HealthConfig), build, tick_period_s=0.25)
