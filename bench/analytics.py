"""Counting accuracy of the Filter's analytics (ggvision/filter/analytics.py) on scripted crowds with known
answers, at tracker level: ground-truth boxes of ggvision.sim.scenes.counting_scene, spoiled the way a detector
spoils them, at the detect rate, into the real IoU tracker and Analytics.

    .venv/bin/python bench/analytics.py                  # the table for docs/filter.md (about a minute)
    .venv/bin/python bench/analytics.py --quick          # one seed, 300 s scenes
    .venv/bin/python bench/analytics.py --json out.json
    .venv/bin/python bench/analytics.py --video --seeds 4,5,6   # other scenes, to check a change was not fitted
    .venv/bin/python bench/analytics.py --tracker-cpu           # IouTracker.update alone, 3 / 8 / 35 people
    .venv/bin/python bench/analytics.py --stack 240 --save stack.json   # the whole edge path, seed 11 (real time)
    .venv/bin/python bench/analytics.py --stack 240 --seeds 12,13,14 --save s.json   # more scenes, then pooled

What a detector does to the boxes (per sample, seeded): each edge moves by N(0, σ·size) (σ 3 %, "heavy": 6 %),
a person is missed with probability 8 % (heavy: 15 %), a one-frame false positive appears in 2 % of the
frames (heavy: 5 %) and, in "typical" and "heavy", nobody is detected behind a pillar (anchor x 0.60..0.66
of the frame, over the line: occlusion; recall is also given over the crossings seen within a second on both
sides, since a crossing made wholly behind the pillar cannot be counted by anyone).

Ground truth: a crossing is the exact anchor path (Walker.at, sampled at 100 Hz) passing through the line
segment, with its direction; a stay is a stretch of the exact path inside the zone. A counted crossing
matches a true one of the same direction within 2 s and 10 % of the line's length of where it was (each
once, nearest first); precision = matched / counted, recall = matched / true, count error = |counted − true|
/ true per direction, summed over directions. Dwell: counted stays are matched one to one to true ones by
interval overlap (IoU ≥ 0.3, best first); over the true stays of ≥ 2 s, the error |counted − true| in
seconds (median, p90) and the stays nothing matched. CPU: tracker + analytics process time per detections
message. --tracker-cpu: the tracker alone (`IouTracker.update`) on N random walkers (3, 8 and 35: a vtest-sized
crowd) at 5 fps with the detector noise above, process time per message, the best of 3 runs of 600 messages.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import cpu_model  # noqa: E402
from ggvision.config.filter import CameraConfig, parse_camera  # noqa: E402
from ggvision.filter.analytics import Analytics  # noqa: E402
from ggvision.filter.messages import Detection  # noqa: E402
from ggvision.filter.tracker import IouTracker  # noqa: E402
from ggvision.sim.scenes import ScriptedScene, counting_scene  # noqa: E402

W, H = 1280, 720
LINE = ((0.1, 0.55), (0.9, 0.55))
ZONE_BOX = (0.05, 0.65, 0.35, 0.95)
ZONE = [[ZONE_BOX[0], ZONE_BOX[1]], [ZONE_BOX[2], ZONE_BOX[1]], [ZONE_BOX[2], ZONE_BOX[3]], [ZONE_BOX[0], ZONE_BOX[3]]]
PILLAR = (0.60, 0.66)  # x range where nobody is detected (an occluder over the line)
MATCH_S = 2.0
MATCH_U = 0.1
MIN_STAY_S = 2.0


@dataclass(frozen=True)
class Noise:
    name: str
    sigma: float = 0.03
    miss: float = 0.08
    false_pos: float = 0.02
    pillar: bool = True


NOISE = {"clean": Noise("clean", 0.0, 0.0, 0.0, False), "noisy": Noise("noisy", pillar=False),
         "typical": Noise("typical"), "heavy": Noise("heavy", 0.06, 0.15, 0.05)}


def settings(band: float = 0.03, handover_s: float = 2.0) -> CameraConfig:
    return parse_camera("bench", {"zones": {"zone": ZONE}, "analytics": {
        "intervalS": 60, "handoverS": handover_s,
        "lines": {"line": {"points": [list(p) for p in LINE], "labels": ["person"], "band": band}},
        "zones": {"zone": {"labels": ["person"]}}}})


# -- ground truth ---------------------------------------------------------------------------------------

def _visible_around(w: Any, t: float, width: float) -> bool:
    """Out from behind the pillar at some time in the second before and in the second after t."""
    def out(t0: float, t1: float) -> bool:
        return any((p := w.at(t0 + k * (t1 - t0) / 10)) is not None and not PILLAR[0] <= p[0] / width <= PILLAR[1]
                   for k in range(11))
    return out(t - 1, t) and out(t, t + 1)


def true_crossings(scene: ScriptedScene) -> list[tuple[float, str, float, bool]]:
    """(t, in|out, where along the line 0..1, seen near it) of every path through the segment; "in" is
    downwards (the line's right, inSide's default); seen: not behind the pillar for the whole second before
    or after (with the pillar, the others cannot be counted by anyone)."""
    sw, sh = scene.width, scene.height
    (ax, ay), (bx, by) = ((x * sw, y * sh) for x, y in LINE)
    out = []
    for w in scene.walkers:
        t0, t1 = w.path[0][0], w.path[-1][0]
        prev = None
        for k in range(int((t1 - t0) * 100) + 1):
            t = t0 + k / 100
            p = w.at(t)
            if p is None:
                continue
            d = (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax)
            if prev is not None and (prev[1] > 0) != (d > 0):
                u = (p[0] - ax) / (bx - ax)
                if 0 <= u <= 1:
                    out.append((t, "in" if d > 0 else "out", u, _visible_around(w, t, sw)))
            prev = (t, d)
    return out


def true_stays(scene: ScriptedScene) -> list[tuple[float, float]]:
    """Every stretch of a path inside the zone (sampled at 20 Hz)."""
    x1, y1, x2, y2 = ZONE_BOX
    stays = []
    for w in scene.walkers:
        t0, t1 = w.path[0][0], w.path[-1][0]
        start = None
        for k in range(int((t1 - t0) * 20) + 2):
            t = min(t0 + k / 20, t1)
            p = w.at(t)
            inside = p is not None and x1 <= p[0] / scene.width <= x2 and y1 <= p[1] / scene.height <= y2
            if inside and start is None:
                start = t
            elif not inside and start is not None:
                stays.append((start, t))
                start = None
        if start is not None:
            stays.append((start, t1))
    return stays


# -- a detector's output --------------------------------------------------------------------------------

def detections(scene: ScriptedScene, t: float, noise: Noise, rng: np.random.Generator) -> list[Detection]:
    dets = []
    for ob in scene.truth(t):
        x1, y1, x2, y2 = ob.box
        cx = (x1 + x2) / 2 / W
        if noise.pillar and PILLAR[0] <= cx <= PILLAR[1]:
            continue
        if rng.random() < noise.miss:
            continue
        bw, bh = x2 - x1, y2 - y1
        j = rng.normal(0, noise.sigma, 4) if noise.sigma else np.zeros(4)
        dets.append(Detection("person", 0, float(rng.uniform(0.5, 0.95)),
                              (x1 + j[0] * bw, y1 + j[1] * bh, x2 + j[2] * bw, y2 + j[3] * bh)))
    if rng.random() < noise.false_pos:
        x, y, h = rng.uniform(0.1, 0.9) * W, rng.uniform(0.4, 1.0) * H, rng.uniform(90, 140)
        dets.append(Detection("person", 0, 0.5, (x - 0.2 * h, y - h, x + 0.2 * h, y)))
    return dets


def run(scene: ScriptedScene, duration_s: float, cfg: CameraConfig, noise: Noise, fps: float, seed: int
        ) -> tuple[list[tuple[Any, ...]], float, int]:
    rng = np.random.default_rng((seed, 7))
    tracker = IouTracker(cfg.tracker, cfg.stationary)
    an = Analytics(cfg.analytics, cfg.zones, cfg.zone_anchor, cfg.tracker.min_hits)
    an.log = []
    cpu = 0.0
    n = int(duration_s * fps)
    for k in range(n):
        t = k / fps
        dets = detections(scene, t, noise, rng)
        c0 = time.process_time()
        upd = tracker.update(dets, t)
        an.update(upd.started, upd.updated, upd.ended, tracker.tracks, t, (W, H))
        cpu += time.process_time() - c0
    t = n / fps + 10  # let the last tracks end and the handover window pass: their stays close
    upd = tracker.update([], t)
    an.update(upd.started, upd.updated, upd.ended, tracker.tracks, t, (W, H))
    an.due(t + 10, final=True)
    return an.log, cpu / n, n


def run_supervision(scene: ScriptedScene, duration_s: float, noise: Noise, fps: float, seed: int
                    ) -> tuple[list[tuple[Any, ...]], float, int]:
    """The same detections into supervision's zone tools over the `trackers` package's ByteTrack (their
    maintained tracker; supervision 0.31 no longer ships one): LineZone on the bottom-centre anchor,
    PolygonZone for the zone, stays per tracker id with our 1 s grace. Runs only where they are installed."""
    import supervision as sv
    from trackers import ByteTrackTracker

    (ax, ay), (bx, by) = ((x * W, y * H) for x, y in LINE)
    start, end = sv.Point(ax, ay), sv.Point(bx, by)
    down = _sv_direction(sv, start, end)
    rng = np.random.default_rng((seed, 7))
    # lost_track_buffer is in 30-fps frames (scaled by frame_rate): 45 -> 1.5 s, our tracker's maxAgeS; every
    # detection here is "high confidence" (scores 0.5..0.95), and minHits 2 is minimum_consecutive_frames 2
    tracker = ByteTrackTracker(lost_track_buffer=45, frame_rate=fps, track_activation_threshold=0.5,
                               minimum_consecutive_frames=2, high_conf_det_threshold=0.5)
    line = sv.LineZone(start, end, triggering_anchors=[sv.Position.BOTTOM_CENTER])
    zone = sv.PolygonZone(np.array([[x * W, y * H] for x, y in ZONE], dtype=np.int64))
    stays: dict[int, list[float]] = {}
    log: list[tuple[Any, ...]] = []
    cpu = 0.0
    n = int(duration_s * fps)
    for k in range(n):
        t = k / fps
        dets = detections(scene, t, noise, rng)
        xyxy = np.array([d.box for d in dets], dtype=np.float32).reshape(-1, 4)
        sd = sv.Detections(xyxy=xyxy, confidence=np.array([d.score for d in dets], dtype=np.float32),
                           class_id=np.zeros(len(dets), dtype=int))
        c0 = time.process_time()
        tracked = tracker.update(sd, timestamp=t)
        crossed_in, crossed_out = line.trigger(tracked)
        inside = zone.trigger(tracked)
        cpu += time.process_time() - c0
        for i in range(len(tracked)):
            x = (tracked.xyxy[i][0] + tracked.xyxy[i][2]) / 2
            u = (x - ax) / (bx - ax)
            if crossed_in[i] or crossed_out[i]:
                log.append(("cross", "line", "in" if bool(crossed_in[i]) == down else "out", "person", t, u))
            tid = int(tracked.tracker_id[i])
            if tid >= 0 and inside[i]:
                st = stays.get(tid)
                if st is not None and t - st[1] <= 1.0:
                    st[1] = t
                else:
                    if st is not None:
                        log.append(("dwell", "zone", st[0], st[1]))
                    stays[tid] = [t, t]
    log += [("dwell", "zone", a, b) for a, b in stays.values()]
    return log, cpu / n, n


def _sv_direction(sv: Any, start: Any, end: Any) -> bool:
    """Whether LineZone's "in" is a downward crossing of this line (its convention, found by trying one)."""
    probe = sv.LineZone(start, end, triggering_anchors=[sv.Position.BOTTOM_CENTER])
    for y in (300.0, 350.0, 450.0, 500.0):
        probe.trigger(sv.Detections(xyxy=np.array([[600.0, y - 100, 640.0, y]], dtype=np.float32),
                                    class_id=np.array([0]), tracker_id=np.array([1])))
    return probe.in_count == 1


def run_video(scene: ScriptedScene, duration_s: float, fps: float) -> tuple[list[tuple[Any, ...]], float, int]:
    """Rendered frames through the product's own detector (the synthetic-detector model component, loaded by
    ggvision.model.loader as Inference loads it) into the Filter's CameraPipeline (its analytics included)
    as detections/1.0 messages: the Inference -> Filter path without IPC and Capture's decoding."""
    from ggvision.filter.events import CameraPipeline
    from ggvision.filter.messages import parse_detections
    from ggvision.model.loader import load_model

    model = load_model(str(REPO / "components" / "com.ggvision.Model.SyntheticDetector"), provider="cpu")
    cfg = settings()
    with tempfile.TemporaryDirectory() as tmp:
        pipe = CameraPipeline(cfg.model_copy(update={"policy": "metadata"}), Path(tmp))
        pipe.analytics.log = []
        cpu = 0.0
        n = int(duration_s * fps)
        for k in range(n):
            t = k / fps
            img, _ = scene.render(t)
            dets = model.infer([img])[0][0]["detections"]
            msg = parse_detections({"schema": "detections/1.0", "camera": "bench", "sequence": k, "timestamp": t,
                                    "frame": {"ring": "bench", "slot": 0, "generation": k,
                                              "shape": [scene.height, scene.width, 3]},
                                    "model": {"name": "synthetic-detector", "version": "1.0.0"},
                                    "detections": [d for d in dets if d["label"] == "person"]})
            c0 = time.process_time()
            pipe.on_detections(msg)
            cpu += time.process_time() - c0
        pipe.expire(n / fps + 10)
        pipe.flush()
        return pipe.analytics.log, cpu / n, n


def render_video(scene: ScriptedScene, duration_s: float, fps: int, out: Path) -> Path:
    """The scene as an H.264 MPEG-TS file (a keyframe a second), as a camera would send it."""
    import av

    with av.open(str(out), "w") as box:
        stream = box.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, "yuv420p"
        stream.options = {"g": str(fps), "bf": "0", "preset": "veryfast"}
        for k in range(int(duration_s * fps)):
            img, _ = scene.render(k / fps)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                box.mux(packet)
        for packet in stream.encode():
            box.mux(packet)
    return out


def run_stack(scene: ScriptedScene, duration_s: float, fps: float
              ) -> tuple[list[tuple[Any, ...]], dict[str, Any], list[dict[str, Any]]]:
    """The real Capture -> Inference -> Filter path: the rendered video played in real time by Capture's file
    source (decoded at detectFps), the synthetic-detector model component in Inference, the Filter with the
    bench's line and zone, under the local runtime (tests/suite_dev.py's recipes). Returns the crossings the
    same tracker + analytics count on the detections/1.0 messages the Filter received (per-crossing timing
    for scoring), the Filter component's own totals from its last filter-metrics/1.0 and the messages."""
    sys.path.insert(0, str(REPO / "tests"))
    from capture_dev import NAME as CAPTURE
    from capture_dev import capture_dev_recipe
    from harness import Runtime
    from suite_dev import AGENT, AGENT_ACL, CAMERA, received, start_suite, subscribe, write_suite

    tmp = Path(tempfile.mkdtemp(prefix="ggv-bench-analytics-"))
    dets: list[dict[str, Any]] = []
    video = render_video(scene, duration_s, 10, tmp / "scene.ts")
    cam = settings()
    rt = Runtime(tmp, [AGENT], config={AGENT: {"accessControl": AGENT_ACL}})
    try:
        names = write_suite(rt, ("inference", "filter"), overrides={
            "filter": {"cameras": {CAMERA: {"policy": "metadata", "zones": {"zone": ZONE}, "analytics": {
                "intervalS": 60, "lines": {"line": cam.analytics.lines["line"].model_dump(by_alias=True)},
                "zones": {"zone": {"labels": ["person"]}}}}}}})
        capture_dev_recipe(rt.recipes, cameras={CAMERA: {
            "source": {"type": "file", "path": str(video), "realtime": True}, "detectFps": fps,
            "record": {"enabled": False}}}, metricsPeriodS=1)
        agent = start_suite(rt, {**names, "capture": CAPTURE})
        subscribe(agent, dets=f"ggvision/v1/detections/{CAMERA}", metrics="ggvision/v1/metrics/filter")
        deadline = time.monotonic() + duration_s + 60
        while time.monotonic() < deadline:  # until the file has played (no new detections for 5 s)
            time.sleep(5)
            seen = len(dets)
            dets = received(agent, "dets")  # everything so far
            if dets and len(dets) == seen:
                break
        time.sleep(3)  # the Filter's idle tick ends the last tracks; a metrics message follows
        metrics = [m for m in received(agent, "metrics") if CAMERA in m.get("cameras", {})]
        totals = metrics[-1]["cameras"][CAMERA].get("analytics", {}) if metrics else {}
    finally:
        rt.cleanup()
        if dets:  # kept with its logs when nothing came through
            shutil.rmtree(tmp, ignore_errors=True)
    # the same tracker + analytics on the same messages, for the per-crossing log; scene time = media time
    dets.sort(key=lambda m: m["timestamp"])
    log, info = replay_stack(dets, scene, duration_s, {"component_totals": totals.get("crossings", {})})
    return log, info, dets


def replay_stack(dets: list[dict[str, Any]], scene: ScriptedScene, duration_s: float, info: dict[str, Any]
                 ) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """The tracker and analytics over the detections/1.0 messages the Filter received in a --stack run."""
    from ggvision.filter.messages import parse_detections

    cam = settings()
    t0 = dets[0]["timestamp"] if dets else 0.0
    tracker = IouTracker(cam.tracker, cam.stationary)
    an = Analytics(cam.analytics, cam.zones, cam.zone_anchor, cam.tracker.min_hits)
    an.log = []
    for m in dets:
        d = parse_detections(m)
        t = d.timestamp - t0
        upd = tracker.update([x for x in d.detections if x.label == "person" and x.score >= cam.min_score], t)
        an.update(upd.started, upd.updated, upd.ended, tracker.tracks, t, (scene.width, scene.height))
    upd = tracker.update([], duration_s + 10)
    an.update(upd.started, upd.updated, upd.ended, tracker.tracks, duration_s + 10, (scene.width, scene.height))
    an.due(duration_s + 20, final=True)
    return an.log, {"messages": len(dets), **info, "replayed_totals": an.totals()["crossings"]}


def tracker_cpu(people: int, frames: int = 600, seed: int = 3) -> float:
    """ms per IouTracker.update on `people` random walkers (1280x720, boxes 40x100 px, 20-120 px/s, bouncing off
    the edges, each box's edges jittered by 3 % and 8 % missed), best of 3 runs."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform((50, 120), (W - 50, H - 5), (people, 2))
    vel = rng.uniform(-120, 120, (people, 2))
    msgs = []
    for _ in range(frames):
        pos += vel / 5
        vel[(pos[:, 0] < 30) | (pos[:, 0] > W - 30), 0] *= -1
        vel[(pos[:, 1] < 110) | (pos[:, 1] > H - 2), 1] *= -1
        dets = []
        for x, y in pos:
            if rng.random() < 0.08:
                continue
            j = rng.normal(0, 0.03, 4)
            dets.append(Detection("person", 0, float(rng.uniform(0.5, 0.95)),
                                  (x - 20 + 40 * j[0], y - 100 + 100 * j[1], x + 20 + 40 * j[2], y + 100 * j[3])))
        msgs.append(dets)
    cfg = settings()
    best = math.inf
    for _ in range(3):
        tracker = IouTracker(cfg.tracker, cfg.stationary)
        c0 = time.process_time()
        for k, dets in enumerate(msgs):
            tracker.update(dets, k / 5)
        best = min(best, (time.process_time() - c0) / frames)
    return 1000 * best


VTEST_LINE = ((0.0, 0.6), (1.0, 0.6))  # across the plaza, 60 % down: "in" is walking down (towards the camera's bottom)


def run_vtest(video: Path, model: Path, fps: float) -> dict[str, Any]:
    """vtest.avi with YOLOX-Nano (as bench/bandwidth.py runs it) at `fps` into the Filter's CameraPipeline with
    one line; no ground truth but what a person sees (docs/filter.md)."""
    import av

    from bench.bandwidth import Detector
    from ggvision.filter.events import CameraPipeline
    from ggvision.filter.messages import parse_detections

    det = Detector(model)
    cfg = parse_camera("vtest", {"policy": "metadata", "classes": {"person": {"minScore": 0.4}}, "analytics": {
        "intervalS": 60, "lines": {"line": {"points": [list(p) for p in VTEST_LINE], "labels": ["person"]}}}})
    with tempfile.TemporaryDirectory() as tmp:
        pipe = CameraPipeline(cfg, Path(tmp))
        pipe.analytics.log = []
        next_t, k = 0.0, 0
        with av.open(str(video)) as c:
            for frame in c.decode(video=0):
                t = float(frame.pts * frame.time_base)
                if t + 1e-6 < next_t:
                    continue
                next_t += 1 / fps
                img = frame.to_ndarray(format="bgr24")
                dets = [d for d in det.run(img) if d["label"] == "person"]
                pipe.on_detections(parse_detections({
                    "schema": "detections/1.0", "camera": "vtest", "sequence": k, "timestamp": t,
                    "frame": {"ring": "bench", "slot": 0, "generation": k, "shape": list(img.shape)},
                    "model": {"name": "yolox-nano", "version": "1"}, "detections": dets}))
                k += 1
        counts = [o.message["payload"] for o in pipe.flush()
                  if o.message.get("payload", {}).get("schema") == "counts/1.0"]
    crossings = [(round(e[4], 1), e[2], round(float(e[5]), 3)) for e in pipe.analytics.log if e[0] == "cross"]
    return {"messages": k, "crossings": crossings, "counts": counts}


# -- scoring --------------------------------------------------------------------------------------------

def _match(truth: list[tuple[float, str, float, bool]], counted: list[tuple[float, str, float]]
           ) -> tuple[set[int], set[int]]:
    pairs = sorted((abs(tc - t) / MATCH_S + abs(uc - u) / MATCH_U, i, j)
                   for i, (t, d, u, _) in enumerate(truth) for j, (tc, dc, uc) in enumerate(counted)
                   if dc == d and abs(tc - t) <= MATCH_S and abs(uc - u) <= MATCH_U)
    used_t: set[int] = set()
    used_c: set[int] = set()
    for _, i, j in pairs:
        if i not in used_t and j not in used_c:
            used_t.add(i)
            used_c.add(j)
    return used_t, used_c


FLIP_S = 3.0  # a false crossing with the same object's opposite one this close: it went over and back


def false_kinds(truth: list[tuple[float, str, float, bool]], log: list[tuple[Any, ...]]) -> dict[str, int]:
    """What the false crossings (counted, matched to no true one) are: `back-and-forth` (the same object —
    across ID switches — counted the opposite direction within FLIP_S: the track jumped over the line to a
    neighbour's box and back, or one person's box was over it and back), `duplicate` (another counted crossing
    of the same direction within the match window: two tracks counted one person), `wrong-direction` (a true
    crossing the other way there), `phantom` (nothing true near)."""
    cross = [e for e in log if e[0] == "cross"]
    counted = [(e[4], e[2], e[5]) for e in cross]
    _, used_c = _match(truth, counted)
    out = {"back-and-forth": 0, "duplicate": 0, "wrong-direction": 0, "phantom": 0}
    for j, e in enumerate(cross):
        if j in used_c:
            continue
        t, d, u = counted[j]
        serial = e[6] if len(e) > 6 else None
        if serial and any(k != j and len(f) > 6 and f[6] == serial and f[2] != d and abs(f[4] - t) <= FLIP_S
                          for k, f in enumerate(cross)):
            out["back-and-forth"] += 1
        elif any(k != j and dc == d and abs(tc - t) <= MATCH_S and abs(uc - u) <= MATCH_U
                 for k, (tc, dc, uc) in enumerate(counted)):
            out["duplicate"] += 1
        elif any(dt != d and abs(tt - t) <= MATCH_S and abs(ut - u) <= MATCH_U for tt, dt, ut, _ in truth):
            out["wrong-direction"] += 1
        else:
            out["phantom"] += 1
    return out


def score(truth: list[tuple[float, str, float, bool]], log: list[tuple[Any, ...]], pillar: bool
          ) -> dict[str, float]:
    counted = [(e[4], e[2], e[5]) for e in log if e[0] == "cross"]
    pairs = sorted((abs(tc - t) / MATCH_S + abs(uc - u) / MATCH_U, i, j)
                   for i, (t, d, u, _) in enumerate(truth) for j, (tc, dc, uc) in enumerate(counted)
                   if dc == d and abs(tc - t) <= MATCH_S and abs(uc - u) <= MATCH_U)
    used_t: set[int] = set()
    used_c: set[int] = set()
    for _, i, j in pairs:
        if i not in used_t and j not in used_c:
            used_t.add(i)
            used_c.add(j)
    matched = len(used_t)
    n_true = {d: sum(1 for x in truth if x[1] == d) for d in ("in", "out")}
    n_count = {d: sum(1 for x in counted if x[1] == d) for d in ("in", "out")}
    seen = [i for i, x in enumerate(truth) if x[3] or not pillar]
    return {"true": len(truth), "counted": len(counted), "matched": matched, "seen": len(seen),
            "seen_matched": sum(1 for i in seen if i in used_t),
            "count_error": sum(abs(n_count[d] - n_true[d]) for d in n_true) / max(len(truth), 1)}


def dwell_score(stays: list[tuple[float, float]], log: list[tuple[Any, ...]]) -> dict[str, float]:
    """Counted stays matched one to one with true ones by interval overlap (IoU ≥ 0.3, best first); the error
    over the true stays of at least MIN_STAY_S."""
    counted = [(e[2], e[3]) for e in log if e[0] == "dwell"]

    def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
        inter = min(a[1], b[1]) - max(a[0], b[0])
        return inter / (max(a[1], b[1]) - min(a[0], b[0])) if inter > 0 else 0.0

    pairs = sorted(((iou(s, c), i, j) for i, s in enumerate(stays) for j, c in enumerate(counted)
                    if iou(s, c) >= 0.3), reverse=True)
    match: dict[int, int] = {}
    used: set[int] = set()
    for _, i, j in pairs:
        if i not in match and j not in used:
            match[i] = j
            used.add(j)
    long = [i for i, (t0, t1) in enumerate(stays) if t1 - t0 >= MIN_STAY_S]
    errors = sorted(abs((counted[match[i]][1] - counted[match[i]][0]) - (stays[i][1] - stays[i][0]))
                    for i in long if i in match)
    return {"stays": len(long), "dwell_median_err_s": statistics.median(errors) if errors else math.nan,
            "dwell_p90_err_s": errors[int(0.9 * (len(errors) - 1))] if errors else math.nan,
            "stays_missed": sum(1 for i in long if i not in match),
            "mean_true_s": statistics.mean(stays[i][1] - stays[i][0] for i in long) if long else math.nan}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=None,
                    help="the scenes (default 1,2,3: the table's; 4,5,6 were kept aside to check a change; "
                         "--stack: default 11, the documented scene)")
    ap.add_argument("--video", action="store_true",
                    help="rendered frames through the synthetic-detector model into the Filter's pipeline instead")
    ap.add_argument("--vtest", nargs="?", const=REPO.parent / "shared" / "data" / "video" / "vtest.avi", type=Path,
                    help="count on the real test video with YOLOX-Nano (../shared) instead")
    ap.add_argument("--stack", type=float, metavar="SECONDS",
                    help="a rendered video of this length through Capture, Inference and the Filter instead")
    ap.add_argument("--save", type=Path, metavar="JSON",
                    help="--stack: keep the detections messages it received (one seed: a list of messages; "
                         "several: an object of lists keyed by seed, written after each seed)")
    ap.add_argument("--replay", type=Path, metavar="JSON",
                    help="--stack: replay messages kept by --save through this tree's tracker instead of running "
                         "(a file of several seeds: the --seeds given, else all of them)")
    ap.add_argument("--supervision", action="store_true",
                    help="also supervision's LineZone/PolygonZone over ByteTrack (a venv that has them)")
    ap.add_argument("--tracker-cpu", action="store_true", help="the tracker alone: ms per message at 3, 8, 35 people")
    args = ap.parse_args()
    if args.tracker_cpu:
        for n in (3, 8, 35):
            print(f"{n} people: IouTracker.update {tracker_cpu(n):.3f} ms per message (best of 3)", flush=True)
        print(cpu_model())
        return 0
    if args.vtest is not None:
        model = REPO.parent / "shared" / "models" / "yolox_nano.onnx"
        if not args.vtest.exists() or not model.exists():
            print(f"skipped: {args.vtest} or {model} is absent (the shared data)")
            return 0
        res = run_vtest(args.vtest, model, 5.0)
        print(json.dumps(res, indent=1))
        return 0
    if args.stack:
        return stack_main(args)
    seeds, duration = ((1,), 300.0) if args.quick else (tuple(args.seeds or (1, 2, 3)), 600.0)
    variants = [  # (row name, noise, fps, band, handoverS)
        ("exact boxes, 5 fps", "clean", 5, 0.03, 2.0),
        ("detector noise, no occluder, 5 fps", "noisy", 5, 0.03, 2.0),
        ("typical: noise and the pillar, 5 fps (default settings)", "typical", 5, 0.03, 2.0),
        ("typical, 10 fps", "typical", 10, 0.03, 2.0),
        ("typical, no band (band 0)", "typical", 5, 0.0, 2.0),
        ("typical, band 0.06", "typical", 5, 0.06, 2.0),
        ("typical, no ID-switch handover (handoverS 0)", "typical", 5, 0.03, 0.0),
        ("heavy noise, 5 fps", "heavy", 5, 0.03, 2.0),
    ]
    if args.supervision:
        variants = [v for v in variants if v[1] in ("clean", "noisy", "typical", "heavy") and v[3:] == (0.03, 2.0)]
        variants += [(f"supervision: {name}", noise, fps, -1.0, 0.0) for name, noise, fps, _, _ in variants]
    if args.video:  # the detector was trained on 640x360 scenes with larger people
        duration = min(duration, 300.0)
        scenes = {s: counting_scene(640, 360, duration, seed=s, person_h=(0.22, 0.3)) for s in seeds}
        variants = [("rendered 640x360 video, synthetic-detector, 5 fps, CameraPipeline", "video", 5, 0.03, 2.0)]
    else:
        scenes = {s: counting_scene(W, H, duration, seed=s) for s in seeds}
    truths = {s: true_crossings(sc) for s, sc in scenes.items()}
    stays = {s: true_stays(sc) for s, sc in scenes.items()}
    rows = []
    for name, noise, fps, band, handover in variants:
        agg: dict[str, float] = {}
        cpu = []
        dw: dict[str, list[float]] = {}
        for s, sc in scenes.items():
            if noise == "video":
                log, per_msg, _ = run_video(sc, duration, fps)
            elif band < 0:  # the supervision rows
                log, per_msg, _ = run_supervision(sc, duration, NOISE[noise], fps, s)
            else:
                log, per_msg, _ = run(sc, duration, settings(band, handover), NOISE[noise], fps, s)
            for k, v in score(truths[s], log, noise in NOISE and NOISE[noise].pillar).items():
                agg[k] = agg.get(k, 0) + v
            for k, v in false_kinds(truths[s], log).items():
                agg[f"false:{k}"] = agg.get(f"false:{k}", 0) + v
            for k, v in dwell_score(stays[s], log).items():
                dw.setdefault(k, []).append(v)
            cpu.append(per_msg)
        k = len(scenes)
        row = {"variant": name, "true": agg["true"], "counted": agg["counted"],
               "precision": agg["matched"] / agg["counted"] if agg["counted"] else 1.0,
               "recall": agg["matched"] / agg["true"], "recall_seen": agg["seen_matched"] / agg["seen"],
               "count_error": agg["count_error"] / k,
               "dwell_median_err_s": statistics.mean(dw["dwell_median_err_s"]),
               "dwell_p90_err_s": statistics.mean(dw["dwell_p90_err_s"]),
               "stays": sum(dw["stays"]), "stays_missed": sum(dw["stays_missed"]),
               "mean_true_stay_s": statistics.mean(dw["mean_true_s"]), "cpu_ms_per_msg": 1000 * statistics.mean(cpu),
               "false": {k[6:]: int(v) for k, v in agg.items() if k.startswith("false:")}}
        rows.append(row)
        print(f"{name}: P {row['precision']:.1%} R {row['recall']:.1%} (seen {row['recall_seen']:.1%}) "
              f"count err {row['count_error']:.1%} "
              f"dwell err median {row['dwell_median_err_s']:.2f} s p90 {row['dwell_p90_err_s']:.2f} s "
              f"stays missed {row['stays_missed']}/{row['stays']} "
              f"cpu {row['cpu_ms_per_msg']:.3f} ms/msg; false crossings: "
              + ", ".join(f"{k} {v}" for k, v in row["false"].items()), flush=True)
    long_stays = sum(1 for v in stays.values() for a, b in v if b - a >= MIN_STAY_S)
    print(f"\n{len(seeds)} scenes × {duration:.0f} s, {sum(len(sc.walkers) for sc in scenes.values())} people, "
          f"{sum(len(t) for t in truths.values())} true crossings, {long_stays} stays ≥ 2 s; "
          f"{cpu_model()}, {time.strftime('%Y-%m-%d')}\n")
    print("| variant | true crossings | counted | precision | recall (of those seen) | count error | "
          "dwell error median / p90 | "
          "stays missed | CPU per message |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['variant']} | {r['true']:.0f} | {r['counted']:.0f} | {r['precision']:.1%} | {r['recall']:.1%} "
              f"({r['recall_seen']:.1%}) | "
              f"{r['count_error']:.1%} | {r['dwell_median_err_s']:.2f} / {r['dwell_p90_err_s']:.2f} s | "
              f"{r['stays_missed']} of {r['stays']} | {r['cpu_ms_per_msg']:.3f} ms |")
    if args.json:
        args.json.write_text(json.dumps({"machine": cpu_model(), "rows": rows}, indent=2))
    return 0


def stack_main(args: argparse.Namespace) -> int:
    """--stack: per seed (default 11, the scene docs/filter.md quotes) the whole path run, or its saved messages
    replayed; with several seeds, the pooled figures after the per-seed ones."""
    saved: Any = json.loads(args.replay.read_text()) if args.replay else None
    if isinstance(saved, dict):
        seeds = args.seeds or [int(k) for k in saved]
    else:
        seeds = args.seeds or [11]
        if saved is not None and len(seeds) != 1:
            print("a --replay file of one seed's messages needs exactly one --seeds", file=sys.stderr)
            return 2
    kept: dict[str, Any] = {}
    pooled: dict[str, Any] = {"true": 0, "counted": 0, "matched": 0, "false": {}}
    for seed in seeds:
        sc = counting_scene(640, 360, args.stack, seed=seed, person_h=(0.22, 0.3))
        if saved is not None:
            msgs = saved[str(seed)] if isinstance(saved, dict) else saved
            log, info = replay_stack(msgs, sc, args.stack, {})
        else:
            log, info, msgs = run_stack(sc, args.stack, 5.0)
            if args.save is not None:  # to replay them through another version of the tracker (--replay)
                kept[str(seed)] = msgs
                args.save.write_text(json.dumps(msgs if len(seeds) == 1 else kept))
        truth = true_crossings(sc)
        r = score(truth, log, False)
        kinds = false_kinds(truth, log)
        n_true = {d: sum(1 for x in truth if x[1] == d) for d in ("in", "out")}
        print(json.dumps({"seed": seed, **info, "true": n_true, "counted": r["counted"], "matched": r["matched"],
                          "precision": r["matched"] / max(r["counted"], 1),
                          "recall": r["matched"] / max(r["true"], 1), "count_error": r["count_error"],
                          "false": kinds, "machine": cpu_model()}, indent=1), flush=True)
        for k in ("true", "counted", "matched"):
            pooled[k] += r[k]
        for k, v in kinds.items():
            pooled["false"][k] = pooled["false"].get(k, 0) + v
    if len(seeds) > 1:
        print(json.dumps({"pooled_seeds": seeds, **pooled, "precision": pooled["matched"] / max(pooled["counted"], 1),
                          "recall": pooled["matched"] / max(pooled["true"], 1), "machine": cpu_model()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
