"""Bandwidth bench: uploaded bytes ÷ raw camera bytes per upload policy, with event recall.

    .venv/bin/python bench/bandwidth.py [--video PATH] [--model PATH] [--detect-fps 5] [--json [PATH]]

Scenes:
- vtest.avi (pedestrians, 1280x720 H.264) with YOLOX-Nano: the video is remuxed into MPEG-TS segments by
  the product's SegmentRecorder (no re-encoding; raw bytes = the sum of the segments = the camera's H.264
  stream). YOLOX-Nano runs on every frame (25 fps) once; the Filter's CameraPipeline gets the detections of
  the frames at --detect-fps (what Inference would see), the frames for snapshots, and the segments when
  they close.
- a quiet synthetic scene (SyntheticScene objects=0, 1280x720, 10 fps, 30 s) encoded to H.264 and
  segmented the same way; the motion gate decides which frames Inference would look at; the detector runs on
  those only.

Uploaded bytes = everything the pipeline hands to the Uplink: segment and snapshot file sizes, the JSON size
of event results and alerts, and ("envelope") the fields the Uplink adds for each of those JSON items in its
uplink-batch/1.0 entry (id, producer, priority, start, end; the batch's own header, shared by many items,
is left out). The budget's clock is the video's clock.

Recall: ground truth = YOLOX-Nano's own person detections on all frames at the full frame rate (score
>= 0.4, the person minScore the bench configures), linked into tracks by the same IoU tracker with minHits
1 (the detector is the reference: this measures what the Filter loses, not what the detector misses). A
ground-truth track lasting >= 1 s is recalled when some person event's "end" as it went to the cloud (its
box history thinned to events.cloudBoxes) has a box, at a frame time inside the track, overlapping the
track's box at that time with IoU >= 0.3. "events/track" is person events ÷ ground-truth tracks >= 1 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import av
import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import cpu_model  # noqa: E402
from ggvision.capture.recorder import SegmentRecorder  # noqa: E402
from ggvision.capture.synthetic import H264Encoder  # noqa: E402
from ggvision.config.filter import StationaryConfig, TrackerConfig, parse_camera  # noqa: E402
from ggvision.filter.events import PUT_TOPIC, CameraPipeline, json_size  # noqa: E402
from ggvision.filter.messages import Detection, parse_detections, parse_segment  # noqa: E402
from ggvision.filter.motion import MotionGate  # noqa: E402
from ggvision.filter.rules import iou  # noqa: E402
from ggvision.filter.tracker import IouTracker  # noqa: E402
from ggvision.sim.scenes import SyntheticScene  # noqa: E402

SHARED = REPO.parent / "shared"
DEFAULT_VIDEO = SHARED / "data" / "video" / "vtest.avi"
DEFAULT_MODEL = SHARED / "models" / "yolox_nano.onnx"
T0 = 1_795_000_000.0
BUDGET_KBPS = 250  # the recipe's default per-camera budget
GT_MIN_SCORE = 0.4  # the person minScore the bench configures: the reference is what the Filter is asked to keep
BURST_S = 5  # the bench's clips are short: a small bucket so the budget is in its steady state, not its burst
POLICIES = [  # (row name, camera settings); budgetKbps "5%": 5 % of the scene's raw bit rate
    ("continuous", {"policy": "continuous", "budgetKbps": 0}),
    (f"continuous, budget {BUDGET_KBPS} kbit/s", {"policy": "continuous", "budgetKbps": BUDGET_KBPS}),
    ("events, clips for all events", {"policy": "events", "clipsFor": "all", "budgetKbps": 0}),
    (f"events, clips for all, budget {BUDGET_KBPS} kbit/s", {"policy": "events", "clipsFor": "all",
                                                               "budgetKbps": BUDGET_KBPS}),
    ("events (default: clips for alerts)", {"policy": "events", "clipsFor": "alerts", "budgetKbps": 0}),
    ("events, budget 5% of raw", {"policy": "events", "clipsFor": "all", "budgetKbps": "5%"}),
    ("events, full-frame JPEG snapshots", {"policy": "events", "budgetKbps": 0,
                                           "snapshot": {"format": "jpeg", "quality": 80, "maxWidth": 640,
                                                        "crop": False}}),
    ("metadata", {"policy": "metadata", "budgetKbps": 0}),
]


class Detector:
    """YOLOX-Nano through the Inference component's loader when present, else onnxruntime + a minimal decode."""

    def __init__(self, model: Path) -> None:
        labels = [s.strip() for s in (model.parent / "coco_classes.txt").read_text().splitlines() if s.strip()]
        self.how = "ggvision.model.loader.load_model"
        try:
            from ggvision.model.loader import load_model, write_model_dir

            d = tempfile.mkdtemp(prefix="ggv-bench-model-")
            write_model_dir(d, model, {
                "name": "yolox-nano", "version": "1.0.0", "family": "yolox", "task": "detection",
                "input": {"name": "images", "shape": [1, 3, 416, 416], "dtype": "float32", "layout": "NCHW",
                          "color": "BGR", "scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1], "resize": "letterbox",
                          "pad_value": 114},
                "labels": labels, "thresholds": {"score": 0.3, "nms_iou": 0.45, "max_detections": 100},
                "decoder": {"strides": [8, 16, 32], "objectness": True}})
            m = load_model(d, provider="cpu")
            self.run = lambda img: m.infer([img])[0][0]["detections"]
        except ImportError:
            self.how = "onnxruntime + the bench's minimal YOLOX decode (ggvision.inference not available)"
            self.run = _minimal_yolox(model, labels)


def _minimal_yolox(model: Path, labels: list[str]) -> Any:
    import cv2
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    grids, strides = [], []
    for s in (8, 16, 32):
        n = 416 // s
        yv, xv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((n * n, 1), s))
    grid, stride = np.concatenate(grids), np.concatenate(strides)

    def run(img: np.ndarray) -> list[dict]:
        h, w = img.shape[:2]
        r = min(416 / h, 416 / w)
        pad = np.full((416, 416, 3), 114, np.uint8)
        pad[:round(h * r), :round(w * r)] = cv2.resize(img, (round(w * r), round(h * r)))
        out = sess.run(None, {"images": pad.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
        xy = (out[:, :2] + grid) * stride
        wh = np.exp(out[:, 2:4]) * stride
        scores = out[:, 4:5] * out[:, 5:]
        cls = scores.argmax(1)
        conf = scores[np.arange(len(cls)), cls]
        keep = conf >= 0.3
        boxes = np.concatenate((xy - wh / 2, xy + wh / 2), 1)[keep] / r
        idx = cv2.dnn.NMSBoxesBatched([list(map(float, (b[0], b[1], b[2] - b[0], b[3] - b[1]))) for b in boxes],
                                      conf[keep].tolist(), cls[keep].tolist(), 0.3, 0.45)
        return [{"label": labels[int(cls[keep][i])], "class_id": int(cls[keep][i]), "score": float(conf[keep][i]),
                 "box": [float(v) for v in boxes[i]]} for i in np.array(idx).reshape(-1)]

    return run


def _budget(settings: dict, raw: int, seconds: float) -> dict:
    if settings.get("budgetKbps") == "5%":
        return {**settings, "budgetKbps": 0.05 * raw * 8 / seconds / 1000}
    return settings


def segment(packets_of: Any, out_dir: Path, seconds: float) -> list[dict]:
    """Segments (segment/1.0 dicts) of a packet stream, by the product's recorder (cuts on keyframes)."""
    segs: list[dict] = []
    container, stream, packets = packets_of()
    rec = SegmentRecorder("bench", out_dir, seconds, stream, lambda s: segs.append(
        {"schema": "segment/1.0", "camera": "bench", "path": str(s.path), "start": s.start, "end": s.end,
         "size": s.size, "sha256": s.sha256}), time_offset=T0)
    for p in packets:
        rec.mux(p)
    rec.close()
    container.close()
    return segs


def run_policy(settings: dict, frames: list[tuple[float, list[dict], np.ndarray | None]], segs: list[dict],
               shape: tuple[int, int], work: Path) -> tuple[dict[str, int], list[dict], dict]:
    cfg = parse_camera("bench", {"classes": {"person": {"minScore": 0.4}}, "burstS": BURST_S, **settings})
    p = CameraPipeline(cfg, work)
    clock = [0.0]
    p.now = lambda: clock[0]
    outs = []
    pending = sorted(segs, key=lambda s: s["end"])
    h, w = shape
    for t, dets, img in frames:
        clock[0] = t - T0
        while pending and pending[0]["end"] <= t:
            outs += p.on_segment(parse_segment(pending.pop(0)))
        msg = parse_detections({"schema": "detections/1.0", "camera": "bench", "sequence": 0, "timestamp": t,
                                "frame": {"ring": "ggv-bench-1", "slot": 0, "generation": 2, "shape": [h, w, 3]},
                                "model": {"name": "yolox-nano", "version": "1"}, "detections": dets})
        outs += p.on_detections(msg, lambda img=img: img)
    outs += p.flush()
    for s in pending:
        clock[0] = s["end"] - T0
        outs += p.on_segment(parse_segment(s))
    by_kind: dict[str, int] = defaultdict(int)
    for o in outs:
        if o.topic != PUT_TOPIC:
            continue
        m = o.message
        if m["destination"] == "iot":
            by_kind[m["priority"]] += json_size(m["payload"])
            # the Uplink's uplink-batch/1.0 entry around the payload: {"id",…,"end",…,"payload":…}
            by_kind["envelope"] += json_size({k: m[k] for k in ("id", "producer", "priority", "start", "end")}) \
                + len(',"payload":')
        elif m.get("content_type") == "video/mp2t":
            by_kind["video" if m["priority"] == "video" else "clips"] += Path(m["file"]).stat().st_size
        else:
            by_kind["snapshots"] += Path(m["file"]).stat().st_size
    # recall is judged on what the cloud has: the "end" results as they were put
    ends = [o.message["payload"] for o in outs if o.topic == PUT_TOPIC and o.message["destination"] == "iot"
            and o.message["payload"].get("kind") == "end"]
    return dict(by_kind), ends, p.metrics()


def gt_tracks(all_dets: list[tuple[float, list[dict]]]) -> list[dict[float, tuple]]:
    # after_s beyond what a configuration may set (model_construct skips the range check): never stationary
    never_stationary = StationaryConfig.model_construct(after_s=1e9)
    tracker = IouTracker(TrackerConfig(iou=0.2, max_age_s=0.5, min_hits=1), never_stationary)
    boxes: dict[int, dict[float, tuple]] = defaultdict(dict)
    for t, dets in all_dets:
        persons = [Detection(d["label"], d["class_id"], d["score"], tuple(d["box"])) for d in dets
                   if d["label"] == "person" and d["score"] >= GT_MIN_SCORE]
        tracker.update(persons, t)
        for tr in tracker.tracks:
            if tr.detection is not None:
                boxes[tr.track_id][round(t, 3)] = tr.detection.box
    return [b for b in boxes.values() if max(b) - min(b) >= 1.0]


def recall(gt: list[dict[float, tuple]], ends: list[dict]) -> float:
    if not gt:
        return 1.0
    event_boxes = [(round(b[0], 3), tuple(b[1:])) for e in ends if e["label"] == "person" for b in e["boxes"]]
    hit = 0
    for track in gt:
        if any(t in track and iou(track[t], box) >= 0.3 for t, box in event_boxes):
            hit += 1
    return hit / len(gt)


def vtest(video: Path, model: Path, detect_fps: float, work: Path) -> dict[str, Any]:
    det = Detector(model)
    c = av.open(str(video))
    all_dets, frames = [], []
    t_det = time.perf_counter()
    due = 0.0
    for f in c.decode(video=0):
        img = f.to_ndarray(format="bgr24")
        t = T0 + float(f.time)  # the frame's own time (the container's nominal rate is not the real one)
        d = det.run(img)
        all_dets.append((t, d))
        if f.time + 1e-6 >= due:  # Capture's detect-rate sampling
            frames.append((t, d, img))
            due += 1 / detect_fps
    shape = img.shape[:2]
    c.close()
    detect_s = time.perf_counter() - t_det
    fps = (len(all_dets) - 1) / (all_dets[-1][0] - all_dets[0][0])
    duration = len(all_dets) / fps

    def packets() -> Any:
        cc = av.open(str(video))
        return cc, cc.streams.video[0], cc.demux(cc.streams.video[0])

    segs = segment(packets, work / "segments-vtest", 2.0)
    raw = sum(s["size"] for s in segs)
    gt = gt_tracks(all_dets)
    rows = []
    for name, settings in POLICIES:
        by_kind, ends, metrics = run_policy(_budget(settings, raw, duration), frames, segs, shape, work / "filter")
        up = sum(by_kind.values())
        persons = [e for e in ends if e["label"] == "person"]
        rows.append({"policy": name, "uploaded_bytes": up, "ratio": up / raw, "by_kind": by_kind,
                     "recall": recall(gt, ends), "events": len(persons),
                     "events_per_track": len(persons) / len(gt) if gt else None,
                     "dropped_by_budget": metrics["bytes_dropped_budget"]})
    return {"scene": f"vtest.avi + YOLOX-Nano ({det.how})", "duration_s": duration, "fps": fps,
            "detect_fps": len(frames) / duration, "raw_bytes": raw, "file_bytes": video.stat().st_size,
            "segments": len(segs), "gt_person_tracks_1s": len(gt), "detect_s": detect_s, "rows": rows}


def quiet(model: Path, detect_fps: float, work: Path, seconds: float = 30.0) -> dict[str, Any]:
    fps = 10.0
    scene = SyntheticScene(1280, 720, fps, seed=7, objects=0)
    enc = H264Encoder(1280, 720, fps)
    packets: list = []
    every = max(1, round(fps / detect_fps))
    frames_due = []
    for i in range(int(seconds * fps)):
        img = scene.render(i)[0]
        packets += enc.encode(img, i)
        if i % every == 0:
            frames_due.append((T0 + i / fps, img))
    packets += enc.ctx.encode(None)
    for p in packets:
        p.time_base = enc.TIME_BASE
    segs = segment(lambda: (enc, enc.template, packets), work / "segments-quiet", 10.0)
    raw = sum(s["size"] for s in segs)
    det = Detector(model)
    # Inference reading motion descriptors (frameTopics ggvision/v1/motion/+) needs the Filter's motion.publish on
    gate = MotionGate(parse_camera("bench", {"motion": {"publish": True}}).motion)
    passed, frames, last = 0, [], -1e9
    for t, img in frames_due:
        moving = gate.check(img).moving
        if moving or t - last >= 5.0:  # keepaliveS
            last = t
            passed += 1
            frames.append((t, det.run(img), img))
        else:
            frames.append((t, [], None))  # Inference skipped the frame: nothing detected, nothing to read
    rows = []
    for name, settings in POLICIES:
        by_kind, ends, _ = run_policy(_budget(settings, raw, seconds), frames, segs, (720, 1280), work / "filter")
        up = sum(by_kind.values())
        rows.append({"policy": name, "uploaded_bytes": up, "ratio": up / raw, "by_kind": by_kind, "recall": None,
                     "events": len(ends), "events_per_track": None, "dropped_by_budget": {}})
    return {"scene": "quiet synthetic (objects=0, 1280x720, 10 fps)", "duration_s": seconds, "fps": fps,
            "detect_fps": fps / every, "raw_bytes": raw, "segments": len(segs),
            "motion_pass_ratio": passed / len(frames_due), "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--detect-fps", type=float, default=5.0)
    ap.add_argument("--json", nargs="?", const="-", default=None)
    args = ap.parse_args()
    for p in (args.video, args.model):
        if not p.exists():
            print(f"{p} not found (../shared is absent)", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ggv-bench-bw-") as d:
        scenes = [vtest(args.video, args.model, args.detect_fps, Path(d)), quiet(args.model, args.detect_fps, Path(d))]
    result = {"machine": {"cpu": cpu_model(), "python": platform.python_version()}, "scenes": scenes,
              "wall_s": time.perf_counter() - t0}
    console = Console()
    for s in scenes:
        extra = (f"GT person tracks >= 1 s: {s['gt_person_tracks_1s']}" if "gt_person_tracks_1s" in s
                 else f"motion gate passed {s['motion_pass_ratio']:.1%} of frames")
        rate = s["raw_bytes"] * 8 / s["duration_s"] / 1e6
        table = Table(title=f"{s['scene']}: {s['duration_s']:.1f} s, raw {s['raw_bytes'] / 1e6:.2f} MB "
                            f"({rate:.2f} Mbit/s), detect {s['detect_fps']:.3g} fps; {extra}")
        for col in ("policy", "uploaded ÷ raw", "uploaded", "by kind (kB)", "person recall", "events/track"):
            table.add_column(col)
        for r in s["rows"]:
            table.add_row(r["policy"], f"{r['ratio']:.2%}", f"{r['uploaded_bytes'] / 1e3:.1f} kB",
                          ", ".join(f"{k} {v / 1e3:.1f}" for k, v in sorted(r["by_kind"].items())),
                          "-" if r["recall"] is None else f"{r['recall']:.0%}",
                          "-" if r["events_per_track"] is None else f"{r['events_per_track']:.2f}")
        console.print(table)
    console.print(f"{result['machine']['cpu']}, wall {result['wall_s']:.1f} s")
    if args.json:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
