"""The product Filter recipe, adapted to run from the development venv under the test runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import dev_recipe, write_recipe

from ggvision.config.filter import parse_camera
from ggvision.filter.events import CameraPipeline
from ggvision.filter.messages import parse_detections

NAME = "com.ggvision.test.FilterDev"


def filter_dev_recipe(out_dir: Path, cameras: dict[str, Any] | None = None, **config: Any) -> Path:
    """Same recipe and code as com.ggvision.Filter; only the name, Run (no Runtime venv) and the configuration
    given differ."""
    doc = dev_recipe("com.ggvision.Filter", NAME)
    default = doc["ComponentConfiguration"]["DefaultConfiguration"]
    if cameras is not None:
        default["cameras"] = cameras
    default.update(config)
    return write_recipe(doc, out_dir)


COUNTED = {"zones": {"hall": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]}, "policy": "metadata",
           "analytics": {"intervalS": 60, "lines": {"entrance": {"points": [[0.1, 0.5], [0.9, 0.5]]}},
                         "zones": {"hall": {}}}}


def filter_counts(camera: str, t0: float) -> list[dict[str, Any]]:
    """The real Filter's camera pipeline (tracker + analytics) watching two people walk down through the line in the
    hall and one walk up through it, a minute apart: its counts/1.0 uplink-put messages, the last one the partial
    interval flushed at shutdown."""
    pipe = CameraPipeline(parse_camera(camera, COUNTED), Path("/nonexistent-work-dir"))
    out = []

    def anchors(i: int) -> list[tuple[float, float]]:
        k = i % 300  # every minute at 5 fps: down at x=100 (in the hall) and x=500, then up at x=400
        down = [(x, 100 + 10 * k) for x in (100.0, 500.0) if k < 20]
        up = [(400.0, 300 - 10 * (k - 100))] if 100 <= k < 120 else []
        return down + up

    for i in range(5 * 130):
        dets = [{"label": "person", "class_id": 0, "score": 0.9, "box": [x - 15, y - 80, x + 15, y]}
                for x, y in anchors(i)]
        msg = {"schema": "detections/1.0", "camera": camera, "sequence": i, "timestamp": t0 + i / 5,
               "frame": {"ring": f"ggv-{camera}-1", "slot": 0, "generation": 2, "shape": [360, 640, 3]},
               "model": {"name": "truth", "version": "1"}, "detections": dets}
        out += pipe.on_detections(parse_detections(msg))
    out += pipe.flush()
    return [o.message for o in out if isinstance(o.message.get("payload"), dict)
            and o.message["payload"].get("schema") == "counts/1.0"]
