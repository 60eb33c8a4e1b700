"""The live view shows what the components publish: per-camera fps and detections, models, uplink backlog."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console

from gglocal.ipc.pubsub import LocalPubSub
from gglocal.nucleus.dashboard import Dashboard


def _render(dash: Dashboard) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    for part in (dash._cameras(), dash._models(), dash._uplink()):
        if part is not None:
            console.print(part)
    return console.export_text()


def test_dashboard_shows_cameras_detections_models_and_backlog() -> None:
    pubsub = LocalPubSub()
    dash = Dashboard(SimpleNamespace(pubsub=pubsub))  # type: ignore[arg-type]
    assert _render(dash) == ""  # nothing published yet: no empty tables
    pubsub.publish("c", "ggvision/v1/metrics/capture", "jsonMessage", {"cameras": {"door": {
        "status": "connected", "input_fps": 10.0, "decoded_fps": 5.0}}})
    for _ in range(3):
        pubsub.publish("i", "ggvision/v1/detections/door", "jsonMessage", {"detections": [
            {"label": "person"}, {"label": "person"}, {"label": "car"}]})
    pubsub.publish("i", "ggvision/v1/detections/thermal-1", "jsonMessage", {
        "outputs": {"fire_probability": 0.97, "label": "fire"}})
    pubsub.publish("f", "ggvision/v1/events/door", "jsonMessage", {"kind": "new"})
    pubsub.publish("f", "ggvision/v1/metrics/filter", "jsonMessage", {"cameras": {"door": {"analytics": {
        "crossings": {"gate": {"in": {"person": 2, "car": 1}, "out": {}}}, "occupancy": {"queue": 4}}}}})
    pubsub.publish("i", "ggvision/v1/metrics/inference", "jsonMessage", {
        "model": "synthetic-detector", "version": "1.0.0", "provider": "CPUExecutionProvider",
        "latency_ms": {"p50": 7.5, "p95": 9.25, "p99": 12}, "runs": 42, "errors": 1})
    pubsub.publish("u", "ggvision/v1/metrics/uplink", "jsonMessage", {
        "backlog_bytes": {"alerts": 0, "results": 2048, "clips": 0, "video": 52428800},
        "online": {"s3": False}, "evicted": {"video": 3}})
    text = _render(dash)
    assert "door" in text and "2×person, car" in text and "0.6" in text  # 3 messages in the 5 s window
    assert "gate ↓3 ↑0, queue 4" in text  # the Filter's analytics counts
    assert "fire p=0.97" in text and "thermal-1" in text
    assert "synthetic-detector" in text and "9.2" in text and "CPU" in text
    assert "52,428,800 B" in text and "offline" in text and "video 3" in text
