"""Inference throughput: the com.ggvision.Inference component against a bare loop, with a batch-size sweep.

    .venv/bin/python bench/inference.py [--frames 200] [--batches 1 2 4 8] [--cameras 8] [--provider auto]
                                        [--json [PATH]]

Frames: the first --frames frames of ../shared/data/video/vtest.avi (1280x720), decoded once with PyAV.
Model: ../shared/models/yolox_nano.onnx. Its export fixes the batch at 1 (three Reshape constants [1, 85, -1]);
the bench writes a dynamic-batch variant (those constants become [0, 85, -1], "copy the batch dimension", and the
input/output batch dims symbolic; outputs identical) so batches of 2..8 exist at all. Both are written as model
folders (model.onnx + manifest.json) and loaded with ggvision.model.loader.load_model.

- bare: one Python loop in this process calling LoadedModel.infer on lists of B frames taken from memory, i.e.
  exactly the library work per batch (letterbox + tensor layout, session.run, YOLOX decode + NMS to
  detections/1.0 parts) with no IPC, no ring, no JSON. `session.run only` times session.run alone on a ready
  tensor (batch 1) to show what pre- and post-processing cost.
- component: the real path. `ggvision nucleus` runs the Inference dev component (same code as the product
  recipe, batch.maxSize = B) and the test agent, whose feeder writes the frames into one shared-memory ring per
  camera (--cameras) and publishes frame/1.0 descriptors over IPC. The feeder keeps at most 2 frames per camera
  beyond the last one answered (detections/1.0 back over IPC), so batches can fill while nothing is queued
  without bound. Rate = detections messages per second received by the feeder, after the first 2*B.
All rows run in the same process run on the same machine; ratio = component / bare at the same B.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the runtime harness and the dev recipes

from bench.machine import cpu_model  # noqa: E402
from ggvision.model.loader import load_model, write_model_dir  # noqa: E402

SHARED = REPO.parent / "shared"
VIDEO = SHARED / "data" / "video" / "vtest.avi"
YOLOX = SHARED / "models" / "yolox_nano.onnx"
COCO = SHARED / "models" / "coco_classes.txt"
AGENT = "com.ggvision.test.Agent"


def decode(path: Path, n: int) -> np.ndarray:
    frames = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="bgr24"))
            if len(frames) == n:
                break
    return np.stack(frames)


def dynamic_batch(onnx_path: Path) -> Any:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    shapes = {n.input[1] for n in m.graph.node if n.op_type == "Reshape"}
    for init in m.graph.initializer:
        if init.name in shapes:
            a = numpy_helper.to_array(init)
            if a.ndim == 1 and len(a) == 3 and a[0] == 1:
                init.CopyFrom(numpy_helper.from_array(np.array([0, *a[1:]], dtype=a.dtype), init.name))
    for vi in (m.graph.input[0], m.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    del m.graph.value_info[:]
    return m


def model_dirs(tmp: Path) -> tuple[Path, Path]:
    labels = [ln.strip() for ln in COCO.read_text().splitlines() if ln.strip()]

    def manifest(batch: int) -> dict[str, Any]:
        return {"schema": "model-manifest/1.0", "name": "yolox-nano", "version": "1.0.0", "family": "yolox",
                "task": "detection", "labels": labels,
                "input": {"name": "images", "shape": [batch, 3, 416, 416], "dtype": "float32", "layout": "NCHW",
                          "color": "BGR", "resize": "letterbox", "pad_value": 114},
                "thresholds": {"score": 0.3, "nms_iou": 0.45, "max_detections": 100},
                "decoder": {"strides": [8, 16, 32], "objectness": True}, "created_by": "bench/inference.py"}

    fixed = write_model_dir(tmp / "yolox-fixed", YOLOX, manifest(1))
    dyn = write_model_dir(tmp / "yolox-dynamic", dynamic_batch(YOLOX), manifest(-1))
    return fixed, dyn


def bare(model_dir: Path, frames: np.ndarray, batch: int, provider: str, seconds: float,
         trt_cache: Path | None = None) -> dict[str, Any]:
    model = load_model(model_dir, provider=provider, trt_cache_dir=trt_cache)
    n, i, done = len(frames), 0, 0
    model.infer([frames[j % n] for j in range(batch)])  # warm this batch shape
    t0 = time.perf_counter()
    while done < n or time.perf_counter() - t0 < seconds:
        model.infer([frames[(i + j) % n] for j in range(batch)])
        i += batch
        done += batch
    wall = time.perf_counter() - t0
    out = {"fps": done / wall, "frames": done, "provider": model.provider}
    model.close()
    return out


def session_only(model_dir: Path, provider: str, runs: int = 30, trt_cache: Path | None = None) -> float:
    model = load_model(model_dir, provider=provider, trt_cache_dir=trt_cache)
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    model.session.run(None, {"images": x})
    t0 = time.perf_counter()
    for _ in range(runs):
        model.session.run(None, {"images": x})
    fps = runs / (time.perf_counter() - t0)
    model.close()
    return fps


class ComponentRun:
    """One runtime with the Inference dev component and the feeding agent, reconfigured per batch size."""

    def __init__(self, tmp: Path, model_dir: Path, provider: str, trt_cache: Path | None = None) -> None:
        from harness import Runtime
        from inference_dev import FEEDER_ACL, NAME, inference_dev_recipe

        self.name = NAME
        self.rt = Runtime(tmp, [])

        def acl(doc: dict[str, Any]) -> None:
            doc["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"][
                "aws.greengrass.ipc.pubsub"].update(FEEDER_ACL["aws.greengrass.ipc.pubsub"])

        self.rt.write_component(AGENT, edit=acl)
        inference_dev_recipe(self.rt.recipes, models={"detector": {"path": str(model_dir), "cameras": ["*"]}},
                             provider=provider, metricsPeriodS=5, batch={"maxSize": 1, "deadlineMs": 15},
                             **({"trtCacheDir": str(trt_cache)} if trt_cache else {}))
        self.rt.launch()
        for name in (AGENT, NAME):
            self.rt.wait_state(name, "RUNNING", 60)
        self.agent = self.rt.agent()
        self.agent.call("subscribe", id="ready", topic="ggvision/v1/metrics/inference")
        self.agent.call("events", id="ready", count=1, timeout=300)  # subscribed and serving
        self.run_no = 0

    def measure(self, npy: Path, batch: int, cameras: int, frames: int) -> dict[str, Any]:
        d = self.rt.deploy(component_to_configuration={self.name: {"MERGE": {"batch": {"maxSize": batch}}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        self.run_no += 1
        cams = [f"b{self.run_no}-{k}" for k in range(cameras)]
        warm = 2 * batch
        per_cam = -(-(frames + warm) // cameras)
        self.agent.call("feed_start", id="bench", cameras=cams, npy=str(npy), count=per_cam, window=2, slots=8,
                        answer_timeout=30, answer_topic="ggvision/v1/detections/+")
        st = self.agent.call("feed_status", id="bench", wait=True, timeout=600)
        st = self.agent.call("feed_stop", id="bench", answers=True)
        answers = sorted(st["answers"], key=lambda a: a["t"])[warm:]
        wall = answers[-1]["t"] - answers[0]["t"]
        return {"fps": (len(answers) - 1) / wall, "frames": len(answers),
                "batch_mean": statistics.mean(a["batch_size"] for a in answers), "lost": len(st["lost"]),
                "published": sum(st["published"].values())}

    def close(self) -> None:
        self.rt.cleanup()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="frames decoded and measured per row")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--provider", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"])
    ap.add_argument("--min-seconds", type=float, default=3.0, help="least time per bare row")
    ap.add_argument("--repeat", type=int, default=2, help="alternate bare and component runs; medians shown")
    ap.add_argument("--trt-cache", type=Path,
                    help="TensorRT engine cache folder (default: one for this run; each load would build anew)")
    ap.add_argument("--json", nargs="?", const="-", help="also write the results as JSON (to PATH or stdout)")
    args = ap.parse_args()
    for p in (VIDEO, YOLOX, COCO):
        if not p.exists():
            print(f"{p} not found: this benchmark needs ../shared (yolox_nano.onnx and vtest.avi)", file=sys.stderr)
            return 2
    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="inference-bench-"))
    t_start = time.perf_counter()
    try:
        t0 = time.perf_counter()
        frames = decode(VIDEO, args.frames)
        npy = tmp / "frames.npy"
        np.save(npy, frames)
        console.print(f"decoded {len(frames)} frames {frames.shape[1:]} in {time.perf_counter() - t0:.1f} s")
        fixed, dyn = model_dirs(tmp)
        cache = args.trt_cache or tmp / "trt-cache"
        rows: list[dict[str, Any]] = []
        run = session_only(fixed, args.provider, trt_cache=cache)
        b1 = bare(fixed, frames, 1, args.provider, args.min_seconds, cache)
        provider = b1["provider"]
        rows.append({"row": "session.run only, as exported", "batch": 1, "bare_fps": run})
        rows.append({"row": "bare infer, as exported", "batch": 1, "bare_fps": b1["fps"]})
        load_model(dyn, provider=args.provider, trt_cache_dir=cache).close()  # a TensorRT engine built before the
        comp = ComponentRun(tmp / "rt", dyn, args.provider, cache)            # component's start is timed
        try:
            for b in args.batches:
                bares, comps = [], []
                for _ in range(args.repeat):  # alternated: background load drifts on a shared machine
                    bares.append(bare(dyn, frames, b, args.provider, args.min_seconds, cache)["fps"])
                    comps.append(comp.measure(npy, b, args.cameras, args.frames))
                    console.print(f"B={b}: bare {bares[-1]:.1f} fps, component {comps[-1]['fps']:.1f} fps "
                                  f"(mean batch {comps[-1]['batch_mean']:.2f}, {comps[-1]['lost']} lost)")
                bf, cf = statistics.median(bares), statistics.median(c["fps"] for c in comps)
                rows.append({"row": f"dynamic batch, B={b}", "batch": b, "bare_fps": bf, "component_fps": cf,
                             "ratio": cf / bf, "component_batch_mean": statistics.mean(c["batch_mean"] for c in comps),
                             "lost": sum(c["lost"] for c in comps), "bare_runs": bares,
                             "component_runs": [c["fps"] for c in comps]})
        finally:
            comp.close()
        table = Table(title=f"yolox_nano on {provider}, {cpu_model()} x{os.cpu_count()}, {len(frames)} frames of "
                            f"vtest.avi 1280x720, {args.cameras} cameras, median of {args.repeat}")
        for col in ("row", "bare fps", "component fps", "ratio", "mean batch", "lost"):
            table.add_column(col, justify="left" if col == "row" else "right")
        for r in rows:
            table.add_row(r["row"], f"{r['bare_fps']:.1f}",
                          f"{r['component_fps']:.1f}" if "component_fps" in r else "",
                          f"{r['ratio']:.2f}" if "ratio" in r else "",
                          f"{r['component_batch_mean']:.2f}" if "component_batch_mean" in r else "",
                          str(r.get("lost", "")))
        console.print(table)
        console.print(f"total {time.perf_counter() - t_start:.0f} s")
        if args.json:
            doc = {"machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version()},
                   "provider": provider, "frames": len(frames), "cameras": args.cameras, "rows": rows}
            text = json.dumps(doc, indent=2)
            if args.json == "-":
                print(text)
            else:
                Path(args.json).write_text(text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
