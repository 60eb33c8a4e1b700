"""Recorded health-summary/1.0 documents (the fields the gates read, as com.ggvision.Health publishes them)."""

from __future__ import annotations

from typing import Any


def summary(thing: str, t: float, version: str, *, p95: float = 20.0, error_ratio: float = 0.0,
            score: float = 0.6, fps: float = 5.0, model: str = "detector", shadow: float | None = None) -> dict:
    entry: dict[str, Any] = {"version": version, "provider": "CPUExecutionProvider", "p50_ms": p95 / 2,
                             "p95_ms": p95, "p99_ms": p95 * 1.2, "batches_per_s": fps, "load_ms": 30.0,
                             "errors_total": 0, "error_ratio": error_ratio, "score_mean": score}
    if shadow is not None:
        entry["shadow"] = {"matched_ratio": shadow}
    return {"schema": "health-summary/1.0", "thing": thing, "timestamp": t, "period_s": 2.0, "uptime_s": 100.0,
            "inference": {model: entry}, "inference_error_ratio": error_ratio, "inference_p95_ms": p95,
            "cameras_total": 1, "cameras_up": 1, "detection_fps_total": fps,
            "cameras": {"cam": {"up": True, "input_fps": fps, "decoded_fps": fps, "detection_fps": fps,
                                "frame_age_s": 0.1}},
            "components": {"com.ggvision.Inference": {"state": "RUNNING", "version": "0.1.0", "restarts": 0}},
            "alerts": [], "truncated": False}


def series(thing: str, version: str, n: int, t0: float = 1000.0, **kw: Any) -> list[dict]:
    return [summary(thing, t0 + 2 * i, version, **kw) for i in range(n)]
