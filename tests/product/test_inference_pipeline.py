"""Inference pieces in-process with real (tiny) ONNX models and real frame rings: configuration validation,
model resolution, the loader's refusals, the vision worker (inference errors, ring overwrites), shadow agreement,
metrics figures."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness import wait_until
from inference_dev import tiny_detector

from ggvision.config.base import parse, validator
from ggvision.config.inference import InferenceConfig, ModelSource, split_point
from ggvision.framebus import FrameRing
from ggvision.inference.resolve import ModelNotFound, component_model_dir, resolve
from ggvision.inference.shadow import Agreement, ShadowRunner, match
from ggvision.inference.stats import ModelStats
from ggvision.inference.swap import ModelLoader, ModelSlot
from ggvision.inference.worker import BatchSettings, VisionWorker
from ggvision.model.loader import load_model

DEFAULT = {"models": {"detector": {"component": "com.ggvision.Model.SyntheticDetector", "cameras": ["*"]},
                      "fire-risk": {"component": "com.ggvision.Model.FireRisk", "sensors": ["*"]}}}


def test_the_recipes_default_configuration_is_valid() -> None:
    import yaml
    from harness import REPO

    doc = yaml.safe_load((REPO / "components" / "com.ggvision.Inference" / "recipe.yaml").read_text())
    cfg = parse(InferenceConfig, doc["ComponentConfiguration"]["DefaultConfiguration"])
    assert cfg.models["detector"].kind == "vision" and cfg.models["fire-risk"].kind == "tabular"
    assert (cfg.max_batch, cfg.deadline_ms, cfg.provider, cfg.threads) == (8, 15, "auto", None)
    assert cfg.frame_topics == ("ggvision/v1/frames/+",) and cfg.shadow is None


@pytest.mark.parametrize("cfg,words", [
    ({"models": {"d": {"cameras": ["*"]}}}, "models.d: give exactly one of 'component'"),
    ({"models": {"d": {"path": "/m", "component": "X", "cameras": ["*"]}}}, "models.d: give exactly one"),
    ({"models": {"d": {"path": "/m"}}}, "models.d: give exactly one of 'cameras'"),
    ({"models": {"d": {"path": "/m", "cameras": []}}}, "models.d.cameras"),
    ({"models": {"d": {"path": "/m", "cameras": ["*", "door"]}}}, "models.d.cameras"),
    ({"models": {"d": {"path": "/m", "version": "1.0.0", "cameras": ["*"]}}}, "models.d.version: only with"),
    ({"models": {"d": {"component": "X", "version": "latest", "cameras": ["*"]}}}, "models.d.version"),
    ({"models": {"d": {"path": "/m", "cameras": ["*"], "colour": 1}}}, "models.d: unknown keys colour"),
    ({"models": {"a": {"path": "/m", "cameras": ["door"]}, "b": {"path": "/n", "cameras": ["door"]}}},
     "models.b.cameras: camera 'door' already served by models.a"),
    ({"models": {"f": {"path": "/m", "sensors": ["*"], "periodS": 0}}}, "models.f.periodS"),
    ({"models": {"bad id!": {"path": "/m", "cameras": ["*"]}}}, "models.bad id!"),
    ({**DEFAULT, "shadow": {"model": "fire-risk", "path": "/m"}}, "shadow.model: 'fire-risk' is a tabular"),
    ({**DEFAULT, "shadow": {"model": "detector", "path": "/m", "sampleRate": 2}}, "shadow.sampleRate"),
    ({"batch": {"maxSize": 2.5}}, "batch.maxSize: expected a whole number"),
    ({"batch": {"deadlineMs": -1}}, "batch.deadlineMs"),
    ({"batch": {"size": 4}}, "batch: unknown keys size"),
    ({"provider": "gpu"}, "provider: one of auto, tensorrt, cuda, cpu"),
    ({"threads": "many"}, "threads"),
    ({"frameTopics": ["ggvision/v1/frames/#/x"]}, "frameTopics"),
    ({"frameTopics": []}, "frameTopics"),
    ({"metricsPeriodS": 0}, "metricsPeriodS"),
    ({"model": {}}, "unknown configuration keys: model"),
])
def test_invalid_configuration_names_the_key(cfg: dict[str, Any], words: str) -> None:
    reason = validator(InferenceConfig)(cfg)
    assert reason is not None and words in reason, reason


def test_configuration_accepts_strings_nulls_and_explicit_ids() -> None:
    cfg = parse(InferenceConfig, {"models": {"a": {"path": "/m", "cameras": ["*"]},
                                             "b": {"path": "/n", "cameras": ["door"]},
                                             "gone": None},
                                  "batch": {"maxSize": "4", "deadlineMs": "5"}, "threads": "2", "shadow": None})
    assert set(cfg.models) == {"a", "b"} and cfg.max_batch == 4 and cfg.deadline_ms == 5 and cfg.threads == 2


def test_arms_configuration_and_the_legacy_shadow_key() -> None:
    cfg = parse(InferenceConfig, {"models": {
        "d": {"path": "/m", "cameras": ["*"], "b": {"mode": "split", "component": "X", "share": "20%"}}}})
    (arm,) = cfg.arms.values()
    assert (arm.mode, arm.share, arm.component) == ("split", 0.2, "X")
    legacy = parse(InferenceConfig, {**DEFAULT, "shadow": {"model": "detector", "path": "/s", "sampleRate": 0.5}})
    assert legacy.shadow is None and list(legacy.arms) == ["detector"]
    b = legacy.arms["detector"]
    assert (b.mode, b.path, b.sample_rate, b.skip_when_queued) == ("shadow", "/s", 0.5, 1)


def test_split_point_is_stable_and_a_share_change_moves_only_the_boundary() -> None:
    # pinned: a changed hash would silently move every site's cameras to the other arm
    assert round(split_point("cam-0"), 6) == 0.514546 and round(split_point("cam-1"), 6) == 0.08996
    cams = [f"cam-{i}" for i in range(200)]
    at = {s: {c for c in cams if split_point(c) < s} for s in (0.1, 0.2, 0.3)}
    assert at[0.1] < at[0.2] < at[0.3]  # growing the share only adds cameras to B
    assert 20 <= len(at[0.2]) <= 60  # about a fifth


def test_component_model_dir_plain_or_unarchived(tmp_path: Path) -> None:
    plain = tmp_path / "artifacts" / "com.x.M" / "1.0.0"
    plain.mkdir(parents=True)
    (plain / "manifest.json").write_text("{}")
    assert component_model_dir(tmp_path, "com.x.M", "1.0.0") == plain
    zipped = tmp_path / "artifacts-unarchived" / "com.x.M" / "2.0.0" / "model"
    zipped.mkdir(parents=True)
    (zipped / "manifest.json").write_text("{}")
    assert component_model_dir(tmp_path, "com.x.M", "2.0.0") == zipped
    with pytest.raises(ModelNotFound, match="com.x.M 3.0.0: no manifest.json"):
        component_model_dir(tmp_path, "com.x.M", "3.0.0")

    def not_deployed(name: str) -> str:
        raise LookupError(f"Component {name} not found")

    with pytest.raises(ModelNotFound, match="not installed on this device"):
        resolve(ModelSource(component="com.x.N"), tmp_path, not_deployed)
    assert resolve(ModelSource(component="com.x.M"), tmp_path, lambda n: "2.0.0") == (zipped, "2.0.0")
    assert resolve(ModelSource(component="com.x.M", version="1.0.0"), tmp_path, not_deployed) == (plain, "1.0.0")


class Loaded:
    """Records the loader's outcomes."""

    def __init__(self) -> None:
        self.staged: list[str] = []
        self.refused: list[str] = []
        self.event = threading.Event()

    def on_staged(self, slot: ModelSlot) -> None:
        self.staged.append(slot.name)
        self.event.set()

    def on_refused(self, slot: ModelSlot, reason: str) -> None:
        self.refused.append(reason)
        self.event.set()


def _loader(rec: Loaded) -> ModelLoader:
    return ModelLoader(lambda folder: load_model(folder, provider="cpu"),
                       lambda src: (Path(src.path), ""), lambda: ("cpu", None, "trt"), rec.on_staged, rec.on_refused)


def test_loader_stages_refuses_tampered_files_once_and_skips_what_serves(tmp_path: Path) -> None:
    rec = Loaded()
    loader = _loader(rec)
    v1 = tiny_detector(tmp_path / "v1", "1.0.0")
    slot = ModelSlot("detector", "vision", ModelSource(path=str(v1)))
    try:
        loader.request(slot)
        assert loader.wait_idle(30) and rec.staged == ["detector"]
        assert slot.serving().manifest.version == "1.0.0"
        loader.request(slot)  # the same files: nothing to do
        assert loader.wait_idle(30) and rec.staged == ["detector"]

        bad = tiny_detector(tmp_path / "bad", "2.0.0")
        (bad / "model.onnx").write_bytes((bad / "model.onnx").read_bytes() + b"\0")
        slot.source = ModelSource(path=str(bad))
        loader.request(slot)
        assert loader.wait_idle(30)
        assert len(rec.refused) == 1 and "sha256 mismatch" in rec.refused[0]
        assert slot.serving().manifest.version == "1.0.0"  # the old one keeps serving
        assert slot.stats.load_errors == 1 and "sha256" in slot.stats.last_error
        loader.request(slot)  # unchanged bad files are not tried again
        assert loader.wait_idle(30) and len(rec.refused) == 1

        tiny_detector(tmp_path / "bad", "2.0.0")  # fixed in place
        loader.request(slot)
        assert loader.wait_idle(30) and rec.staged == ["detector", "detector"]
        assert slot.serving().manifest.version == "2.0.0"

        fire = tmp_path / "fire"
        from inference_dev import tiny_fire_risk

        tiny_fire_risk(fire)
        slot.source = ModelSource(path=str(fire))  # a tabular model cannot serve cameras
        loader.request(slot)
        assert loader.wait_idle(30) and "a tabular model cannot serve cameras" in rec.refused[-1]
        assert slot.serving().manifest.version == "2.0.0"
    finally:
        loader.close()
        slot.close()


def test_loader_records_a_missing_model_for_retry(tmp_path: Path) -> None:
    rec = Loaded()
    loader = ModelLoader(lambda f: load_model(f), lambda src: resolve(src, tmp_path, lambda n: "1.0.0"),
                         lambda: ("cpu", None, "trt"), rec.on_staged, rec.on_refused)
    slot = ModelSlot("detector", "vision", ModelSource(component="com.x.M"))
    try:
        loader.request(slot)
        assert loader.wait_idle(30)
        assert slot.current is None and not rec.refused and "com.x.M 1.0.0: no manifest.json" in slot.missing
    finally:
        loader.close()


class Flaky:
    """A real model whose infer raises while `fail` is set (an ONNX Runtime error stand-in)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.fail = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def infer(self, inputs: list[np.ndarray]) -> Any:
        if self.fail:
            raise RuntimeError("CUDA out of memory (stand-in)")
        return self.model.infer(inputs)


def _serve(slot: ModelSlot, model: Any) -> None:
    assert slot.stage(model, None, "", slot.request())  # type: ignore[arg-type]


def test_worker_survives_inference_errors_and_counts_overwritten_frames(tmp_path: Path) -> None:
    model = Flaky(load_model(tiny_detector(tmp_path / "v1"), provider="cpu"))
    slot = ModelSlot("detector", "vision", ModelSource(path="x"))
    _serve(slot, model)
    out: list[tuple[str, dict[str, Any]]] = []
    worker = VisionWorker(slot, BatchSettings(4, 5), lambda t, m: out.append((t, m)))
    ring = FrameRing.create("pipe-a", slots=2, max_frame_bytes=48 * 64 * 3)
    try:
        worker.start()
        frame = np.full((48, 64, 3), 128, np.uint8)
        worker.offer(ring.write(frame, time.time()))
        wait_until(lambda: len(out) == 1, 10)
        topic, msg = out[0]
        assert topic == "ggvision/v1/detections/pipe-a" and msg["sequence"] == 0 and msg["batch_size"] == 1
        model.fail = True
        worker.offer(ring.write(frame, time.time()))
        wait_until(lambda: slot.stats.errors == 1, 10)
        assert len(out) == 1 and slot.stats.runs == 2  # no message for the failed batch
        model.fail = False
        stale = ring.write(frame, time.time())
        ring.write(frame, time.time())
        ring.write(frame, time.time())  # 2 slots: `stale` is overwritten before the worker reads it
        worker.offer(stale)
        wait_until(lambda: slot.stats.dropped_frames == 1, 10)
        worker.offer(ring.write(frame, time.time()))
        wait_until(lambda: len(out) == 2, 10)
        assert out[1][1]["sequence"] == 5
    finally:
        worker.stop()
        ring.close()
        slot.close()


def test_shadow_matching_and_agreement() -> None:
    p = [{"label": "person", "score": 0.9, "box": [0, 0, 10, 10]},
         {"label": "car", "score": 0.8, "box": [20, 20, 40, 40]}]
    s = [{"label": "car", "score": 0.6, "box": [20, 20, 40, 42]},
         {"label": "person", "score": 0.7, "box": [50, 50, 60, 60]},  # elsewhere: no match
         {"label": "dog", "score": 0.5, "box": [0, 0, 10, 10]}]  # same place, other label: no match
    pairs = match(p, s)
    assert [(i, j) for i, j, _ in pairs] == [(1, 0)] and pairs[0][2] == pytest.approx(400 / 440)
    ag = Agreement()
    ag.add({"detections": p}, {"detections": s}, primary_ms=10, shadow_ms=5)
    ag.add({"detections": []}, {"detections": []}, primary_ms=10, shadow_ms=5)
    out = ag.summary()
    assert out["frames"] == 2 and out["matched_ratio"] == pytest.approx(1 / 3, abs=1e-4)
    assert out["iou_mean"] == pytest.approx(400 / 440, abs=1e-3) and out["score_delta_mean"] == pytest.approx(-0.2)
    assert out["latency_ratio"] == 0.5
    # the car matched; the dog sits where A saw a person (a flip); the other person only B saw
    assert out["by_label"] == {"matched": {"car": 1}, "label_flips": {"person": 1}, "a_only": {},
                               "b_only": {"person": 1}}
    assert (out["matched"], out["label_flips"], out["a_only"], out["b_only"]) == (1, 1, 0, 1)
    cls = Agreement()
    cls.add({"classes": [{"label": "cat", "score": 0.8}]}, {"classes": [{"label": "cat", "score": 0.9}]}, 1, 1)
    cls.add({"classes": [{"label": "cat", "score": 0.8}]}, {"classes": [{"label": "dog", "score": 0.9}]}, 1, 1)
    assert cls.summary()["matched_ratio"] == 0.5 and cls.summary()["score_delta_mean"] == pytest.approx(0.1)


def test_shadow_runner_compares_off_the_primary_path(tmp_path: Path) -> None:
    primary = load_model(tiny_detector(tmp_path / "p", "1.0.0", score=0.9), provider="cpu")
    slot = ModelSlot("detector:shadow", "vision", ModelSource(path="x"))
    _serve(slot, load_model(tiny_detector(tmp_path / "s", "2.0.0", score=0.5), provider="cpu"))
    runner = ShadowRunner(slot.serving)
    try:
        frames = [np.full((48, 64, 3), v, np.uint8) for v in (0, 255)]
        results, timings = primary.infer(frames)
        runner.submit(frames, results, timings["inference"] / 2)
        wait_until(lambda: runner.agreement.frames == 2, 10)
        out = runner.agreement.summary()
        assert out["matched_ratio"] == 1.0 and out["iou_mean"] == 1.0
        assert out["score_delta_mean"] == pytest.approx(-0.4, abs=0.01)
        assert runner.stats.frames == 2 and runner.stats.runs == 1
    finally:
        runner.close()
        slot.close()


def test_stats_snapshot() -> None:
    st = ModelStats()
    assert st.snapshot()["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    for i in range(100):
        st.record_batch(2, float(i + 1), [0.05, 0.95])
    st.record_error("boom")
    st.add_dropped(3)
    snap = st.snapshot()
    assert (snap["runs"], snap["errors"], snap["frames"], snap["dropped_frames"]) == (101, 1, 200, 3)
    assert snap["latency_ms"]["p50"] == pytest.approx(50.5) and snap["latency_ms"]["p99"] == pytest.approx(99.01)
    assert snap["batch_size_mean"] == 2 and snap["score_mean"] == pytest.approx(0.5)
    assert snap["score_hist"] == [100, 0, 0, 0, 0, 0, 0, 0, 0, 100] and snap["last_error"] == "boom"
    assert "detections_per_frame" not in snap  # no results given: nothing to count per label
    st.record_batch(2, 1.0, [0.5], [{"detections": [{"label": "car"}, {"label": "car"}]}, {"detections": []}])
    st.record_batch(1, 1.0, [0.5], [{"detections": [{"label": "person"}]}])
    assert st.snapshot()["detections_per_frame"] == {"car": round(2 / 3, 4), "person": round(1 / 3, 4)}
    st.new_model()
    assert "detections_per_frame" not in st.snapshot()
    assert st.snapshot()["score_mean"] is None and st.snapshot()["runs"] == 103
