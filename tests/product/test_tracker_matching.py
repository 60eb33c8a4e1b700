"""The tracker's numpy matching (crowds) picks exactly the pairs its per-pair loop (a few objects) picks."""

from __future__ import annotations

import random

import pytest

from ggvision.config.filter import StationaryConfig, TrackerConfig
from ggvision.filter import tracker as tracker_mod
from ggvision.filter.messages import Detection
from ggvision.filter.tracker import IouTracker


def _crowd(seed: int, frames: int = 60) -> list[list[Detection]]:
    """People and cars walking about at 5 fps, appearing, vanishing and flickering; some boxes coincide exactly
    (ties) and some touch only at an edge."""
    rng = random.Random(seed)
    objs = []
    for _ in range(rng.randint(1, 40)):
        x, y = rng.uniform(0, 1200), rng.uniform(0, 650)
        w, h = rng.choice([(40.0, 90.0), (120.0, 60.0), (rng.uniform(5, 200), rng.uniform(5, 200))])
        objs.append([rng.choice(["person", "car"]), x, y, w, h, rng.uniform(-30, 30), rng.uniform(-15, 15)])
    out = []
    for _ in range(frames):
        dets = []
        for o in objs:
            o[1] += o[5] * rng.choice([0.2, 0.2, 0.0, 1.0])
            o[2] += o[6] * 0.2
            if rng.random() < 0.85:
                box = (round(o[1]), round(o[2]), round(o[1] + o[3]), round(o[2] + o[4]))
                dets.append(Detection(o[0], 0, rng.uniform(0.3, 1), tuple(float(v) for v in box)))
                if rng.random() < 0.05:
                    dets.append(Detection(o[0], 0, 0.5, dets[-1].box))  # an exact duplicate: a tie
        rng.shuffle(dets)
        out.append(dets)
    return out


def _run(frames: list[list[Detection]], vector_from: int, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    monkeypatch.setattr(tracker_mod, "VECTOR_PAIRS", vector_from)
    tr = IouTracker(TrackerConfig(), StationaryConfig())
    log = []
    for k, dets in enumerate(frames):
        u = tr.update(dets, 1000.0 + 0.2 * k)
        log.append(([t.track_id for t in u.started], [(t.track_id, t.box, t.vx, t.vy) for t in u.updated],
                    [t.track_id for t in u.ended]))
    return log


@pytest.mark.parametrize("seed", range(12))
def test_numpy_matching_equals_the_loop(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _crowd(seed)
    assert _run(frames, 0, monkeypatch) == _run(frames, 1 << 30, monkeypatch)


@pytest.mark.parametrize("seed", range(12))
def test_doubtful_boxes_in_numpy_equal_the_loop(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Which boxes are doubtful (covered by two better ones of their label) is the same in both paths, and the
    crowds have some."""
    frames = _crowd(seed)
    monkeypatch.setattr(tracker_mod, "VECTOR_PAIRS", 0)
    fast = [tracker_mod._doubtful(dets, 0.5) for dets in frames]
    monkeypatch.setattr(tracker_mod, "VECTOR_PAIRS", 1 << 30)
    assert fast == [tracker_mod._doubtful(dets, 0.5) for dets in frames]
    if sum(len(d) for d in frames) > 60 * 20:
        assert any(any(f) for f in fast)
