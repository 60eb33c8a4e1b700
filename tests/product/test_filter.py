"""com.ggvision.Filter's pure logic, in process: events from a synthetic scene with known tracks, parked
objects, redaction, alert and event sizes, the motion gate, upload policies and the budget, configuration
and message validation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ggvision.config.base import json_schema, parse, validator
from ggvision.config.filter import FilterConfig, parse_camera
from ggvision.filter.events import IOT_LIMIT, CameraPipeline, json_size
from ggvision.filter.messages import parse_ack, parse_detections, parse_segment
from ggvision.filter.motion import MotionGate
from ggvision.filter.policy import Budget
from ggvision.filter.rules import zones_of
from ggvision.sim.scenes import SyntheticScene

T0 = 1_795_000_000.0
FPS = 5
LEFT = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]


def det_msg(i: int, dets: list[dict], w: int = 640, h: int = 360, camera: str = "cam") -> dict:
    return {"schema": "detections/1.0", "camera": camera, "sequence": i, "timestamp": T0 + i / FPS,
            "frame": {"ring": "ggv-cam-1", "slot": 0, "generation": 2, "shape": [h, w, 3]},
            "model": {"name": "truth", "version": "1"}, "detections": dets}


def truth_dets(boxes: list, score: float = 0.9) -> list[dict]:
    return [{"label": b.label, "class_id": b.class_id, "score": score, "box": list(b.box)} for b in boxes]


def run(p: CameraPipeline, msgs: list[tuple[dict, np.ndarray | None]]) -> list:
    out = []
    for m, img in msgs:
        out += p.on_detections(parse_detections(m), (lambda img=img: img))
    return out + p.flush()


def events(outs: list, kind: str | None = None) -> list[dict]:
    return [o.message for o in outs if o.topic.startswith("ggvision/v1/events/") and kind in (None, o.message["kind"])]


def puts(outs: list, priority: str | None = None) -> list[dict]:
    return [o.message for o in outs
            if o.topic == "ggvision/v1/uplink/put" and priority in (None, o.message["priority"])]


def test_synthetic_scene_gives_one_event_per_track_with_start_end_and_zones(tmp_path: Path) -> None:
    scene = SyntheticScene(640, 360, FPS, seed=3, objects=5)
    visible = {tid: (10 + 20 * tid, 60 + 15 * tid) for tid in range(5)}  # frames each object is in view
    cfg = parse_camera("cam", {"zones": {"left": LEFT}, "classes": ["person", "car", "bicycle"]})
    p = CameraPipeline(cfg, tmp_path)
    msgs, expected_zones = [], {tid: [] for tid in visible}
    last_zones = {tid: frozenset() for tid in visible}
    for i in range(130):
        img, boxes = scene.render(i)
        seen = [b for b in boxes if visible[b.track_id][0] <= i < visible[b.track_id][1]]
        for b in seen:
            z = zones_of(b.box, (640, 360), cfg.zones)
            for name in z - last_zones[b.track_id]:
                expected_zones[b.track_id].append((name, "enter", round(T0 + i / FPS, 3)))
            for name in last_zones[b.track_id] - z:
                expected_zones[b.track_id].append((name, "leave", round(T0 + i / FPS, 3)))
            last_zones[b.track_id] = z
        msgs.append((det_msg(i, truth_dets(seen)), img))
    outs = run(p, msgs)
    ends = events(outs, "end")
    assert len(events(outs, "new")) == len(ends) == 5
    by_start = {round(e["start"], 3): e for e in ends}
    for tid, (a, b) in visible.items():
        e = by_start[round(T0 + a / FPS, 3)]
        assert e["label"] == scene.classes[scene.tracks[tid].class_id]
        assert e["end"] == pytest.approx(T0 + (b - 1) / FPS, abs=1e-3)
        assert [(z["zone"], z["action"], z["t"]) for z in e["zone_events"]] == expected_zones[tid]
        assert e["best"]["snapshot"] and e["boxes"][0][0] == e["start"]
    # every event id carried its best snapshot to the uplink, as a file the Uplink may move
    snaps = puts(outs, "clips")
    assert {s["metadata"]["event_ids"][0] for s in snaps} == {e["event_id"] for e in ends}
    assert all(Path(s["file"]).is_file() and s["move"] for s in snaps)


def test_a_parked_object_makes_one_event(tmp_path: Path) -> None:
    cfg = parse_camera("cam", {"stationary": {"afterS": 5, "maxAgeS": 30}, "events": {"updateMinS": 1}})
    p = CameraPipeline(cfg, tmp_path)
    rng = np.random.default_rng(0)
    img = np.full((360, 640, 3), 90, np.uint8)
    outs = []
    for i in range(10 * 60 * FPS):  # ten minutes at the detect rate
        if rng.random() < 0.3 or 200 <= i // FPS < 220:  # flicker, and a 20 s occlusion
            outs += p.on_detections(parse_detections(det_msg(i, [])), lambda: img)
            continue
        jitter = rng.normal(0, 1.5, 4)
        box = [200 + jitter[0], 150 + jitter[1], 360 + jitter[2], 240 + jitter[3]]
        score = float(np.clip(rng.normal(0.8, 0.05), 0, 1))
        outs += p.on_detections(parse_detections(det_msg(i, [{"label": "car", "class_id": 2, "score": score,
                                                                "box": box}])), lambda: img)
    assert len(events(outs, "new")) == 1
    assert len(events(outs, "update")) <= 3  # not one per better-scored frame
    # the tracker lost it for longer than maxAgeS: the same spot later is still no new event...
    p2 = CameraPipeline(parse_camera("cam", {"stationary": {"afterS": 5, "maxAgeS": 3}}), tmp_path)
    outs = []
    for i in list(range(0, 60 * FPS, FPS)) + list(range(120 * FPS, 180 * FPS, FPS)):
        outs += p2.on_detections(parse_detections(det_msg(i, [{"label": "car", "class_id": 2, "score": 0.8,
                                                                "box": [200, 150, 360, 240]}])), lambda: img)
    assert len(events(outs, "new")) == 1 and p2.stats.suppressed_tracks == 1
    # ...until it drives off: then the move is an event
    for k, i in enumerate(range(180 * FPS, 190 * FPS)):
        outs += p2.on_detections(parse_detections(det_msg(i, [{"label": "car", "class_id": 2, "score": 0.8,
                                                                "box": [200 + 8 * k, 150, 360 + 8 * k, 240]}])),
                                 lambda: img)
    assert len(events(outs, "new")) == 2


@pytest.mark.parametrize("method", ["pixelate", "blur", "fill"])
def test_redacted_snapshot_keeps_no_pixels_of_the_redacted_class(tmp_path: Path, method: str) -> None:
    scene = SyntheticScene(640, 360, FPS, seed=5, objects=0)
    img = scene.render(0)[0]
    # a person with a high-contrast texture (the thing redaction must destroy)
    box = (300.0, 100.0, 360.0, 250.0)
    yy, xx = np.mgrid[100:250, 300:360]
    img[100:250, 300:360] = np.where(((yy // 4 + xx // 4) % 2)[..., None] == 1, 250, 10).astype(np.uint8)
    cfg = parse_camera("cam", {"redact": {"classes": ["person"], "method": method, "margin": 0},
                               "classes": ["person", "car"],
                               "snapshot": {"format": "jpeg", "quality": 90, "maxWidth": 0, "crop": False}})
    p = CameraPipeline(cfg, tmp_path)
    dets = [{"label": "person", "class_id": 0, "score": 0.9, "box": list(box)},
            {"label": "car", "class_id": 2, "score": 0.9, "box": [20, 200, 200, 300]}]
    outs = run(p, [(det_msg(i, dets), img) for i in range(3)])
    snaps = puts(outs, "clips")
    assert snaps
    for s in snaps:
        got = cv2.imdecode(np.frombuffer(Path(s["file"]).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert got.shape == img.shape
        roi, orig = got[100:250, 300:360].astype(np.float32), img[100:250, 300:360].astype(np.float32)
        # the checkerboard's fine structure is gone: no high-frequency energy left inside the box ...
        lap = np.abs(cv2.Laplacian(cv2.cvtColor(got[100:250, 300:360], cv2.COLOR_BGR2GRAY), cv2.CV_32F))
        lap0 = np.abs(cv2.Laplacian(cv2.cvtColor(img[100:250, 300:360], cv2.COLOR_BGR2GRAY), cv2.CV_32F))
        assert lap.mean() < 0.05 * lap0.mean(), (method, lap.mean(), lap0.mean())
        # ... and nothing of it correlates with the original
        corr = np.corrcoef(roi.ravel(), orig.ravel())[0, 1]
        assert abs(corr) < 0.2, (method, corr)
        # a class not configured for redaction is left as it was (within JPEG error)
        assert np.abs(got[210:290, 30:190].astype(int) - img[210:290, 30:190].astype(int)).mean() < 4


def test_static_privacy_mask_is_applied_before_encoding(tmp_path: Path) -> None:
    img = np.zeros((360, 640, 3), np.uint8)
    img[:, :, 1] = (np.indices((360, 640))[1] % 2 * 255).astype(np.uint8)  # stripes everywhere
    cfg = parse_camera("cam", {"redact": {"masks": [[[0, 0], [0.25, 0], [0.25, 0.25], [0, 0.25]]], "method": "fill"},
                               "snapshot": {"quality": 95, "maxWidth": 0, "crop": False}})
    outs = run(CameraPipeline(cfg, tmp_path), [(det_msg(i, [{"label": "car", "class_id": 2, "score": 0.9,
                                                              "box": [300, 200, 400, 300]}]), img) for i in range(2)])
    got = cv2.imdecode(np.frombuffer(Path(puts(outs, "clips")[0]["file"]).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert got[5:85, 5:155].std() < 3 and got[200:300, 300:400].std() > 50


def test_alerts_and_events_stay_under_128_kb_with_huge_detection_counts(tmp_path: Path) -> None:
    cfg = parse_camera("cam", {"alerts": [{"name": "crowd", "classes": ["person"]}], "tracker": {"minHits": 1},
                               "classes": ["person"],
                               "alertImage": {"maxWidth": 1920, "quality": 100, "crop": False},
                               "events": {"maxBoxes": 1000}})
    p = CameraPipeline(cfg, tmp_path)
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (1080, 1920, 3), np.uint8)  # noise: the largest possible image
    n = 20_000
    xy = rng.uniform(0, 1900, (n, 2))
    dets = [{"label": f"class-{k % 5000}" if k % 2 else "person", "class_id": k % 80, "score": 0.5 + (k % 50) / 100,
             "box": [x, y / 2, x + 8, y / 2 + 16]} for k, (x, y) in enumerate(xy)]
    outs = p.on_detections(parse_detections(det_msg(0, dets, 1920, 1080)), lambda: img)
    alerts = puts(outs, "alerts")
    assert alerts and all(json_size(a["payload"]) <= IOT_LIMIT < 128 * 1024 for a in alerts)
    a = alerts[0]["payload"]
    assert a["detections_total"] == n and a["truncated"] and a["detections"] and a["objects"] == {"person": n // 2}
    assert len(alerts) == 30 and p.stats.alerts_suppressed == 70  # alertsPerMin: no alert storm
    for r in puts(outs, "results"):
        assert json_size(r["payload"]) <= IOT_LIMIT
    # a long-lived event's box history is thinned to fit as well
    long = CameraPipeline(parse_camera("cam", {"events": {"maxBoxes": 1000}}), tmp_path)
    outs = run(long, [(det_msg(i, [{"label": "car", "class_id": 2, "score": 0.9,
                                     "box": [i % 600, 10, i % 600 + 30, 40]}]), None) for i in range(3000)])
    end = events(outs, "end")[0]
    assert json_size(end) <= IOT_LIMIT and len(end["boxes"]) <= 1000


def test_alert_rules_class_zone_score_and_dwell(tmp_path: Path) -> None:
    cfg = parse_camera("cam", {"zones": {"left": LEFT}, "alerts": [
        {"name": "loiter", "classes": ["person"], "zones": ["left"], "minDwellS": 2},
        {"name": "confident-car", "classes": ["car"], "minScore": 0.8}]})
    p = CameraPipeline(cfg, tmp_path)
    msgs = []
    for i in range(30):  # a person walks into the left half at frame 10 and stays; a car never scores 0.8
        x = 500 - 20 * min(i, 15)
        msgs.append((det_msg(i, [{"label": "person", "class_id": 0, "score": 0.7, "box": [x, 100, x + 40, 200]},
                                 {"label": "car", "class_id": 2, "score": 0.75, "box": [0, 250, 100, 300]}]), None))
    outs = run(p, msgs)
    alerts = [a["payload"] for a in puts(outs, "alerts")]
    assert [a["alert"] for a in alerts] == ["loiter"]
    entered = next(z["t"] for e in events(outs) for z in e["zone_events"] if z["action"] == "enter")
    assert alerts[0]["timestamp"] - entered >= 2 and alerts[0]["dwell_s"] >= 2


def test_overwritten_frame_keeps_the_previous_best_snapshot(tmp_path: Path) -> None:
    p = CameraPipeline(parse_camera("cam", {}), tmp_path)
    img = np.full((360, 640, 3), 120, np.uint8)
    frames = [img, img, None, None]  # the better-scored frames were overwritten in the ring before we read them
    outs = run(p, [(det_msg(i, [{"label": "car", "class_id": 2, "score": 0.5 + 0.1 * i,
                                  "box": [10, 10, 100, 100]}]), f) for i, f in enumerate(frames)])
    end = events(outs, "end")[0]
    assert end["best"]["score"] == pytest.approx(0.6) and end["best"]["snapshot"]
    assert p.stats.snapshot_frames_missed == 2


def test_motion_gate_quiet_moving_and_global_change() -> None:
    cfg = parse_camera("cam", {}).motion
    quiet = SyntheticScene(640, 360, 10, seed=2, objects=0)
    gate = MotionGate(cfg)
    moving = [gate.check(quiet.render(i)[0]).moving for i in range(100)]
    assert sum(moving[1:]) == 0  # noise and the slow light change are no motion
    busy = SyntheticScene(640, 360, 10, seed=2, objects=3)
    gate = MotionGate(cfg)
    assert sum(gate.check(busy.render(i)[0]).moving for i in range(60)) >= 55
    gate = MotionGate(cfg)
    frames = [quiet.render(i)[0] for i in range(10)]
    for f in frames:
        gate.check(f)
    assert not gate.check(np.clip(frames[-1] * 1.3, 0, 255).astype(np.uint8)).moving  # exposure: no motion
    ir = cv2.cvtColor(255 - cv2.cvtColor(frames[-1], cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)  # IR switch: new scene
    r = gate.check(ir)
    assert r.recalibrated and not r.moving and gate.recalibrations == 1
    assert not gate.check(ir).moving
    # a masked area moves freely without waking the gate
    masked = MotionGate(parse_camera("cam", {"motion": {"masks": [[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]]}}).motion)
    base = quiet.render(0)[0]
    masked.check(base)
    blob = base.copy()
    cv2.rectangle(blob, (50, 50), (200, 200), (255, 255, 255), -1)
    assert not masked.check(blob).moving and gate_moves(cfg, base, blob)


def gate_moves(cfg, a: np.ndarray, b: np.ndarray) -> bool:
    g = MotionGate(cfg)
    g.check(a)
    return g.check(b).moving


def test_motion_gate_forwards_moving_frames_and_keepalives(tmp_path: Path) -> None:
    p = CameraPipeline(parse_camera("cam", {"motion": {"keepaliveS": 5}}), tmp_path)
    quiet = SyntheticScene(320, 180, 10, seed=2, objects=0)
    desc = {"schema": "frame/1.0", "camera": "cam", "slot": 0, "generation": 2, "shape": [180, 320, 3],
            "dtype": "uint8", "ring": "ggv-cam-1"}
    out = [p.on_frame({**desc, "sequence": i, "timestamp": T0 + i / 10}, quiet.render(i)[0]) for i in range(200)]
    passed = [o for o in out if o is not None]
    assert 3 <= len(passed) <= 6  # the first frame and one keepalive every 5 s of a 20 s quiet scene
    assert passed[0].topic == "ggvision/v1/motion/cam" and "ratio" in passed[0].message["motion"]
    assert p.metrics()["motion_ratio"] < 0.05


def _segments(n: int, dur: float = 2.0, size: int = 500_000) -> list[dict]:
    return [{"schema": "segment/1.0", "camera": "cam", "path": f"/seg/cam-{k:04d}.ts", "start": T0 + k * dur,
             "end": T0 + (k + 1) * dur, "size": size, "sha256": "ab" * 32} for k in range(n)]


def _policy_run(tmp_path: Path, **cfg) -> list:
    p = CameraPipeline(parse_camera("cam", cfg), tmp_path)
    p.now = lambda: 0.0  # the budget's clock stands still: what fits is decided by the bucket alone
    outs, segs = [], _segments(30)
    for i in range(300):  # 60 s at 5 fps; a car is in view from 20 s to 30 s
        t = i / FPS
        dets = [{"label": "car", "class_id": 2, "score": 0.9, "box": [10 + 5 * i, 10, 110 + 5 * i, 60]}] \
            if 20 <= t < 30 else []
        outs += p.on_detections(parse_detections(det_msg(i, dets)), lambda: np.zeros((360, 640, 3), np.uint8))
        if i % 10 == 9:  # a 2 s segment is announced when it is closed
            outs += p.on_segment(parse_segment(segs[i // 10]))
    return outs + p.flush()


def test_upload_policies_select_what_they_say(tmp_path: Path) -> None:
    cont = puts(_policy_run(tmp_path, policy="continuous"))
    assert len([m for m in cont if m["destination"] == "s3" and m["content_type"] == "video/mp2t"]) == 30
    clips = [m for m in cont if m.get("content_type") == "video/mp2t" and m["priority"] == "clips"]
    assert clips and all(m["metadata"]["event_ids"] for m in clips)

    ev = puts(_policy_run(tmp_path, policy="events", clipsFor="all", events={"preRollS": 4, "postRollS": 4}))
    segs = sorted(m["name"] for m in ev if m.get("content_type") == "video/mp2t")
    # car from 20 s to 29.8 s, pre/post roll 4 s: segments overlapping [16 s, 33.8 s)
    assert segs == [f"cam-{k:04d}.ts" for k in range(8, 17)]
    assert all(m["priority"] == "clips" and not m["move"] for m in ev if m.get("content_type") == "video/mp2t")
    assert any(m["priority"] == "results" for m in ev)
    assert not [m for m in puts(_policy_run(tmp_path, policy="events", clipsFor="alerts"))
                if m.get("content_type") == "video/mp2t"]  # no alert rule fired

    meta = puts(_policy_run(tmp_path, policy="metadata"))
    assert meta and {m["priority"] for m in meta} == {"results"} and all(m["destination"] == "iot" for m in meta)


def test_budget_drops_video_first_then_clips_never_results(tmp_path: Path) -> None:
    # 10 s of bucket at 400 kbit/s = 500 kB: room for one 500 kB segment at most, less its reserve
    outs = puts(_policy_run(tmp_path, policy="continuous", budgetKbps=800, burstS=10))
    video = [m for m in outs if m["priority"] == "video"]
    results = [m for m in outs if m["priority"] == "results"]
    assert len(video) <= 1 and results
    b = Budget(kbps=8, burst_s=100)  # 1000 B/s, depth 100 kB
    assert not b.admit("video", 60_000, 0)  # would leave less than the 50 % reserve
    assert b.admit("clip", 60_000, 0)
    assert not b.admit("clip", 30_000, 0) and b.admit("snapshot", 30_000, 0)
    assert b.admit("result", 50_000, 0) and b.tokens < 0  # results and alerts are never dropped
    assert b.admit("clip", 30_000, 200)  # refilled
    assert b.dropped_items == {"video": 1, "clip": 1}


def test_configuration_errors_name_the_key() -> None:
    validate = validator(FilterConfig)
    assert validate({"cameras": {"door": {"policy": "everything"}}}) == \
        "cameras.door.policy: one of continuous, events, metadata, got 'everything'"
    bad_zone = {"drive": [[0, 0], [2, 0], [1, 1]]}
    assert "cameras.door.zones.drive[1]" in validate({"cameras": {"door": {"zones": bad_zone}}})
    bad_score = {"person": {"minScore": 3}}
    assert "cameras.door.classes.person.minScore" in validate({"cameras": {"door": {"classes": bad_score}}})
    assert "cameras.door.alerts[0].zones: no such zone gate" in \
        validate({"cameras": {"door": {"alerts": [{"name": "a", "zones": ["gate"]}]}}})
    assert "cameras.door.alerts: rule names must be unique" in \
        validate({"cameras": {"door": {"alerts": [{"name": "a"}, {"name": "a"}]}}})
    assert "cameras.door.classes.car: minArea is above maxArea" in \
        validate({"cameras": {"door": {"classes": {"car": {"minArea": 0.5, "maxArea": 0.1}}}}})
    assert "cameras.door.zones.drive: expected a polygon of at least 3" in \
        validate({"cameras": {"door": {"zones": {"drive": [[0, 0], [1, 1]]}}}})
    assert "cameras.door.redact.masks[0][2]: expected [x, y]" in \
        validate({"cameras": {"door": {"redact": {"masks": [[[0, 0], [1, 0], [1]]]}}}})
    assert "cameras.door.alertImage: expected an object" in validate({"cameras": {"door": {"alertImage": True}}})
    assert "cameras.door: expected an object" in validate({"cameras": {"door": 5}})
    assert validate({"workDir": 3}) == "workDir: expected a path (string)"
    assert validate({"colour": 1}) == "unknown configuration keys: colour"
    # a bad default is reported under each camera that inherits it
    assert validate({"defaults": {"burstS": 0}, "cameras": {"a": {}, "b": {"burstS": 5}}}) == \
        "cameras.a.burstS: expected a number from 1 to 3600, got 0"
    assert "cameras.door: unknown keys colour" in validate({"cameras": {"door": {"colour": 1}}})
    assert "cameras.door.motion.threshold" in validate({"cameras": {"door": {"motion": {"threshold": 0}}}})
    assert "cameras.door.events.cloudBoxes" in validate({"cameras": {"door": {"events": {"cloudBoxes": 1}}}})
    cfg = parse(FilterConfig, {"defaults": {"policy": "metadata", "motion": {"width": 100}, "minScore": 0.5},
                               "cameras": {"a": {"classes": ["car"]}, "b": {"motion": {"threshold": 9}}, "c": None}})
    assert set(cfg.cameras) == {"a", "b"} and cfg.cameras["b"].policy == "metadata"
    assert cfg.cameras["b"].motion.width == 100 and cfg.cameras["b"].motion.threshold == 9
    assert cfg.cameras["a"].camera == "a" and cfg.cameras["a"].classes["car"].min_score == 0.5  # the camera's
    assert parse_camera("x", {"alertImage": False}).alert_image is None
    assert parse_camera("x", {"alertImage": {"quality": 50}}).alert_image.format == "jpeg"  # the alert defaults


def test_default_recipe_configuration_is_valid() -> None:
    import yaml

    recipe = Path(__file__).resolve().parents[2] / "components" / "com.ggvision.Filter" / "recipe.yaml"
    cfg = yaml.safe_load(recipe.read_text())["ComponentConfiguration"]["DefaultConfiguration"]
    parsed = parse(FilterConfig, cfg)
    cam = parsed.cameras["synthetic-1"]
    assert cam.policy == "events" and set(cam.classes) == {"person", "car", "bicycle"}
    assert json_schema(FilterConfig)["properties"]["defaults"]["$ref"].endswith("/CameraConfig")


def test_the_model_defaults_are_the_recipe_defaults() -> None:
    """What the recipe's `defaults` says is what a camera gets without it, except the known differences."""
    import yaml

    recipe = Path(__file__).resolve().parents[2] / "components" / "com.ggvision.Filter" / "recipe.yaml"
    cfg = yaml.safe_load(recipe.read_text())["ComponentConfiguration"]["DefaultConfiguration"]
    model = parse(FilterConfig, {"cameras": {"c": {}}})
    assert (model.work_dir, model.metrics_period_s) == (cfg["workDir"], cfg["metricsPeriodS"])
    plain = model.cameras["c"].model_dump(by_alias=True)
    differ = {}
    for key, value in cfg["defaults"].items():
        for sub, v in (value.items() if isinstance(value, dict) else [(None, value)]):
            got = plain[key] if sub is None else plain[key][sub]
            if (list(got) if isinstance(got, tuple) else got) != v:
                differ[f"{key}.{sub}" if sub else key] = (got, v)
    # budgetKbps: a camera configured without the recipe's defaults has no budget (0), the recipe sets 250
    assert differ == {"budgetKbps": (0.0, 250)}


def test_malformed_messages_are_refused_naming_the_field() -> None:
    good = det_msg(0, [{"label": "car", "class_id": 2, "score": 0.9, "box": [1, 2, 3, 4]}])
    assert parse_detections(good).detections[0].box == (1, 2, 3, 4)
    for bad, field in [({**good, "schema": "detections/2.0"}, "schema"),
                       ({**good, "timestamp": "now"}, "timestamp"),
                       ({**good, "detections": [{"label": "car", "score": 2, "box": [1, 2, 3, 4]}]}, "score"),
                       ({**good, "detections": [{"label": "car", "score": 0.5, "box": [5, 2, 3, 4]}]}, "box"),
                       ({**good, "frame": {"ring": "r", "slot": 0, "generation": 2, "shape": [1, 2]}}, "frame.shape")]:
        with pytest.raises(ValueError, match=field):
            parse_detections(bad)
    with pytest.raises(ValueError, match="path"):
        parse_segment({**_segments(1)[0], "path": "relative.ts"})
    with pytest.raises(ValueError, match="status"):
        parse_ack({"schema": "uplink-ack/1.0", "id": "x", "status": "maybe"})


def _walk(p: CameraPipeline, n: int, score, img: np.ndarray | None = None) -> tuple[list, list]:
    """A person walking right for n frames (score(i) per frame); the outputs before and at the flush."""
    img = np.full((360, 640, 3), 100, np.uint8) if img is None else img
    before = []
    for i in range(n):
        d = {"label": "person", "class_id": 0, "score": score(i), "box": [10 + 5 * i, 100, 50 + 5 * i, 200]}
        before += p.on_detections(parse_detections(det_msg(i, [d])), lambda: img)
    return before, p.flush()


def cloud(outs: list) -> list[dict]:
    return [m["payload"] for m in puts(outs, "results")]


def test_an_event_uploads_its_best_snapshot_once_at_its_end(tmp_path: Path) -> None:
    # 10 ever better pictures in an 8 s event: each after "new" is a local update, none goes up before the end
    p = CameraPipeline(parse_camera("cam", {"events": {"updateMinS": 0, "snapshotGain": 0.01}}), tmp_path)
    before, at_end = _walk(p, 40, lambda i: min(0.5 + 0.05 * i, 0.95))
    assert len(events(before, "update")) == 8 and not puts(before, "clips")
    snaps = puts(at_end, "clips")
    assert len(snaps) == 1 and snaps[0]["metadata"]["event_ids"] == [events(at_end, "end")[0]["event_id"]]
    end = cloud(at_end)[0]
    assert end["kind"] == "end" and end["best"]["snapshot"] == snaps[0]["id"] and end["best"]["score"] == 0.95
    # the cloud hears "new" once the event is cloudNewAfterS (5 s) old, and its end; updates stay local
    assert [e["kind"] for e in cloud(before)] == ["new"] and cloud(before)[0]["end"] - T0 >= 5
    assert cloud(before)[0]["best"]["snapshot"] is None
    # the cloud's box history is thinned to cloudBoxes, keeping the first and the last box
    local_end = events(at_end, "end")[0]
    assert len(end["boxes"]) == 8 < len(local_end["boxes"])
    assert end["boxes"][0] == local_end["boxes"][0] and end["boxes"][-1] == local_end["boxes"][-1]
    # a short event goes to the cloud as its end only
    short = CameraPipeline(parse_camera("cam", {}), tmp_path)
    before, at_end = _walk(short, 10, lambda i: 0.9)
    assert not cloud(before) and [e["kind"] for e in cloud(at_end)] == ["end"] and len(puts(at_end, "clips")) == 1
    assert [e["kind"] for e in events(before + at_end)] == ["new", "end"]


def test_an_alert_uploads_the_snapshot_it_names_at_once(tmp_path: Path) -> None:
    cfg = parse_camera("cam", {"alerts": [{"name": "sure", "classes": ["person"], "minScore": 0.7}]})
    p = CameraPipeline(cfg, tmp_path)
    before, at_end = _walk(p, 20, lambda i: min(0.5 + 0.05 * i, 0.95))  # 0.7 at frame 4; better until 9
    alert = puts(before, "alerts")[0]["payload"]
    early = puts(before, "clips")
    assert len(early) == 1 and alert["snapshot"] == early[0]["id"]
    assert [(e["kind"], e["best"]["snapshot"]) for e in cloud(before)] == [("new", early[0]["id"])]
    late = puts(at_end, "clips")  # the picture got better after the alert: one more, at the end
    assert len(late) == 1 and cloud(at_end)[0]["best"]["snapshot"] == late[0]["id"] != early[0]["id"]
    # no better picture after the alert: nothing more at the end
    p = CameraPipeline(cfg, tmp_path)
    before, at_end = _walk(p, 20, lambda i: 0.9)
    assert len(puts(before, "clips")) == 1 and not puts(at_end, "clips")
    assert cloud(at_end)[0]["best"]["snapshot"] == puts(before, "clips")[0]["id"]


def test_a_long_event_uploads_a_snapshot_after_snapshot_after_s_and_zone_changes_go_to_the_cloud(
        tmp_path: Path) -> None:
    cfg = parse_camera("cam", {"zones": {"left": LEFT}, "events": {"snapshotAfterS": 6}})
    p = CameraPipeline(cfg, tmp_path)
    img = np.full((360, 640, 3), 100, np.uint8)
    by_frame = []
    for i in range(80):  # walks right at 25 px/s: its feet leave the left half at frame 58 (11.6 s)
        d = {"label": "person", "class_id": 0, "score": 0.3 + 0.005 * i, "box": [10 + 5 * i, 100, 50 + 5 * i, 200]}
        by_frame.append(p.on_detections(parse_detections(det_msg(i, [d])), lambda: img))
    at_end = p.flush()
    assert [i for i, o in enumerate(by_frame) if puts(o, "clips")] == [30]  # once, after 6 s
    snap = puts(by_frame[30], "clips")[0]["id"]
    sent = [(i, e["kind"], e["zones"], e["best"]["snapshot"]) for i, o in enumerate(by_frame) for e in cloud(o)]
    assert sent == [(25, "new", ["left"], None), (30, "update", ["left"], snap), (58, "update", [], snap)]
    end = cloud(at_end)
    assert [e["kind"] for e in end] == ["end"] and len(puts(at_end, "clips")) == 1  # a better picture since
    assert [(z["zone"], z["action"]) for z in end[0]["zone_events"]] == [("left", "enter"), ("left", "leave")]


def test_the_recipe_default_budget_lets_an_alert_clip_of_a_real_camera_go() -> None:
    """A 10 s segment of a 3 Mbit/s camera (3.75 MB) must fit the default budget's bucket, or no clip ever leaves."""
    import yaml

    from ggvision.filter.policy import Budget

    recipe = yaml.safe_load((Path(__file__).resolve().parents[2] / "components" / "com.ggvision.Filter" /
                             "recipe.yaml").read_text())
    cam = parse(FilterConfig, recipe["ComponentConfiguration"]["DefaultConfiguration"]).cameras["synthetic-1"]
    assert cam.budget_kbps > 0
    budget = Budget(cam.budget_kbps, cam.burst_s)
    assert budget.admit("clip", 3_750_000, now=0.0)
    # continuous video only spends the bucket down to its reserve, then waits for the rate
    assert sum(budget.admit("video", 3_750_000, now=1.0) for _ in range(10)) == 1
