"""Decoders and pre-processing, checked end to end through load_model against tiny ONNX graphs whose outputs
are known exactly (tests/onnx_graphs.py), so every expected box/score below is computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ggvision.model.loader import load_model, write_model_dir
from ggvision.model.manifest import InputSpec, ModelError, ModelManifest
from ggvision.model.preprocess import Geometry, fit, letterbox, to_tensor
from tests.onnx_graphs import constant_model, linear_softmax_model, mean_color_model, model_manifest

LABELS = ["a", "b"]


def vision_spec(size: int = 64, batch: int = 1, **kw) -> dict:
    d = {"name": "images", "shape": [batch, 3, size, size], "dtype": "float32", "layout": "NCHW", "color": "BGR",
         "resize": "letterbox", "pad_value": 114}
    d.update(kw)
    return d


def load(tmp_path, graph, manifest):
    return load_model(write_model_dir(tmp_path / "m", graph, manifest))


def frame(h: int, w: int, value: int = 0) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


# --- YOLOX -----------------------------------------------------------------------------------------------------

def yolox_grid(size: int = 64, strides=(8, 16, 32)) -> np.ndarray:
    """[N, 3] (grid x, grid y, stride) in YOLOX's anchor order."""
    rows = []
    for s in strides:
        n = size // s
        for gy in range(n):
            for gx in range(n):
                rows.append((gx, gy, s))
    return np.array(rows, np.float32)


def test_yolox_raw_grid_offsets_give_the_hand_computed_box(tmp_path):
    grid = yolox_grid()
    out = np.zeros((len(grid), 5 + 2), np.float32)
    i = 2 * 8 + 3  # stride 8, grid x=3, y=2
    out[i, :4] = [0.5, 0.5, math.log(2), math.log(4)]  # cx=(3+.5)*8=28 cy=(2+.5)*8=20 w=16 h=32
    out[i, 4] = 0.9
    out[i, 6] = 0.8  # class b -> score 0.72
    m = load(tmp_path, constant_model([1, 3, 64, 64], {"output": out}),
             model_manifest("yolox", LABELS, vision_spec(), decoder={"strides": [8, 16, 32]}))
    assert m.decoder.decoded is False
    # frame 100x200: r = 0.32, image at the top-left (YOLOX pads bottom/right)
    res, timings = m.infer([frame(100, 200)])
    assert set(timings) == {"preprocess", "inference", "postprocess"}
    (det,) = res[0]["detections"]
    assert det["label"] == "b" and det["class_id"] == 1
    assert det["score"] == pytest.approx(0.72, abs=1e-4)
    # input box [20, 4, 36, 36] / 0.32 = [62.5, 12.5, 112.5, 112.5]; y2 clipped to the frame height 100
    assert det["box"] == pytest.approx([62.5, 12.5, 112.5, 100.0], abs=0.01)


def test_yolox_decoded_export_flag_and_auto_detection(tmp_path):
    grid = yolox_grid()
    out = np.zeros((len(grid), 5 + 2), np.float32)
    out[:, :2] = (grid[:, :2] + 0.5) * grid[:, 2:3]  # decoded centres everywhere (what a decoded export gives)
    out[:, 2:4] = grid[:, 2:3]
    i = 2 * 8 + 3
    out[i, :4] = [28, 20, 16, 32]
    out[i, 4], out[i, 5] = 1.0, 0.9
    g = constant_model([1, 3, 64, 64], {"output": out})
    for decoded in (True, None):  # explicit flag, then auto-detected from the values
        dec = {} if decoded is None else {"decoded": decoded}
        m = load(tmp_path / str(decoded), g, model_manifest("yolox", LABELS, vision_spec(), decoder=dec))
        assert m.decoder.decoded is True
        (det,) = m.infer([frame(64, 64)])[0][0]["detections"]
        assert det["label"] == "a" and det["box"] == pytest.approx([20, 4, 36, 36], abs=0.01)


# --- YOLOv8 ------------------------------------------------------------------------------------------------------

def yolov8_output(boxes: list[tuple], n: int = 10, n_cls: int = 2) -> np.ndarray:
    """[4+C, N] with (cx, cy, w, h, class, score) rows placed first."""
    out = np.zeros((4 + n_cls, n), np.float32)
    for j, (cx, cy, w, h, c, s) in enumerate(boxes):
        out[:4, j] = [cx, cy, w, h]
        out[4 + c, j] = s
    return out


def test_yolov8_layout_centered_letterbox(tmp_path):
    out = yolov8_output([(32, 32, 20, 10, 1, 0.9)])
    m = load(tmp_path, constant_model([1, 3, 64, 64], {"output0": out}),
             model_manifest("yolov8", LABELS, vision_spec()))
    # frame 32x64: r = 1, image centred -> pad_y = 16; input box [22, 27, 42, 37] -> frame [22, 11, 42, 21]
    (det,) = m.infer([frame(32, 64)])[0][0]["detections"]
    assert (det["label"], det["score"]) == ("b", 0.9)
    assert det["box"] == pytest.approx([22, 11, 42, 21], abs=0.01)
    # the same values laid out [N, 4+C] decode the same
    m2 = load(tmp_path / "t", constant_model([1, 3, 64, 64], {"output0": out.T.copy()}),
              model_manifest("yolov8", LABELS, vision_spec()))
    assert m2.infer([frame(32, 64)])[0][0]["detections"] == [det]


def test_class_aware_nms_and_per_class_thresholds(tmp_path):
    out = yolov8_output([
        (30, 30, 20, 20, 0, 0.9),   # a
        (31, 30, 20, 20, 0, 0.8),   # a, overlaps the first (IoU ~0.9): suppressed
        (30, 31, 20, 20, 1, 0.7),   # b, overlaps both but another class: kept
        (10, 10, 6, 6, 1, 0.4),     # b below its class threshold 0.5: dropped
        (50, 50, 6, 6, 0, 0.35),    # a above the global 0.3: kept
    ])
    man = model_manifest("yolov8", LABELS, vision_spec(), thresholds={"score": 0.3, "nms_iou": 0.5,
                                                                        "per_class": {"b": 0.5}})
    m = load(tmp_path, constant_model([1, 3, 64, 64], {"output0": out}), man)
    dets = m.infer([frame(64, 64)])[0][0]["detections"]
    assert [(d["label"], d["score"]) for d in dets] == [("a", 0.9), ("b", 0.7), ("a", 0.35)]
    assert dets[0]["box"] == pytest.approx([20, 20, 40, 40])
    man["thresholds"]["max_detections"] = 2
    m = load(tmp_path / "cap", constant_model([1, 3, 64, 64], {"output0": out}), man)
    assert [d["score"] for d in m.infer([frame(64, 64)])[0][0]["detections"]] == [0.9, 0.7]


# --- SSD ---------------------------------------------------------------------------------------------------------

def test_ssd_outputs_yxyx_norm_class_offset_num_detections(tmp_path):
    outputs = {
        "boxes": np.array([[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.5, 0.5], [0.1, 0.1, 0.2, 0.2]], np.float32),
        "scores": np.array([0.9, 0.6, 0.99], np.float32),
        "classes": np.array([2, 1, 1], np.float32),   # TF-style 1-based ids
        "num_detections": np.array(2, np.float32),    # the third row is padding
    }
    man = model_manifest("ssd", LABELS, vision_spec(resize="stretch"),
                         decoder={"box_format": "yxyx_norm", "class_offset": 1})
    m = load(tmp_path, constant_model([1, 3, 64, 64], outputs), man)
    dets = m.infer([frame(100, 200)])[0][0]["detections"]  # stretch: x * 200, y * 100
    assert [(d["label"], d["score"]) for d in dets] == [("b", 0.9), ("a", 0.6)]
    assert dets[0]["box"] == pytest.approx([100, 25, 200, 75])
    assert dets[1]["box"] == pytest.approx([0, 0, 100, 50])


def test_ssd_per_class_scores_get_nms(tmp_path):
    outputs = {"boxes": np.array([[0, 0, 32, 32], [1, 1, 33, 33]], np.float32),
               "scores": np.array([[0.1, 0.8, 0.1], [0.1, 0.7, 0.2]], np.float32)}  # background column first
    man = model_manifest("ssd", LABELS, vision_spec(), decoder={"box_format": "xyxy", "class_offset": 1})
    m = load(tmp_path, constant_model([1, 3, 64, 64], outputs), man)
    dets = m.infer([frame(64, 64)])[0][0]["detections"]
    assert [(d["label"], d["score"]) for d in dets] == [("a", 0.8)]


# --- classification ----------------------------------------------------------------------------------------------

def test_classification_softmax_top_k_and_threshold(tmp_path):
    logits = np.array([1.0, 3.0, 2.0, -5.0], np.float32)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    labels = ["w", "x", "y", "z"]
    man = model_manifest("classification", labels, vision_spec(resize="stretch"),
                         decoder={"softmax": True, "top_k": 3}, thresholds={"score": 0.05})
    m = load(tmp_path, constant_model([1, 3, 64, 64], {"logits": logits}), man)
    classes = m.infer([frame(10, 10)])[0][0]["classes"]
    assert [c["label"] for c in classes] == ["x", "y", "w"]  # z is below 0.05
    assert [c["score"] for c in classes] == pytest.approx([p[1], p[2], p[0]], abs=1e-4)


def test_dynamic_batch_keeps_order_and_fixed_batch_runs_one_by_one(tmp_path):
    labels = ["blue", "green", "red"]  # BGR channel order
    frames = []
    for c in (2, 0, 1):
        f = np.zeros((20, 30, 3), np.uint8)
        f[:, :, c] = 200
        frames.append(f)
    for batch, max_batch in ((-1, None), (1, 1)):
        man = model_manifest("classification", labels,
                             vision_spec(32, batch=batch, resize="stretch"), decoder={"top_k": 1},
                             thresholds={"score": 0.0})
        m = load(tmp_path / str(batch), mean_color_model(3, 32, batch=batch), man)
        assert m.max_batch == max_batch
        res, _ = m.infer(frames)
        assert [r["classes"][0]["label"] for r in res] == ["red", "blue", "green"]
        assert res[0]["classes"][0]["score"] == pytest.approx(200.0)


# --- tabular -----------------------------------------------------------------------------------------------------

def test_tabular_probabilities_positive_and_named_label(tmp_path):
    w = np.array([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0]], np.float32)
    b = np.array([0.1, -0.2], np.float32)
    man = model_manifest("tabular", ["no_fire", "fire"],
                         {"name": "features", "shape": [-1, 3], "dtype": "float32", "features": ["t", "g", "c"]},
                         decoder={"probability_output": "probabilities", "positive_index": 1,
                                  "outputs": {"fire_probability": "positive", "label": ["calm", "alarm"],
                                              "class": "output:label"}})
    m = load(tmp_path, linear_softmax_model(w, b), man)
    rows = [np.array([1.0, 0.0, 0.0], np.float32), {"t": 0.0, "g": 1.0, "c": 2.0}]
    res, _ = m.infer(rows)
    x = np.array([[1, 0, 0], [0, 1, 2]], np.float32)
    z = x @ w + b
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert res[0]["outputs"]["fire_probability"] == pytest.approx(p[0, 1], abs=1e-5)
    assert res[1]["outputs"]["fire_probability"] == pytest.approx(p[1, 1], abs=1e-5)
    assert [r["outputs"]["label"] for r in res] == ["calm", "alarm"]
    assert [r["outputs"]["class"] for r in res] == [0, 1]
    with pytest.raises(ModelError, match="missing features"):
        m.infer([{"t": 1.0}])
    with pytest.raises(ModelError, match="2 features, the model needs 3"):
        m.infer([np.zeros(2, np.float32)])


def test_tabular_default_outputs(tmp_path):
    man = model_manifest("tabular", ["no", "yes"], {"name": "features", "shape": [-1, 2], "dtype": "float32"})
    m = load(tmp_path, linear_softmax_model(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)), man)
    (res,), _ = m.infer([np.array([0.0, 3.0], np.float32)])
    assert res["outputs"]["label"] == "yes"
    assert sum(res["outputs"]["probabilities"]) == pytest.approx(1.0, abs=1e-5)


# --- geometry ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("resize,align", [("letterbox", "top-left"), ("letterbox", "center"), ("stretch", "center")])
@pytest.mark.parametrize("hw", [(720, 1280), (480, 360), (100, 100)])
def test_geometry_round_trip(resize, align, hw):
    spec = InputSpec(name="images", shape=(1, 3, 416, 416), resize=resize, align=align)
    img, g = fit(np.zeros((*hw, 3), np.uint8), spec)
    assert img.shape == (416, 416, 3)
    rng = np.random.default_rng(1)
    xy1 = rng.uniform(0, 0.5, (20, 2)) * [hw[1], hw[0]]
    boxes = np.concatenate([xy1, xy1 + rng.uniform(1, 0.5 * min(hw), (20, 2))], axis=1).astype(np.float32)
    boxes = np.minimum(boxes, [hw[1], hw[0], hw[1], hw[0]])
    in_model = boxes.copy()
    in_model[:, 0::2] = boxes[:, 0::2] * g.scale_x + g.pad_x
    in_model[:, 1::2] = boxes[:, 1::2] * g.scale_y + g.pad_y
    assert (in_model >= 0).all() and (in_model <= 416).all()
    assert g.to_frame(in_model) == pytest.approx(boxes, abs=1e-3)


def test_letterbox_matches_yolox_preproc():
    img = np.random.default_rng(0).integers(0, 255, (425, 640, 3), dtype=np.uint8)
    out, r, pad = letterbox(img, (416, 416), 114)
    assert pad == (0, 0) and r == pytest.approx(0.65)
    assert out.shape == (416, 416, 3)
    nh = int(425 * r)
    assert (out[nh:] == 114).all() and not (out[nh - 1] == 114).all()
    out_c, _, (px, py) = letterbox(img, (416, 416), 0, center=True)
    assert px == 0 and py == (416 - nh) // 2 and (out_c[:py] == 0).all()


def test_to_tensor_single_channel_and_normalisation():
    # thermal: uint16 counts into a 1-channel model with scale/mean/std
    spec = ModelManifest.from_dict(model_manifest(
        "classification", ["x"], {"name": "t", "shape": [1, 1, 8, 8], "dtype": "float32", "color": "GRAY",
                                  "scale": 0.01, "mean": 20, "std": 5, "resize": "stretch"}, sha256="0" * 64),
        "test").input
    raw = np.full((16, 16), 3000, np.uint16)
    img, g = fit(raw, spec)
    t = to_tensor([img], spec)
    assert t.shape == (1, 1, 8, 8) and t.dtype == np.float32
    assert t == pytest.approx(np.full((1, 1, 8, 8), (3000 * 0.01 - 20) / 5))
    assert (g.scale_x, g.scale_y) == (0.5, 0.5)
    # float °C HxWx1 frame into a 3-channel RGB NHWC model: replicated
    spec3 = InputSpec(name="x", shape=(1, 8, 8, 3), layout="NHWC", color="RGB", resize="stretch")
    t3 = to_tensor([fit(np.full((8, 8, 1), 36.6, np.float32), spec3)[0]], spec3)
    assert t3.shape == (1, 8, 8, 3) and t3 == pytest.approx(np.full((1, 8, 8, 3), 36.6))
    # BGR frame into an RGB model: channels swapped
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[:, :, 0] = 10
    assert to_tensor([bgr], InputSpec(name="x", shape=(1, 3, 8, 8), color="RGB"))[0, 2, 0, 0] == 10


def test_geometry_clips_to_frame():
    g = Geometry(frame_h=100, frame_w=200, scale_x=0.5, scale_y=0.5, pad_x=0, pad_y=10)
    out = g.to_frame(np.array([[-10, 0, 150, 70]], np.float32))
    assert out.tolist() == [[0, 0, 200, 100]]


def test_malformed_frames_are_refused_with_a_model_error(tmp_path):
    m = load(tmp_path, constant_model([1, 3, 64, 64], {"output0": yolov8_output([])}),
             model_manifest("yolov8", LABELS, vision_spec()))
    with pytest.raises(ModelError, match="empty frame"):
        m.infer([np.zeros((0, 10, 3), np.uint8)])
    with pytest.raises(ModelError, match="4 channels"):
        m.infer([np.zeros((10, 10, 4), np.uint8)])
    assert m.infer([np.zeros((10, 10, 3), np.uint8)])[0] == [{"detections": []}]
