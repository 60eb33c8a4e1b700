"""Live terminal view of a running runtime: components, cameras (fps, detections, analytics counts), models,
uplink backlog, IPC traffic, IoT Core link, recent log lines.

It reads the suite's own metric and detection topics through pubsub taps (no IPC connection of its own),
so what it shows is what the components publish (docs/messages.md).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from typing import TYPE_CHECKING

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ggvision.contract import topics  # the only product import of the runtime: what the suite publishes

if TYPE_CHECKING:
    from .kernel import Kernel

_STATE_STYLE = {"RUNNING": "green", "FINISHED": "cyan", "STARTING": "yellow", "INSTALLED": "yellow",
                "NEW": "dim", "STOPPING": "yellow", "ERRORED": "red", "BROKEN": "bold red"}


def _num(m: dict, key: str, fmt: str = "{:.1f}") -> str:
    v = m.get(key)
    return fmt.format(v) if isinstance(v, int | float) else "–"


def _counts_line(a: dict) -> str:
    """`gate ↓3 ↑1, queue 2`: crossings in/out per line (all labels) since the Filter started, occupancy now."""
    def total(v: object) -> int:
        return sum(n for n in v.values() if isinstance(n, int)) if isinstance(v, dict) else 0

    parts = [f"{line} ↓{total(d.get('in'))} ↑{total(d.get('out'))}"
             for line, d in (a.get("crossings") or {}).items() if isinstance(d, dict)]
    parts += [f"{zone} {n}" for zone, n in (a.get("occupancy") or {}).items() if isinstance(n, int)]
    return ", ".join(parts[:6]) or "–"


class Dashboard:
    def __init__(self, kernel: Kernel, period_s: float = 0.5) -> None:
        self.kernel = kernel
        self.period = period_s
        self._last = (time.monotonic(), 0, 0)
        self.capture: dict = {}
        self.models: dict[tuple[str, str], dict] = {}  # (model, role) -> last inference-metrics message
        self.uplink: dict = {}
        self.detections: dict[str, deque[float]] = {}  # camera -> arrival times of detection messages (fps)
        self.labels: dict[str, Counter[str]] = {}  # camera -> labels in its last detection message
        self.events: dict[str, int] = {}  # camera -> event messages seen
        self.counts: dict[str, str] = {}  # camera -> its analytics counts, as a short line
        taps = kernel.pubsub.taps
        taps.append((topics.metrics("capture"), self._on_capture_metrics))
        taps.append((topics.metrics("inference"), self._on_inference_metrics))
        taps.append((topics.metrics("uplink"), self._on_uplink_metrics))
        taps.append((topics.metrics("filter"), self._on_filter_metrics))
        taps.append((topics.every(topics.DETECTIONS), self._on_detections))
        taps.append((topics.every(topics.EVENTS), self._on_event))

    def _on_capture_metrics(self, topic: str, message: object) -> None:
        if isinstance(message, dict) and isinstance(message.get("cameras"), dict):
            self.capture = message["cameras"]

    def _on_inference_metrics(self, topic: str, message: object) -> None:
        if isinstance(message, dict) and isinstance(message.get("model"), str):
            self.models[(message["model"], str(message.get("role", "primary")))] = message

    def _on_uplink_metrics(self, topic: str, message: object) -> None:
        if isinstance(message, dict):
            self.uplink = message

    def _on_filter_metrics(self, topic: str, message: object) -> None:
        cams = message.get("cameras") if isinstance(message, dict) else None
        if not isinstance(cams, dict):
            return
        for cam, m in cams.items():
            a = m.get("analytics") if isinstance(m, dict) else None
            if isinstance(a, dict):
                self.counts[str(cam)] = _counts_line(a)

    def _on_detections(self, topic: str, message: object) -> None:
        camera = topic.rsplit("/", 1)[-1]
        times = self.detections.setdefault(camera, deque(maxlen=256))
        times.append(time.monotonic())
        if isinstance(message, dict):
            found = message.get("detections")
            if isinstance(found, list):
                self.labels[camera] = Counter(str(d.get("label", "?")) for d in found if isinstance(d, dict))
            elif isinstance(message.get("outputs"), dict):
                out = message["outputs"]
                self.labels[camera] = Counter({f"{out.get('label', '?')} p={out.get('fire_probability', 0):.2f}": 1})

    def _on_event(self, topic: str, message: object) -> None:
        camera = topic.rsplit("/", 1)[-1]
        if isinstance(message, dict) and message.get("kind") == "new":
            self.events[camera] = self.events.get(camera, 0) + 1

    def _detection_fps(self, camera: str, now: float, window_s: float = 5.0) -> float:
        times = self.detections.get(camera)
        if not times:
            return 0.0
        recent = [t for t in times if now - t <= window_s]
        return len(recent) / window_s

    def _cameras(self) -> Table | None:
        if not self.capture and not self.detections:
            return None
        now = time.monotonic()
        t = Table("camera", "status", "input fps", "decoded fps", "detect fps", "last detections", "events",
                  "counts", "reconnects", "dropped", "segments", expand=True, title="cameras and sensors")
        for cam in sorted(set(self.capture) | set(self.detections)):
            m = self.capture.get(cam, {})
            if not isinstance(m, dict):
                continue
            status = str(m.get("status", "–"))  # sensors have detections but no capture camera entry
            style = ("green" if status == "connected" else "yellow" if status in ("starting", "reconnecting")
                     else "dim" if status == "–" else "red")
            reason = f" {m['reason']}" if m.get("reason") and status != "connected" else ""

            labels = self.labels.get(cam, Counter())
            found = ", ".join(f"{n}×{label}" if n > 1 else label for label, n in labels.most_common(4)) or "–"
            t.add_row(cam, Text(status + reason, style=style), _num(m, "input_fps"), _num(m, "decoded_fps"),
                      f"{self._detection_fps(cam, now):.1f}", found, str(self.events.get(cam, 0)),
                      self.counts.get(cam, "–"), _num(m, "reconnects", "{:.0f}"), _num(m, "dropped_frames", "{:.0f}"),
                      _num(m, "segment_bytes", "{:,.0f} B"))
        return t

    def _models(self) -> Table | None:
        if not self.models:
            return None
        t = Table("model", "version", "role", "provider", "p50 ms", "p95 ms", "batch", "runs", "dropped", "errors",
                  expand=True, title="models (com.ggvision.Inference)")
        for (name, role), m in sorted(self.models.items()):
            lat = m.get("latency_ms") if isinstance(m.get("latency_ms"), dict) else {}
            errors = m.get("errors", 0)
            provider = str(m.get("provider", "?")).replace("ExecutionProvider", "")
            t.add_row(name, str(m.get("version", "?")), role, provider,
                      _num(lat, "p50"), _num(lat, "p95"), _num(m, "batch_size_mean"), _num(m, "runs", "{:.0f}"),
                      _num(m, "dropped_frames", "{:.0f}"),
                      Text(str(errors), style="red" if errors else ""))
        return t

    def _uplink(self) -> Panel | None:
        if not self.uplink:
            return None
        backlog = self.uplink.get("backlog_bytes") if isinstance(self.uplink.get("backlog_bytes"), dict) else {}
        g = Table.grid(padding=(0, 2))
        cells: list[str | Text] = ["backlog"]
        for prio in ("alerts", "results", "clips", "video"):
            cells += [prio, f"{backlog.get(prio, 0):,} B"]
        online = self.uplink.get("online")
        if isinstance(online, dict):
            for sink, up in online.items():
                cells += [sink, Text("online", style="green") if up else Text("offline", style="red")]
        g.add_row(*cells)
        extra = [("uploaded", "uploaded_bytes", "{:,.0f} B"), ("oldest", "oldest_age_s", "{:.0f} s")]
        row2: list[str] = []
        for label, key, fmt in extra:
            row2 += [label, _num(self.uplink, key, fmt)]
        evicted = self.uplink.get("evicted")
        if isinstance(evicted, dict) and any(evicted.values()):
            row2 += ["evicted", ", ".join(f"{k} {v}" for k, v in evicted.items() if v)]
        if self.uplink.get("last_error"):
            row2 += ["last error", str(self.uplink["last_error"])[:60]]
        g.add_row(*row2)
        return Panel(g, title="uplink (com.ggvision.Uplink)")

    def render(self) -> Group:
        k = self.kernel
        comps = Table("component", "version", "state", "restarts", "for", expand=True, title="components")
        now = time.monotonic()
        for name in k.component_names():
            svc = k.services[name]
            style = _STATE_STYLE.get(str(svc.state), "")
            state = Text(str(svc.state), style=style)
            if svc.reason and str(svc.state) in ("ERRORED", "BROKEN"):
                state.append(f" {svc.reason}", style="dim")
            comps.add_row(name, svc.version, state, str(svc.restarts), f"{now - svc.state_since:.0f}s")
        t0, pub0, del0 = self._last
        dt = max(now - t0, 1e-6)
        ps = k.pubsub
        rate_pub, rate_del = (ps.published - pub0) / dt, (ps.delivered - del0) / dt
        self._last = (now, ps.published, ps.delivered)
        ipc = Table.grid(padding=(0, 2))
        ipc.add_row("connections", str(len(k.server.stats())), "published", f"{ps.published} ({rate_pub:.0f}/s)",
                    "delivered", f"{ps.delivered} ({rate_del:.0f}/s)", "dropped", str(ps.dropped))
        rows = [comps]
        for part in (self._cameras(), self._models(), self._uplink()):
            if part is not None:
                rows.append(part)
        rows.append(Panel(ipc, title="local IPC"))
        if k.bridge is not None:
            st = k.bridge.stats()
            link = Text("connected", style="green") if st.get("connected") else Text("offline", style="red")
            iot = Table.grid(padding=(0, 2))
            iot.add_row("link", link, "published", str(st.get("published", 0)), "spooled", str(st.get("spooled", 0)),
                        "spool bytes", str(st.get("spool_bytes", 0)), "QoS0 dropped", str(st.get("dropped_qos0", 0)))
            rows.append(Panel(iot, title="IoT Core (local broker)"))
        logs = Text()
        for stamp, comp, text in list(k.hub.recent)[-10:]:
            logs.append(f"{stamp} ", style="dim").append(comp, style="bold").append(f" | {text}\n")
        rows.append(Panel(logs, title=f"log (files in {k.root / 'logs'})"))
        return Group(*rows)

    async def run(self, stop: asyncio.Event) -> None:
        with Live(self.render(), refresh_per_second=4, screen=False) as live:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), self.period)
                except asyncio.TimeoutError:
                    pass
                live.update(self.render())
