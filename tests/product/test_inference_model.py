"""Model loading: the real YOLOX-Nano on COCO samples, refusals of bad models/manifests, provider choice."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from ggvision.model.loader import load_model, write_model_dir
from ggvision.model.manifest import ModelError, ModelManifest, load_manifest, sha256_file
from ggvision.model.session import (
    CPU,
    CUDA,
    TENSORRT,
    SessionRunner,
    choose_providers,
    create_session,
    provider_in_use,
)
from tests.onnx_graphs import constant_model, hanging, model_manifest, with_nan_outputs

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
YOLOX = SHARED / "models" / "yolox_nano.onnx"
COCO = SHARED / "data" / "coco-samples"
needs_shared = pytest.mark.skipif(not (YOLOX.exists() and COCO.is_dir()),
                                  reason=f"test data absent: {YOLOX} and {COCO} (../shared next to the repo)")


def yolox_manifest() -> dict:
    labels = [s for s in (SHARED / "models" / "coco_classes.txt").read_text().splitlines() if s.strip()]
    return model_manifest(
        "yolox", labels,
        {"name": "images", "shape": [1, 3, 416, 416], "dtype": "float32", "layout": "NCHW", "color": "BGR",
         "scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1], "resize": "letterbox", "pad_value": 114},
        name="yolox-nano", decoder={"strides": [8, 16, 32], "objectness": True},
        thresholds={"score": 0.3, "nms_iou": 0.45, "per_class": {}, "max_detections": 100})


@pytest.fixture(scope="module")
def yolox(tmp_path_factory):
    if not YOLOX.exists():
        pytest.skip(f"test data absent: {YOLOX}")
    d = write_model_dir(tmp_path_factory.mktemp("yolox"), YOLOX, yolox_manifest())
    return load_model(d, provider="auto", threads=1)


@needs_shared
@pytest.mark.parametrize("image,label", [("000000000785.jpg", "person"), ("000000000724.jpg", "stop sign"),
                                         ("000000000285.jpg", "bear")])
def test_yolox_nano_finds_the_obvious_object(yolox, image, label):
    img = cv2.imread(str(COCO / image))
    h, w = img.shape[:2]
    (res,), timings = yolox.infer([img])
    best = {}
    for d in res["detections"]:
        best.setdefault(d["label"], d)
    assert label in best, res["detections"]
    d = best[label]
    x1, y1, x2, y2 = d["box"]
    assert d["score"] > 0.5
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    area = (x2 - x1) * (y2 - y1) / (w * h)
    assert 0.05 < area < 1.0  # the obvious object: not a speck
    assert all(v >= 0 for v in timings.values())


@needs_shared
def test_yolox_nano_loaded_facts_and_batch_of_frames(yolox):
    assert yolox.provider == CPU
    assert yolox.max_batch == 1  # the export has a fixed batch of 1: frames run one by one
    assert yolox.decoder.decoded is False  # raw grid offsets, auto-detected
    assert yolox.load_ms > 0
    imgs = [cv2.imread(str(COCO / n)) for n in ("000000000724.jpg", "000000000285.jpg")]
    res, _ = yolox.infer(imgs)
    assert [r["detections"][0]["label"] for r in res] == ["stop sign", "bear"]
    # an empty frame: looked, found nothing
    (empty,), _ = yolox.infer([np.full((720, 1280, 3), 114, np.uint8)])
    assert empty == {"detections": []}


# --- refusals ----------------------------------------------------------------------------------------------------

def tiny(tmp_path: Path, **manifest_changes) -> Path:
    out = np.zeros((84, 7), np.float32)
    man = model_manifest("yolox", ["a", "b"], {"name": "images", "shape": [1, 3, 64, 64], "dtype": "float32"})
    man.update(manifest_changes)
    return write_model_dir(tmp_path / "m", constant_model([1, 3, 64, 64], {"output": out}), man)


def test_tiny_model_loads(tmp_path):
    m = load_model(tiny(tmp_path))
    assert m.manifest.name == "test-yolox" and m.provider == CPU
    m.close()
    with pytest.raises(ModelError, match="closed"):
        m.infer([np.zeros((8, 8, 3), np.uint8)])


def test_digest_mismatch_is_refused(tmp_path):
    d = tiny(tmp_path)
    man = json.loads((d / "manifest.json").read_text())
    man["sha256"] = "0" * 64
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelError, match=r"model\.onnx: sha256 mismatch"):
        load_model(d)


def test_corrupt_model_with_matching_digest_is_refused(tmp_path):
    d = tiny(tmp_path)
    data = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ModelError, match="sha256 mismatch"):
        load_model(d)
    man = json.loads((d / "manifest.json").read_text())
    man["sha256"] = sha256_file(d / "model.onnx")  # a digest made of the broken file: ORT must refuse it
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelError, match="ONNX Runtime cannot load the model"):
        load_model(d)


def test_nan_outputs_are_refused_at_warm_up_and_never_served(tmp_path):
    out = np.zeros((84, 7), np.float32)
    man = model_manifest("yolox", ["a", "b"], {"name": "images", "shape": [1, 3, 64, 64], "dtype": "float32"})
    graph = constant_model([1, 3, 64, 64], {"output": out})
    with pytest.raises(ModelError, match=r"warm-up failed: .*'output' has 588 NaN or infinite value\(s\) of 588"):
        load_model(write_model_dir(tmp_path / "nan", with_nan_outputs(graph), man))
    m = load_model(write_model_dir(tmp_path / "ok", graph, man))
    m._runner.run = lambda feed, options=None: [np.full((1, 84, 7), np.inf, np.float32)]  # turns bad while serving
    with pytest.raises(ModelError, match=r"output 'output' has 588 NaN or infinite"):
        m.infer([np.zeros((64, 64, 3), np.uint8)])


def test_a_model_that_hangs_is_stopped_and_refused_at_its_warm_up_deadline(tmp_path):
    man = model_manifest("yolox", ["a", "b"], {"name": "images", "shape": [1, 3, 64, 64], "dtype": "float32"})
    d = write_model_dir(tmp_path / "hang", hanging(constant_model([1, 3, 64, 64], {"output": np.zeros((84, 7),
                                                                                             np.float32)})), man)
    t0 = time.monotonic()
    with pytest.raises(ModelError, match=r"warm-up run did not finish within 0.5 s \(a model that hangs"):
        load_model(d, warmup_timeout_s=0.5)
    assert time.monotonic() - t0 < 5  # ONNX Runtime stopped the run: no thread left spinning on it


def test_wrong_input_shape_name_and_outputs_are_refused(tmp_path):
    with pytest.raises(ModelError, match=r"axis 2: 64 vs 32"):
        load_model(tiny(tmp_path / "1", input={"name": "images", "shape": [1, 3, 32, 32], "dtype": "float32"}))
    with pytest.raises(ModelError, match=r"named 'images' in the model, 'x' in the manifest"):
        load_model(tiny(tmp_path / "2", input={"name": "x", "shape": [1, 3, 64, 64], "dtype": "float32"}))
    with pytest.raises(ModelError, match=r"manifest says uint8"):
        load_model(tiny(tmp_path / "3", input={"name": "images", "shape": [1, 3, 64, 64], "dtype": "uint8"}))
    with pytest.raises(ModelError, match=r"axis 0: 1 vs -1"):  # manifest claims a dynamic batch
        load_model(tiny(tmp_path / "4", input={"name": "images", "shape": [-1, 3, 64, 64], "dtype": "float32"}))
    with pytest.raises(ModelError, match=r"7 values per anchor; 3 labels need 8"):
        load_model(tiny(tmp_path / "5", labels=["a", "b", "c"]))
    with pytest.raises(ModelError, match=r"84 anchors; .* gives 20"):
        load_model(tiny(tmp_path / "6", decoder={"strides": [16, 32]}))


def test_warm_up_failure_is_refused(tmp_path):
    # shapes all fit, but the graph fails when run: Gather with an index out of range on data that depends on the
    # input (so ONNX Runtime cannot constant-fold it at load)
    g = constant_model([1, 3, 64, 64], {"output": np.zeros((84, 7), np.float32)})
    idx = np.arange(84, dtype=np.int64)
    idx[5] = 500
    g.graph.initializer.append(numpy_helper.from_array(idx, "bad_idx"))
    g.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "axis0"))
    g.graph.node[-1].output[0] = "expanded"
    g.graph.node.extend([helper.make_node("Squeeze", ["expanded", "axis0"], ["table"]),
                         helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
                         helper.make_node("Add", ["table", "m"], ["live"]),
                         helper.make_node("Gather", ["live", "bad_idx"], ["gathered"], axis=0),
                         helper.make_node("Unsqueeze", ["gathered", "axis0"], ["output"])])
    man = model_manifest("yolox", ["a", "b"], {"name": "images", "shape": [1, 3, 64, 64], "dtype": "float32"})
    with pytest.raises(ModelError, match="warm-up failed: .*inference failed"):
        load_model(write_model_dir(tmp_path / "m", g, man))


@pytest.mark.parametrize("change,message", [
    ({"family": "mystery"}, "unknown 'family' 'mystery'"),
    ({"family": None}, "missing or empty 'family'"),
    ({"labels": None}, "missing or bad 'labels'"),
    ({"labels": []}, "missing or bad 'labels'"),
    ({"input": None}, "'input': missing"),
    ({"input": {"name": "images", "shape": [1, 3, -1, 64]}}, "only the batch dimension may be dynamic"),
    ({"schema": "model-manifest/2.0"}, "'schema' must be"),
    ({"task": "tabular"}, "'task' 'tabular' does not fit family 'yolox'"),
    ({"thresholds": {"per_class": {"zebra": 0.5}}}, "labels the model does not have: \\['zebra'\\]"),
    ({"thresholds": {"score": 1.5}}, "thresholds.score"),
    ({"sha256": "abc"}, "'sha256' must be"),
    ({"file": "../model.onnx"}, "'file' must be a plain file name"),
])
def test_bad_manifests_name_the_problem(tmp_path, change, message):
    d = tiny(tmp_path)
    man = json.loads((d / "manifest.json").read_text())
    for k, v in change.items():
        if v is None:
            man.pop(k)
        else:
            man[k] = v
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelError, match=message) as e:
        load_model(d)
    assert str(d / "manifest.json") in str(e.value)


def test_missing_files_are_refused(tmp_path):
    with pytest.raises(ModelError, match="cannot read manifest"):
        load_model(tmp_path)
    d = tiny(tmp_path)
    (d / "model.onnx").unlink()
    with pytest.raises(ModelError, match="cannot read model file"):
        load_model(d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(d)


def test_write_model_dir_and_manifest_round_trip(tmp_path):
    d = tiny(tmp_path)
    m = load_manifest(d)
    assert m.sha256 == sha256_file(d / "model.onnx")
    again = ModelManifest.from_dict(m.to_dict(), "round trip")
    assert again.to_dict() == m.to_dict() and again.input == m.input and again.thresholds == m.thresholds
    assert m.thresholds.for_class("a") == 0.3
    with pytest.raises(ModelError, match="unknown 'family'"):  # write_model_dir refuses what load would refuse
        write_model_dir(tmp_path / "bad", b"x", {"name": "n", "version": "1", "family": "nope"})


# --- providers ---------------------------------------------------------------------------------------------------

ALL = [TENSORRT, CUDA, CPU]


def test_auto_prefers_tensorrt_fp16_with_engine_cache_then_cuda_then_cpu(tmp_path):
    provs = choose_providers("auto", ALL, trt_cache_dir=tmp_path / "trt", device_id=1)
    assert [p[0] if isinstance(p, tuple) else p for p in provs] == ALL
    trt = dict(provs[0][1])
    assert trt["trt_fp16_enable"] is True and trt["trt_engine_cache_enable"] is True
    assert trt["trt_engine_cache_path"] == str(tmp_path / "trt") and trt["device_id"] == 1
    assert provs[1] == (CUDA, {"device_id": 1})
    assert choose_providers("cuda", ALL)[0][0] == CUDA
    assert choose_providers("cpu", ALL) == [CPU]


def test_cpu_only_box_and_unavailable_preference_fall_back_with_a_warning(caplog):
    assert choose_providers("auto", ["AzureExecutionProvider", CPU]) == [CPU]
    with caplog.at_level(logging.WARNING, logger="ggvision.model.session"):
        assert choose_providers("cuda", [CPU]) == [CPU]
    assert "CUDAExecutionProvider requested but not available" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ggvision.model.session"):
        provs = choose_providers("tensorrt", [CUDA, CPU])
    assert [p[0] if isinstance(p, tuple) else p for p in provs] == [CUDA, CPU]
    assert "using CUDAExecutionProvider" in caplog.text
    with pytest.raises(ModelError, match="provider preference 'gpu'"):
        choose_providers("gpu", ALL)


def test_session_reports_provider_and_runs_on_cpu(tmp_path):
    g = constant_model([-1, 3, 8, 8], {"y": np.arange(4, dtype=np.float32)})
    s = create_session(g.SerializeToString(), choose_providers("auto"), threads=1)
    assert provider_in_use(s) == CPU
    r = SessionRunner(s)
    assert not r.uses_io_binding
    (y,) = r.run({"images": np.zeros((1, 3, 8, 8), np.float32)})
    assert y.tolist() == [[0, 1, 2, 3]]
    # the IO-binding path (used on CUDA/TensorRT) bound to host memory gives the same outputs
    rb = SessionRunner(s, io_binding=True)
    (yb,) = rb.run({"images": np.zeros((2, 3, 8, 8), np.float32)})
    assert yb.tolist() == [[0, 1, 2, 3]] * 2


# --- dynamic batch rewrite ---------------------------------------------------------------------------------------

@needs_shared
def test_yolox_fixed_batch_made_dynamic_gives_identical_detections(tmp_path):
    d = write_model_dir(tmp_path / "m", YOLOX, yolox_manifest())
    m = load_model(d, threads=1, dynamic_batch=True)
    assert m.max_batch is None
    imgs = [cv2.imread(str(p)) for p in sorted(COCO.glob("*.jpg"))[:3]]
    together, _ = m.infer(imgs)
    alone = [m.infer([img])[0][0] for img in imgs]
    assert together == alone and together[0]["detections"]


def test_dynamic_batch_rewrite_is_refused_when_outputs_would_change(tmp_path):
    # y = x - mean over the whole tensor: with a real batch the mean mixes frames, so the rewrite is not kept
    x = helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1, 3])
    nodes = [helper.make_node("ReduceMean", ["images"], ["all"], keepdims=1),
             helper.make_node("Sub", ["images", "all"], ["centred"]),
             helper.make_node("ReduceMean", ["centred"], ["scores"], axes=[2, 3], keepdims=0)]
    g = helper.make_model(helper.make_graph(nodes, "mix", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    g.ir_version = 8
    man = model_manifest("classification", ["b", "g", "r"],
                         {"name": "images", "shape": [1, 3, 8, 8], "dtype": "float32", "resize": "stretch"})
    m = load_model(write_model_dir(tmp_path / "m", g, man), dynamic_batch=True)
    assert m.max_batch == 1


def test_tabular_manifest_without_labels_round_trips():
    d = model_manifest("tabular", None, {"name": "features", "shape": [-1, 2], "dtype": "float32",
                                         "features": ["a", "b"]}, sha256="a" * 64)
    m = ModelManifest.from_dict(d, "t")
    assert m.labels == () and m.input.features == ("a", "b") and m.task == "tabular"
    assert ModelManifest.from_dict(m.to_dict(), "t").input == m.input
    with pytest.raises(ModelError, match="2 names for 3 input columns"):
        ModelManifest.from_dict({**d, "input": {**d["input"], "shape": [-1, 3]}}, "t")


def test_trt_cache_is_per_model_digest(tmp_path, monkeypatch):
    # ORT keys cached engines by graph structure, not weights: each model digest gets its own cache directory
    import ggvision.model.loader as model_mod

    seen = []

    def fake_choose(pref, available=None, *, trt_cache_dir=None, device_id=0):
        seen.append(trt_cache_dir)
        return choose_providers(pref, [CPU], trt_cache_dir=trt_cache_dir, device_id=device_id)

    monkeypatch.setattr(model_mod, "choose_providers", fake_choose)
    d = tiny(tmp_path)
    load_model(d, trt_cache_dir=tmp_path / "trt")
    assert seen == [tmp_path / "trt" / f"test-yolox-{load_manifest(d).sha256[:16]}"]


def test_idle_intra_op_threads_sleep_unless_asked_to_spin(monkeypatch):
    """Spinning ORT threads burn the cores Capture/Filter need on a shared edge box (bench/inference.py)."""
    g = constant_model([-1, 3, 8, 8], {"y": np.arange(4, dtype=np.float32)}).SerializeToString()
    key = "session.intra_op.allow_spinning"
    s = create_session(g, choose_providers("cpu"), threads=2)
    assert s.get_session_options().get_session_config_entry(key) == "0"
    monkeypatch.setenv("GGVISION_ORT_SPIN", "1")
    s = create_session(g, choose_providers("cpu"), threads=2)
    with pytest.raises(Exception):  # noqa: B017 - ORT raises its own type for a key never set: spinning stays on
        s.get_session_options().get_session_config_entry(key)
