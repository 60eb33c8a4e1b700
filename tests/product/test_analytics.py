"""Line crossing, occupancy, dwell, loitering and overcrowding (ggvision/filter/analytics.py) on hand-made
trajectories at 5 fps through the real tracker: jitter on the line, crossing back, an occlusion gap, an ID
switch, two people side by side, a fast object skipping over the line; then the same through the camera
pipeline: counts/1.0 items and rule hits as filter-alert/1.0; and the component under the local runtime
(counts when the detections stop, totals in its metrics)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from filter_dev import NAME as FILTER
from filter_dev import filter_dev_recipe
from harness import Runtime, wait_until

from ggvision.config.base import ConfigError
from ggvision.config.filter import parse_camera
from ggvision.config.site import load_site
from ggvision.filter import tracker as tracker_mod
from ggvision.filter.analytics import Analytics, Hit
from ggvision.filter.events import CameraPipeline, json_size
from ggvision.filter.messages import Detection, parse_detections
from ggvision.filter.tracker import IouTracker

W, H = 640, 360
FPS = 5
T0 = 1_795_000_040.0  # a multiple of 60 s plus 20: intervals close at T0 + 40, T0 + 100, ...
# a horizontal line across the middle, left to right: "right" of it (y down) is below: walking down is "in"
LINE = {"points": [[0.1, 0.5], [0.9, 0.5]], "labels": ["person"]}
ZONE = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]  # the left half


def box_at(x: float, y: float, w: float = 30, h: float = 80) -> tuple[float, float, float, float]:
    """A box whose bottom centre (the anchor) is at (x, y) pixels."""
    return (x - w / 2, y - h, x + w / 2, y)


Path_ = Callable[[int], tuple[float, float] | None]  # frame index -> anchor (pixels), None: not detected


class Run:
    """The real tracker and Analytics over per-frame anchors of several objects."""

    def __init__(self, settings: dict) -> None:
        self.cfg = parse_camera("cam", settings)
        self.tracker = IouTracker(self.cfg.tracker, self.cfg.stationary)
        self.an = Analytics(self.cfg.analytics, self.cfg.zones, self.cfg.zone_anchor, self.cfg.tracker.min_hits)
        self.hits: list[Hit] = []
        self.bodies: list[dict] = []
        self.i = 0
        self.started = 0  # tracks the tracker started

    def feed(self, paths: Iterable[Path_], frames: int, label: str = "person",
             extra: Callable[[int], list[Detection]] | None = None) -> Run:
        paths = list(paths)
        for _ in range(frames):
            t = T0 + self.i / FPS
            dets = [Detection(label, 0, 0.9, box_at(*p)) for f in paths if (p := f(self.i)) is not None]
            dets += extra(self.i) if extra is not None else []
            upd = self.tracker.update(dets, t)
            self.started += len(upd.started)
            self.hits += self.an.update(upd.started, upd.updated, upd.ended, self.tracker.tracks, t, (W, H))
            self.bodies += self.an.due(t)
            self.i += 1
        return self

    def crossings(self, line: str = "door") -> dict[str, int]:
        tot = self.an.totals()["crossings"][line]
        return {d: sum(tot[d].values()) for d in ("in", "out")}


def walk(y0: float, y1: float, start: int, frames: int, x: float = 320.0) -> Path_:
    """Straight down (or up) from y0 to y1 over `frames` frames from frame `start`; absent outside."""
    def f(i: int) -> tuple[float, float] | None:
        k = i - start
        if not 0 <= k < frames:
            return None
        return x, y0 + (y1 - y0) * k / max(frames - 1, 1)
    return f


def lines(**line: object) -> dict:
    return {"analytics": {"lines": {"door": {**LINE, **line}}}}


def test_a_walk_down_through_the_line_counts_one_in_and_back_up_one_out() -> None:
    r = Run(lines()).feed([walk(100, 300, 0, 20)], 30)
    assert r.crossings() == {"in": 1, "out": 0}
    r2 = Run(lines(inSide="left")).feed([walk(100, 300, 0, 20)], 30)
    assert r2.crossings() == {"in": 0, "out": 1}  # the direction follows inSide
    down_up = lambda i: (320.0, 100 + 20 * i) if i < 10 else (320.0, 280 - 20 * (i - 10)) if i < 20 else None  # noqa: E731
    r3 = Run(lines()).feed([down_up], 30)
    assert r3.crossings() == {"in": 1, "out": 1}


def test_jitter_on_the_line_counts_nothing_and_jitter_after_a_crossing_counts_it_once() -> None:
    # standing on the line (y = 180) with ±8 px of jitter, two frames each way (the band is 0.03 × 360 = 10.8 px)
    on_line = lambda i: (320.0, 180 + (8 if i // 2 % 2 else -8))  # noqa: E731
    assert Run(lines()).feed([on_line], 50).crossings() == {"in": 0, "out": 0}
    # comes from above, then jitters around the line for 10 s, then walks on below: one "in"
    path = lambda i: (320.0, 100 + 10 * i) if i < 8 else (320.0, 180 + (8 if i % 2 else -8)) if i < 58 \
        else (320.0, 180 + 10 * (i - 57))  # noqa: E731
    assert Run(lines()).feed([path], 70).crossings() == {"in": 1, "out": 0}
    # without the band the same jitter counts many crossings: the band is what holds it
    assert sum(Run(lines(band=0)).feed([on_line], 50).crossings().values()) > 10


def test_one_glitched_box_across_the_line_is_no_crossing() -> None:
    # standing 20 px below the line; in one frame the detector puts the box 50 px higher (across the line,
    # beyond the band), the next frame it is back: the tracker follows it (IoU 0.23), analytics counts nothing
    glitch = lambda i: (320.0, 150.0) if i == 10 else (320.0, 200.0)  # noqa: E731
    r = Run(lines()).feed([glitch], 20)
    assert r.started == 1 and r.crossings() == {"in": 0, "out": 0}
    # the same box held for two frames is a crossing (and back)
    held = lambda i: (320.0, 150.0) if i in (10, 11) else (320.0, 200.0)  # noqa: E731
    assert Run(lines()).feed([held], 20).crossings() == {"in": 1, "out": 1}


def test_a_fast_object_that_skips_over_the_line_between_two_samples_counts() -> None:
    # 150 px a frame at 5 fps: samples at y=105 and y=255, never near the line; the box is smaller
    # than the step, so the tracker must (and does) keep it as one track
    r = Run(lines(labels=["car"])).feed([lambda i: (320.0, 30 + 75 * i) if i < 5 else None], 10, label="car")
    assert r.crossings() == {"in": 1, "out": 0}


def test_an_occlusion_gap_over_the_line_counts_once() -> None:
    # detected above the line, not detected for 1 s (5 frames) while crossing, detected again below
    path = walk(100, 300, 0, 20)
    gap = lambda i: None if 7 <= i < 12 else path(i)  # noqa: E731
    r = Run(lines()).feed([gap], 30)
    assert r.crossings() == {"in": 1, "out": 0} and r.started == 1
    # hidden for 1.8 s, longer than tracker.maxAgeS (1.5): the track ends, a new one is born below the line
    # and takes over the ended one's side (handoverS 2): still one crossing
    path = walk(100, 300, 0, 25)
    long_gap = lambda i: None if 8 <= i < 17 else path(i)  # noqa: E731
    r2 = Run(lines()).feed([long_gap], 35)
    assert r2.crossings() == {"in": 1, "out": 0} and r2.started == 2
    no_handover = Run({"analytics": {"handoverS": 0.5, "lines": {"door": LINE}}}).feed([long_gap], 35)
    assert no_handover.crossings() == {"in": 0, "out": 0}  # the lost one never got past the band


def test_an_id_switch_at_the_line_counts_once() -> None:
    # the tracker loses the person at the line (a jump it cannot match: a new track is born below);
    # the new track continues the lost one's side: one crossing, not zero (nor two)
    up = walk(100, 170, 0, 8)
    jump = walk(240, 320, 8, 10)  # 70 px below the last sample: more than half a box, no tracker match
    r = Run(lines()).feed([lambda i: up(i) or jump(i)], 25)
    assert r.started == 2  # the tracker did switch ids
    assert r.crossings() == {"in": 1, "out": 0}
    # born *behind* where the counted one was lost (re-detected back above the line) it does not count again
    down = walk(100, 260, 0, 10)
    back = walk(190, 300, 10, 10)  # a new track near the line, then on below: still one crossing
    r2 = Run(lines()).feed([lambda i: down(i) or back(i)], 25)
    assert r2.started == 2
    assert r2.crossings() == {"in": 1, "out": 0}


def test_an_id_switch_is_a_handover_only_near_and_soon() -> None:
    # the same jump, but the new track appears far away (another person walking in): no handover, so the
    # lost person (who never got past the band) counts nothing and the newcomer, born below, nothing either
    up = walk(100, 170, 0, 8)
    far = walk(250, 320, 8, 10, x=600.0)
    assert Run(lines()).feed([lambda i: up(i) or far(i)], 25).crossings() == {"in": 0, "out": 0}
    # near, but after handoverS: no handover
    late = walk(240, 320, 8 + 3 * FPS, 10)
    r = Run(lines()).feed([lambda i: up(i) or late(i)], 45)
    assert r.crossings() == {"in": 0, "out": 0}


def test_two_people_side_by_side_count_two() -> None:
    a, b = walk(100, 300, 0, 20, x=300.0), walk(100, 300, 0, 20, x=336.0)  # 36 px apart, boxes 30 px wide
    r = Run(lines()).feed([a, b], 30)
    assert r.crossings() == {"in": 2, "out": 0}
    # one of them flickers (missed every third frame): still two
    fl = lambda i: None if i % 3 == 0 else b(i)  # noqa: E731
    assert Run(lines()).feed([a, fl], 30).crossings() == {"in": 2, "out": 0}


def test_a_pair_under_a_box_of_its_own_counts_two() -> None:
    # what the demo detector does to two people walking close side by side: a third, lower-scored box over
    # both (docs/filter.md: the duplicates). It starts no track: two crossings, not three
    a, b = walk(100, 300, 0, 20, x=300.0), walk(100, 300, 0, 20, x=324.0)  # boxes 30 px wide, 6 px shared

    def pair_box(i: int) -> list[Detection]:
        p, q = a(i), b(i)
        if p is None or q is None:
            return []
        x0, y0, x1, y1 = box_at((p[0] + q[0]) / 2, p[1] + 2, w=34, h=84)
        return [Detection("person", 0, 0.7, (x0, y0, x1, y1))]

    r = Run(lines()).feed([a, b], 30, extra=pair_box)
    assert r.started == 2
    assert r.crossings() == {"in": 2, "out": 0}
    # `tracker.cover` above 1 (no box is doubtful) is the tracker before doubtful boxes (docs/filter.md): the
    # pair box got a track and counted a third time
    old = Run({**lines(), "tracker": {"cover": 2}}).feed([a, b], 30, extra=pair_box)
    assert old.started == 3 and old.crossings() == {"in": 3, "out": 0}


def test_cover_is_a_camera_setting_through_the_filter_configuration() -> None:
    # tracker.cover from the component's defaults reaches the camera's pipeline; out of range is refused
    from ggvision.config.base import parse
    from ggvision.config.filter import FilterConfig

    cfg = parse(FilterConfig, {"defaults": {"tracker": {"cover": "0.7"}}, "cameras": {"a": {}, "b": {
        "tracker": {"cover": 2}}}})
    assert (cfg.cameras["a"].tracker.cover, cfg.cameras["b"].tracker.cover) == (0.7, 2.0)
    pipe = CameraPipeline(cfg.cameras["a"], Path("/nonexistent-work-dir"))
    assert pipe.tracker.cfg.cover == 0.7
    with pytest.raises(ConfigError, match="cover"):
        parse_camera("cam", {"tracker": {"cover": 0.05}})


def test_a_person_behind_two_others_keeps_its_track() -> None:
    # two better-scored people walk in from the sides and stop in front of a third, whose box they then cover:
    # it is doubtful, starts no track, but still continues its own (the second stage): one id throughout
    cfg = parse_camera("cam", {})
    tr = IouTracker(cfg.tracker, cfg.stationary)
    mine: set[int] = set()
    for k in range(20):
        y = 100 + 10 * k
        me = Detection("person", 0, 0.6, box_at(320, y))
        s = min(k, 8)  # the others close in from 50 px either side, 6 px a frame, then walk along
        left = Detection("person", 0, 0.9, box_at(256 + 6 * s, y + 4))
        right = Detection("person", 0, 0.9, box_at(384 - 6 * s, y + 4))
        upd = tr.update([left, me, right], T0 + k / FPS)
        mine |= {t.track_id for t in (*upd.started, *upd.updated) if t.detection is me}
        assert len(upd.started) == (3 if k == 0 else 0)
    assert len(mine) == 1
    assert tracker_mod._doubtful([left, me, right], cfg.tracker.cover) == [False, True, False]


def test_a_sudden_stop_and_a_turn_keep_the_track() -> None:
    # a person walking (12 px a sample, 80 px high) who stops dead, or turns back, keeps one track; the turn-back
    # past the line counts over and back (both true)
    stop = lambda i: (320.0, 100 + 12 * min(i, 5))  # noqa: E731 (stops 20 px short of the line)
    r = Run(lines()).feed([stop], 30)
    assert r.started == 1 and r.crossings() == {"in": 0, "out": 0}
    turn = lambda i: (320.0, 100 + 12 * (i if i <= 12 else 24 - i)) if i <= 24 else None  # noqa: E731
    r = Run(lines()).feed([turn], 30)
    assert r.started == 1 and r.crossings() == {"in": 1, "out": 1}
    # sideways, 12 px a sample with a box 30 px wide, turning back: the prediction is 24 px off the box after
    # the turn (0.8 of its width, out of the half-box reach), the last box 12 px: the last box keeps the track
    side = lambda i: (200 + 12 * (i if i <= 10 else 20 - i), 150.0)  # noqa: E731
    assert Run(lines()).feed([side], 20).started == 1

def test_a_person_missed_for_a_few_frames_keeps_its_id() -> None:
    # four missed samples (0.8 s at 5 fps, under maxAgeS) while walking: it reappears where its velocity
    # predicts, and the same track takes it (one event, one crossing over the line it passed meanwhile)
    f = walk(100, 300, 0, 20)
    gap = lambda i: None if 8 <= i < 12 else f(i)  # noqa: E731
    r = Run(lines()).feed([gap], 30)
    assert r.started == 1
    assert r.crossings() == {"in": 1, "out": 0}


def test_a_path_around_the_end_of_the_line_does_not_count() -> None:
    # the segment spans x 64..576; walking down at x = 620 crosses the line's extension only
    assert Run(lines()).feed([walk(100, 300, 0, 20, x=620.0)], 30).crossings() == {"in": 0, "out": 0}


def test_labels_not_listed_are_not_counted() -> None:
    r = Run(lines()).feed([walk(100, 300, 0, 20)], 30, label="car")
    assert r.crossings() == {"in": 0, "out": 0}


def zone(**rule: object) -> dict:
    return {"zones": {"left": ZONE}, "analytics": {"zones": {"left": {"labels": ["person"], **rule}}}}


def test_occupancy_dwell_and_the_interval_message() -> None:
    stay = lambda i: (100.0, 200.0) if 5 <= i < 5 + 10 * FPS else None  # noqa: E731 10 s in the zone
    # 24 px a frame sideways, more than half its 30-px box: the tracker starts a new track nearly every frame,
    # and the handover keeps it one object (one entry, one dwell, counted in the occupancy)
    walker = lambda i: (60.0 + 24 * (i - 20), 300.0) if 20 <= i < 40 else None  # noqa: E731 crosses x=320 at i=31
    r = Run(zone()).feed([stay, walker], 60 * FPS)
    assert r.an.occupancy["left"] == 0
    (body,) = r.bodies  # one interval closed: [T0 - 20, T0 + 40)
    assert (body["start"], body["end"]) == (T0 - 20, T0 + 40)
    z = body["zones"]["left"]
    assert z["max"] == 2 and z["entered"] == 2 and z["current"] == 0
    assert z["dwell"]["count"] == 2
    assert z["dwell"]["max_s"] == pytest.approx(10 - 1 / FPS, abs=0.01)  # first to last sample inside
    assert 2.0 <= min(body["zones"]["left"]["dwell"]["mean_s"], 10) <= 10


def test_jitter_at_a_zone_edge_is_one_stay() -> None:
    edge = lambda i: (320.0 + (5 if i % 4 == 0 else -5), 200.0) if i < 50 else None  # noqa: E731 x=0.5 is the edge
    r = Run(zone()).feed([edge], 45 * FPS)
    (body,) = r.bodies
    assert body["zones"]["left"]["entered"] == 1 and body["zones"]["left"]["dwell"]["count"] == 1


def test_loitering_fires_once_per_track_and_survives_an_id_switch() -> None:
    idle = lambda i: (100.0 + (i % 3), 200.0) if i < 10 * FPS else None  # noqa: E731 slight sway in place
    r = Run(zone(loiterS=5)).feed([idle], 12 * FPS)
    (hit,) = r.hits
    assert hit.kind == "loitering" and hit.zone == "left" and hit.dwell_s == pytest.approx(5.2, abs=0.01)
    # the tracker loses it after 3 s and a new track is born on the spot: the dwell goes on (fires at 5 s
    # from the first entry, not 5 s after the switch), and only once
    a = lambda i: (100.0, 200.0) if i < 3 * FPS else None  # noqa: E731
    b = lambda i: (100.0, 160.0) if 3 * FPS + 1 <= i < 10 * FPS else None  # noqa: E731 40 px up: a jump
    r2 = Run(zone(loiterS=5)).feed([a, b], 12 * FPS)
    assert [(h.kind, round(h.dwell_s, 1)) for h in r2.hits] == [("loitering", 5.2)]
    assert len({tr.track_id for tr in r2.tracker.tracks}) <= 1


def test_overcrowding_fires_above_the_limit_and_rearms_after_calm() -> None:
    people = [lambda i, k=k: (50.0 + 40 * k, 200.0) if (k < 2 or 10 <= i < 20 or 100 <= i < 110) else None
              for k in range(4)]
    r = Run(zone(maxOccupancy=3)).feed(people, 120)
    over = [h for h in r.hits if h.kind == "overcrowding"]
    # 4 > 3 from frame 10 (minHits 2: confirmed at frame 11), down to 2 at 20 (the lost ones age out in 1.5 s),
    # calm for 10 s, 4 again at 100: two hits
    assert [(h.occupancy, h.n) for h in over] == [(4, 1), (4, 2)]


def test_analytics_settings_errors_name_the_key_path() -> None:
    with pytest.raises(ConfigError, match=r"cameras\.cam\.analytics\.zones\.nope: no such zone"):
        parse_camera("cam", {"zones": {"left": ZONE}, "analytics": {"zones": {"nope": {}}}})
    with pytest.raises(ConfigError, match=r"cameras\.cam\.analytics\.lines\.door\.points: expected a line of 2"):
        parse_camera("cam", {"analytics": {"lines": {"door": {"points": [[0, 0]]}}}})
    with pytest.raises(ConfigError, match=r"analytics\.lines\.door\.inSide: one of left, right"):
        parse_camera("cam", {"analytics": {"lines": {"door": {**LINE, "inSide": "up"}}}})
    with pytest.raises(ConfigError, match=r"analytics\.lines\.door: points: the two points are the same"):
        parse_camera("cam", {"analytics": {"lines": {"door": {"points": [[0.5, 0.5], [0.5, 0.5]]}}}})


def det_msg(i: int, dets: list[dict]) -> dict:
    return {"schema": "detections/1.0", "camera": "cam", "sequence": i, "timestamp": T0 + i / FPS,
            "frame": {"ring": "ggv-cam-1", "slot": 0, "generation": 2, "shape": [H, W, 3]},
            "model": {"name": "truth", "version": "1"}, "detections": dets}


def test_the_pipeline_sends_counts_each_interval_and_rule_hits_as_alerts(tmp_path: Path) -> None:
    cfg = parse_camera("cam", {"zones": {"left": ZONE}, "policy": "metadata", "analytics": {
        "intervalS": 30, "lines": {"door": LINE}, "zones": {"left": {"labels": ["person"], "loiterS": 4}}}})
    p = CameraPipeline(cfg, tmp_path)
    down = walk(100, 300, 0, 20, x=100.0)  # in the left zone, through the line
    out = []
    for i in range(40 * FPS):
        dets = [{"label": "person", "class_id": 0, "score": 0.9, "box": list(box_at(*a))} for a in [down(i)] if a]
        out += p.on_detections(parse_detections(det_msg(i, dets)))
    out += p.flush()
    results = [o.message for o in out if o.topic == "ggvision/v1/uplink/put" and o.message["priority"] == "results"]
    counts = [m["payload"] for m in results if m["payload"]["schema"] == "counts/1.0"]
    # [T0-20, T0+10), then the final [T0+10, end of the run): the crossing is in the first
    assert [(c["start"], c["end"]) for c in counts] == [(T0 - 20, T0 + 10), (T0 + 10, T0 + 40 - 1 / FPS)]
    assert counts[0]["lines"] == {"door": {"in": {"person": 1}, "out": {}}} and counts[0]["camera"] == "cam"
    assert counts[0]["zones"]["left"]["dwell"]["count"] == 1 and counts[0]["hits"]["loitering"] == 0
    assert json_size(counts[0]) < 400  # docs/filter.md: ~350 B a minute for a camera with a line and a zone
    assert all(m["destination"] == "iot" and m["topic"] == "ggvision/{thing}/results" for m in results)
    # standing still 4 s in the zone is loitering: an alert on the person's event, with its rule
    alerts = [o.message["payload"] for o in out if o.topic == "ggvision/v1/uplink/put"
              and o.message["priority"] == "alerts"]
    assert alerts == []  # it walked through in 4 s: no loitering
    m = p.metrics()["analytics"]
    assert m["crossings"]["door"]["in"] == {"person": 1} and m["counts_sent"] == 2


def test_a_loitering_hit_goes_out_as_a_filter_alert(tmp_path: Path) -> None:
    cfg = parse_camera("cam", {"zones": {"left": ZONE}, "analytics": {"zones": {"left": {"loiterS": 3}}}})
    p = CameraPipeline(cfg, tmp_path)
    out = []
    for i in range(6 * FPS):
        d = {"label": "person", "class_id": 0, "score": 0.9, "box": list(box_at(100, 200))}
        out += p.on_detections(parse_detections(det_msg(i, [d])), lambda: None)
    alerts = [o.message for o in out if o.topic == "ggvision/v1/uplink/put" and o.message["priority"] == "alerts"]
    (a,) = alerts
    assert a["id"] == f"filter:cam:{a['payload']['event_id']}:alert-loitering-left"
    assert a["payload"]["rule"] == {"kind": "loitering", "zone": "left", "occupancy": 1, "loiter_s": 3.0}
    assert a["payload"]["schema"] == "filter-alert/1.0" and a["payload"]["dwell_s"] == pytest.approx(3.2)


# -- under the local runtime: the real Filter component and IPC client ----------------------------------------

COMP_CAM = "ana-e2e"


@pytest.fixture(scope="module")
def filt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    agent = "com.ggvision.test.Agent"
    acl = {"aws.greengrass.ipc.pubsub": {
        f"{agent}:pubsub:1": {"operations": ["aws.greengrass#SubscribeToTopic"], "resources": ["ggvision/v1/*"]},
        f"{agent}:pubsub:2": {"operations": ["aws.greengrass#PublishToTopic"],
                              "resources": [f"ggvision/v1/detections/{COMP_CAM}"]}}}
    tmp = tmp_path_factory.mktemp("analytics")
    rt = Runtime(tmp, [agent], config={agent: {"accessControl": acl}})
    cams = {COMP_CAM: {"policy": "metadata", "analytics": {"intervalS": 10, "lines": {"door": LINE}}}}
    filter_dev_recipe(rt.recipes, cameras=cams, workDir=str(tmp / "work"), metricsPeriodS=1)
    rt.filter_work = tmp / "work"  # type: ignore[attr-defined]
    try:
        rt.start(wait_for={agent: ("RUNNING",), FILTER: ("RUNNING",)})
        yield rt
    finally:
        rt.cleanup()


def test_the_component_sends_counts_when_detections_stop_and_exports_totals(filt: Runtime) -> None:
    a = filt.agent()
    for sub, topic in (("puts", "ggvision/v1/uplink/put"), ("metrics", "ggvision/v1/metrics/filter")):
        a.call("subscribe", id=sub, topic=topic)
    a.call("events", id="metrics", count=1, timeout=30)  # its subscriptions are in place
    t0 = math.floor(time.time() / 10) * 10  # the start of an interval: all 4 s of messages fall in it
    down = walk(100, 300, 0, 20)
    for i in range(20):  # 4 s of a person walking down through the line, then nothing
        a.call("publish_json", topic=f"ggvision/v1/detections/{COMP_CAM}", message={
            **det_msg(i, [{"label": "person", "class_id": 0, "score": 0.9, "box": list(box_at(*down(i)))}]),
            "camera": COMP_CAM, "timestamp": t0 + i / FPS})

    def counts() -> list[dict]:  # no later message closes the interval: the Filter's idle tick does, ~6 s on
        return [e["json"]["payload"] for e in a.call("events", id="puts", timeout=0.1)
                if e["json"].get("payload", {}).get("schema") == "counts/1.0"]

    (c,) = wait_until(counts, 30, what="the interval's counts/1.0 put")
    assert (c["camera"], c["start"], c["end"]) == (COMP_CAM, t0, t0 + 10)
    assert c["lines"]["door"] == {"in": {"person": 1}, "out": {}}
    # the box keeps it too, for the edge dashboard (the local log, under its 7-day rule)
    logged = [json.loads(x) for p in sorted((filt.filter_work / "local").glob("*/counts.jsonl"))  # type: ignore
              for x in p.read_text().splitlines()]
    assert [x["counts"] for x in logged] == [c]

    def totals() -> dict | None:
        for e in reversed(a.call("events", id="metrics", timeout=0.1)):
            an = e["json"]["cameras"][COMP_CAM].get("analytics")
            if an and an["counts_sent"]:  # the metrics after the counts went out
                return an
        return None

    an = wait_until(totals, 10, interval=0.3, what="metrics with the crossing")
    assert an["crossings"]["door"] == {"in": {"person": 1}, "out": {}} and an["counts_sent"] == 1


def test_a_site_file_carries_analytics_and_names_the_line_of_a_mistake(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    body = """\
stages:
  production: {thingGroup: ggvision-production}
sites:
  site-7:
    stage: production
    devices:
      site-7-box:
        cameras:
          door:
            capture: {source: {type: rtsp, url: rtsp://10.0.0.5/stream1}}
            filter:
              zones: {queue: [[0, 0.5], [0.5, 0.5], [0.5, 1], [0, 1]]}
              analytics:
                lines: {entrance: {points: [[0.1, 0.55], [0.9, 0.55]], inSide: %s}}
                zones: {queue: {loiterS: 60, maxOccupancy: 5}}
"""
    site.write_text(body % "left")
    cam = load_site(site).sites["site-7"].devices["site-7-box"].cameras["door"].filter
    assert cam.analytics.lines["entrance"].in_side == "left" and cam.analytics.zones["queue"].max_occupancy == 5
    site.write_text(body % "up")
    with pytest.raises(ConfigError, match=r"site\.yaml:14: .*analytics\.lines\.entrance\.inSide: one of left, right"):
        load_site(site)


def test_a_message_at_an_intervals_end_counts_in_the_next_interval(tmp_path: Path) -> None:
    """Intervals are [start, end): an object that enters the zone, or crosses, at the message that closes an interval
    is in the next interval's counts, not the closed one's."""
    cfg = parse_camera("cam", {"zones": {"left": ZONE}, "policy": "metadata", "analytics": {
        "intervalS": 60, "lines": {"door": LINE}, "zones": {"left": {}}}})
    p = CameraPipeline(cfg, tmp_path)
    out = []
    edge = 40 * FPS  # T0 + 40 s: the end of [T0 - 20, T0 + 40)
    for i in range(edge + 30 * FPS):
        k = i - edge
        dets = [{"label": "person", "class_id": 0, "score": 0.9, "box": list(box_at(100, 100 + 20 * k))}] \
            if 0 <= k < 10 else []
        out += p.on_detections(parse_detections(det_msg(i, dets)))
    out += p.flush()
    counts = [o.message["payload"] for o in out if o.topic == "ggvision/v1/uplink/put"
              and o.message["payload"]["schema"] == "counts/1.0"]
    assert [c["start"] for c in counts] == [T0 - 20, T0 + 40]
    assert counts[0]["zones"]["left"]["entered"] == 0 and counts[0]["lines"]["door"] == {"in": {}, "out": {}}
    assert counts[1]["zones"]["left"]["entered"] == 1 and counts[1]["lines"]["door"]["in"] == {"person": 1}


def stop(r: Run) -> dict:
    """The Filter stops after the run's last frame: the final (partial) interval's body."""
    (body,) = r.an.due(T0 + (r.i - 1) / FPS, final=True)
    return body


def test_crossings_waiting_at_shutdown_are_resolved_in_the_final_interval() -> None:
    # walks down through the line and is last seen beyond the band: the crossing waits for a confirming sighting
    # that never comes (the Filter stops), so it counts, in the final interval
    r = Run(lines()).feed([lambda i: (320.0, 100 + 10 * i)], 11)  # beyond the band (y > 190.8) at the last frame
    assert r.crossings() == {"in": 0, "out": 0} and r.an.lost == []  # waiting on the live track
    assert stop(r)["lines"]["door"] == {"in": {"person": 1}, "out": {}}
    # stops inside the band after going through the line (180 -> 186, band 10.8 px): its last anchor is on the
    # far side, no sighting will show that it was jitter: counts
    into_band = lambda i: (320.0, 100 + 10 * i) if i < 9 else (320.0, 186.0)  # noqa: E731
    assert stop(Run(lines()).feed([into_band], 12))["lines"]["door"]["in"] == {"person": 1}
    # went through the line into the band and came back to its own side within it: counts nothing
    back = lambda i: (320.0, 100 + 10 * i) if i < 9 else (320.0, 186.0) if i < 11 else (320.0, 175.0)  # noqa: E731
    assert stop(Run(lines()).feed([back], 13))["lines"]["door"] == {"in": {}, "out": {}}
    # jitters around the line since it was born inside the band (no side yet): counts nothing
    on_line = lambda i: (320.0, 180 + (8 if i // 2 % 2 else -8))  # noqa: E731
    assert stop(Run(lines()).feed([on_line], 20))["lines"]["door"] == {"in": {}, "out": {}}


def test_a_track_lost_at_shutdown_leaves_its_zone_and_its_crossing_counts() -> None:
    """A lost track waiting for a handover when the Filter stops: its crossing counts and it left its zone (dwell);
    an object still inside at the end has not left (no dwell)."""
    settings = {"zones": {"left": ZONE}, "analytics": {"lines": {"door": LINE}, "zones": {"left": {}}}}
    gone = lambda i: (100.0, 100 + 10 * i) if i < 11 else None  # noqa: E731 - in the left half, then not seen
    stays = lambda i: (200.0, 320.0)  # noqa: E731
    r = Run(settings).feed([gone, stays], 19)  # max age 1.5 s: ended at frame 18, within the handover time
    assert len(r.an.lost) == 1 and r.crossings() == {"in": 0, "out": 0}
    body = stop(r)
    assert body["lines"]["door"]["in"] == {"person": 1}
    assert body["zones"]["left"]["dwell"]["count"] == 1 and body["zones"]["left"]["current"] == 1


def test_the_component_publishes_the_partial_interval_when_it_stops(tmp_path: Path) -> None:
    """The real Filter under the local runtime, an hour's interval: a person walks down through the line and the
    Filter is stopped (StopComponent) at once, its last sighting just past the band (the crossing still waiting for
    a confirming sighting): the counts/1.0 put at shutdown holds the crossing, and the local log keeps it."""
    agent, cam = "com.ggvision.test.Agent", "ana-stop"
    acl = {"aws.greengrass.ipc.pubsub": {
        f"{agent}:pubsub:1": {"operations": ["aws.greengrass#SubscribeToTopic"], "resources": ["ggvision/v1/*"]},
        f"{agent}:pubsub:2": {"operations": ["aws.greengrass#PublishToTopic"],
                              "resources": [f"ggvision/v1/detections/{cam}"]}}}
    rt = Runtime(tmp_path, [agent], config={agent: {"accessControl": acl}})
    cams = {cam: {"policy": "metadata", "analytics": {"intervalS": 3600, "lines": {"door": LINE}}}}
    filter_dev_recipe(rt.recipes, cameras=cams, workDir=str(tmp_path / "work"), metricsPeriodS=1)
    try:
        rt.start(wait_for={agent: ("RUNNING",), FILTER: ("RUNNING",)})
        a = rt.agent()
        for sub, topic in (("puts", "ggvision/v1/uplink/put"), ("metrics", "ggvision/v1/metrics/filter")):
            a.call("subscribe", id=sub, topic=topic)
        a.call("events", id="metrics", count=1, timeout=30)
        t0 = time.time()
        for i in range(11):  # y = 100 .. 200: beyond the band (190.8) at the last one only
            d = {"label": "person", "class_id": 0, "score": 0.9, "box": list(box_at(320, 100 + 10 * i))}
            a.call("publish_json", topic=f"ggvision/v1/detections/{cam}",
                   message={**det_msg(i, [d]), "camera": cam, "timestamp": t0 + i / FPS})
        rt.client.stop_component(component_name=FILTER)
        rt.wait_state(FILTER, ("FINISHED", "STOPPING", "ERRORED", "BROKEN"), timeout=30)

        def counts() -> list[dict]:
            return [e["json"]["payload"] for e in a.call("events", id="puts", timeout=0.1)
                    if e["json"].get("payload", {}).get("schema") == "counts/1.0"]

        (c,) = wait_until(counts, 20, what="the counts/1.0 put at shutdown")
        assert c["camera"] == cam and c["end"] == pytest.approx(t0 + 10 / FPS, abs=1e-3)  # partial: ends at the last
        assert c["lines"]["door"] == {"in": {"person": 1}, "out": {}}
        logged = [json.loads(x)["counts"] for p in sorted((tmp_path / "work" / "local").glob("*/counts.jsonl"))
                  for x in p.read_text().splitlines()]
        assert logged == [c]
    finally:
        rt.cleanup()


def test_detections_received_before_the_stop_count_in_the_final_interval(tmp_path: Path) -> None:
    """close() handles what was queued but not handled yet before the final counts go out: 200 messages handed to
    the component and close() called at once (the pipeline thread stops at the flag, the rest is drained)."""
    from types import SimpleNamespace

    from ggvision.config.base import parse
    from ggvision.config.filter import FilterConfig
    from ggvision.filter.component import FilterComponent

    sent: list[tuple[str, dict]] = []
    app = SimpleNamespace(publish=lambda topic, msg: sent.append((topic, msg)), publish_errors=0)
    cfg = parse(FilterConfig, {"workDir": str(tmp_path / "work"), "localLog": {"enabled": False}, "cameras": {
        "cam": {"policy": "metadata", "analytics": {"intervalS": 3600, "lines": {"door": LINE}}}}})
    comp = FilterComponent(app, cfg)  # type: ignore[arg-type]
    n = 200
    for i in range(n):  # walks down through the line again and again: 10 crossings in 200 frames
        y = 100 + 10 * (i % 20)
        d = {"label": "person", "class_id": 0, "score": 0.9, "box": list(box_at(320, y))}
        comp.on_detections("ggvision/v1/detections/cam", det_msg(i, [d]))
    comp.close()
    assert comp.pipelines["cam"].stats.detections_msgs == n and comp.queue.qsize() == 0
    (c,) = [m["payload"] for _, m in sent if isinstance(m.get("payload"), dict)
            and m["payload"].get("schema") == "counts/1.0"]
    assert c["end"] == pytest.approx(T0 + (n - 1) / FPS) and c["lines"]["door"]["in"] == {"person": 10}
