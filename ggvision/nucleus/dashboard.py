"""Live terminal view of a running runtime: components, IPC traffic, IoT Core link, recent log lines."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .kernel import Kernel

_STATE_STYLE = {"RUNNING": "green", "FINISHED": "cyan", "STARTING": "yellow", "INSTALLED": "yellow",
                "NEW": "dim", "STOPPING": "yellow", "ERRORED": "red", "BROKEN": "bold red"}


def _num(m: dict, key: str, fmt: str = "{:.1f}") -> str:
    v = m.get(key)
    return fmt.format(v) if isinstance(v, int | float) else "–"


class Dashboard:
    def __init__(self, kernel: Kernel, period_s: float = 0.5) -> None:
        self.kernel = kernel
        self.period = period_s
        self._last = (time.monotonic(), 0, 0)
        self.capture: dict = {}
        kernel.pubsub.taps.append(("ggvision/v1/metrics/capture", self._on_capture_metrics))

    def _on_capture_metrics(self, topic: str, message: object) -> None:
        if isinstance(message, dict) and isinstance(message.get("cameras"), dict):
            self.capture = message["cameras"]

    def _cameras(self) -> Table | None:
        if not self.capture:
            return None
        t = Table("camera", "status", "input fps", "decoded fps", "decode ms", "reconnects", "dropped",
                  "segments", expand=True, title="cameras (com.ggvision.Capture)")
        for cam, m in sorted(self.capture.items()):
            if not isinstance(m, dict):
                continue
            status = str(m.get("status", "?"))
            style = "green" if status == "connected" else "yellow" if status in ("starting", "reconnecting") else "red"
            reason = f" {m['reason']}" if m.get("reason") and status != "connected" else ""

            t.add_row(cam, Text(status + reason, style=style), _num(m, "input_fps"), _num(m, "decoded_fps"),
                      _num(m, "decode_ms"), _num(m, "reconnects", "{:.0f}"), _num(m, "dropped_frames", "{:.0f}"),
                      _num(m, "segment_bytes", "{:,.0f} B"))
        return t

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
        cams = self._cameras()
        if cams is not None:
            rows.append(cams)
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
