"""The product Inference recipe adapted to run from the development venv under the test runtime, small real
ONNX models for tests (built with onnx.helper, written by write_model_dir), and model components for them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from harness import REPO, dev_recipe, write_recipe

from ggvision.model.loader import write_model_dir

NAME = "com.ggvision.test.InferenceDev"
FEEDER_ACL = {"aws.greengrass.ipc.pubsub": {"com.ggvision.test.Agent:feed:1": {
    "operations": ["aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"],
    "resources": ["ggvision/v1/*", "test/*"]}}}
YOLOX = REPO.parent / "shared" / "models" / "yolox_nano.onnx"
COCO = REPO.parent / "shared" / "models" / "coco_classes.txt"


def inference_dev_recipe(out_dir: Path, **config: Any) -> Path:
    """Same recipe and code as com.ggvision.Inference; only the name, Run (dev venv) and configuration differ."""
    doc = dev_recipe("com.ggvision.Inference", NAME)
    doc["ComponentConfiguration"]["DefaultConfiguration"].update(config)
    return write_recipe(doc, out_dir)


def model_component(recipes: Path, artifacts: Path, name: str, version: str, model_dir: Path) -> Path:
    """An artifact-only model component version (model.onnx + manifest.json) for the test runtime."""
    doc = {"RecipeFormatVersion": "2020-01-25", "ComponentName": name, "ComponentVersion": version,
           "ComponentDescription": "test model", "ComponentPublisher": "ggvision tests",
           "Manifests": [{"Platform": {"os": "linux"}, "Artifacts": [
               {"URI": f"s3://BUCKET/{name}/{version}/{f}"} for f in ("model.onnx", "manifest.json")]}]}
    recipes.mkdir(parents=True, exist_ok=True)
    path = recipes / f"{name}-{version}.json"
    path.write_text(json.dumps(doc))
    art = artifacts / name / version
    art.mkdir(parents=True, exist_ok=True)
    for f in ("model.onnx", "manifest.json"):
        (art / f).write_bytes((model_dir / f).read_bytes())
    return path


SLOW_TRIPS = 1_000_000  # Loop iterations of the "slow" trap (about 0.5 s on one core)


def tiny_detector_onnx(score: float, box: tuple[float, float, float, float] = (0.25, 0.25, 0.75, 0.75),
                       size: int = 32, class_id: int = 0, trap: str | None = None) -> Any:
    """An SSD-family detector with one box of class `class_id` whose score is `score` (so versions tell apart)
    for any frame, plus the frame's mean brightness / 255 * 0.001 (so outputs depend on the pixels). Dynamic batch.

    trap: a model that passes its warm-up (a frame of pad value 114) and goes wrong on a bright batch (mean
    >= 200): "raise" (ONNX Runtime fails: a Gather index out of range), "nan" (NaN boxes) or "slow" (a Loop of
    SLOW_TRIPS empty iterations first)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])
    outs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 1, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("classes", TensorProto.FLOAT, ["N", 1])]
    c = helper.make_tensor
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),  # [N]
        helper.make_node("Mul", ["m", "k"], ["mk"]),
        helper.make_node("Add", ["mk", "s"], ["s1"]),
        helper.make_node("Unsqueeze", ["s1", "ax1"], ["scores"]),  # [N,1]
        helper.make_node("Mul", ["scores", "zero"], ["z"]),
        helper.make_node("Add", ["z", "cls"], ["classes"]),
        helper.make_node("Unsqueeze", ["z", "ax2"], ["z3"]),  # [N,1,1]
        helper.make_node("Add", ["z3", "b"], ["boxes" if trap is None else "boxes0"]),  # [N,1,4]
    ]
    if trap is not None:  # bright = floor(max over the batch of the mean / 200): 0 at warm-up, 1 on bright frames
        nodes += [helper.make_node("ReduceMax", ["m"], ["mx"], keepdims=0),
                  helper.make_node("Div", ["mx", "c200"], ["q"]), helper.make_node("Floor", ["q"], ["bright"])]
        if trap == "raise":  # Gather from a one-element tensor at index `bright`
            nodes += [helper.make_node("Cast", ["bright"], ["idx"], to=TensorProto.INT64),
                      helper.make_node("Gather", ["one1", "idx"], ["g"]),
                      helper.make_node("Mul", ["boxes0", "g"], ["boxes"])]
        elif trap == "nan":  # sqrt(-bright): -0 -> 0, -1 -> NaN
            nodes += [helper.make_node("Neg", ["bright"], ["nb"]), helper.make_node("Sqrt", ["nb"], ["nan"]),
                      helper.make_node("Add", ["boxes0", "nan"], ["boxes"])]
        else:  # slow: bright * SLOW_TRIPS empty Loop iterations, added (as 0) to the boxes
            body = helper.make_graph(
                [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                 helper.make_node("Identity", ["acc_in"], ["acc_out"])],
                "spin", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [])],
                [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [])])
            nodes += [helper.make_node("Cast", ["bright"], ["bi"], to=TensorProto.INT64),
                      helper.make_node("Mul", ["bi", "trips"], ["n"]),
                      helper.make_node("Loop", ["n", "true", "zero"], ["spun"], body=body),
                      helper.make_node("Add", ["boxes0", "spun"], ["boxes"])]
    inits = [c("k", TensorProto.FLOAT, [], [0.001 / 255]), c("s", TensorProto.FLOAT, [], [score]),
             c("zero", TensorProto.FLOAT, [], [0.0]), c("ax1", TensorProto.INT64, [1], [1]),
             c("ax2", TensorProto.INT64, [1], [2]), c("b", TensorProto.FLOAT, [1, 1, 4], list(box)),
             c("cls", TensorProto.FLOAT, [], [float(class_id)]), c("c200", TensorProto.FLOAT, [], [200.0]),
             c("one1", TensorProto.FLOAT, [1], [1.0]), c("trips", TensorProto.INT64, [], [SLOW_TRIPS]),
             c("true", TensorProto.BOOL, [], [True])]
    graph = helper.make_graph(nodes, "tiny", [x], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="ggvision-tests")
    model.ir_version = 8
    return model


def tiny_detector_manifest(name: str = "tiny-detector", version: str = "1.0.0", size: int = 32) -> dict[str, Any]:
    return {"schema": "model-manifest/1.0", "name": name, "version": version, "family": "ssd", "task": "detection",
            "input": {"name": "images", "shape": [-1, 3, size, size], "dtype": "float32", "layout": "NCHW",
                      "color": "BGR", "resize": "stretch"},
            "labels": ["person", "car"], "thresholds": {"score": 0.05, "nms_iou": 0.45, "max_detections": 10},
            "decoder": {"boxes": "boxes", "scores": "scores", "classes": "classes", "box_format": "xyxy_norm"},
            "created_by": "tests", "description": "test detector: one box, score by version"}


def tiny_detector(out_dir: Path, version: str = "1.0.0", score: float = 0.9, **kw: Any) -> Path:
    """tiny_detector_onnx (its keywords: box, size, class_id, trap) as a model folder, labels person and car."""
    return write_model_dir(out_dir, tiny_detector_onnx(score, **kw), tiny_detector_manifest(version=version))


def tiny_fire_risk(out_dir: Path, version: str = "1.0.0") -> Path:
    """A tabular classifier over the 18 fire features: p(fire) = sigmoid((t_max - 60) / 10)."""
    from onnx import TensorProto, helper

    from ggvision.model.fire_features import FEATURE_NAMES

    n = len(FEATURE_NAMES)
    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n])
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])
    w = np.zeros((n, 1), np.float32)
    w[FEATURE_NAMES.index("t_max"), 0] = 0.1
    c = helper.make_tensor
    nodes = [helper.make_node("MatMul", ["features", "w"], ["z0"]),
             helper.make_node("Add", ["z0", "b"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["p"]),
             helper.make_node("Sub", ["one", "p"], ["q"]),
             helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1)]
    inits = [c("w", TensorProto.FLOAT, [n, 1], w.ravel().tolist()), c("b", TensorProto.FLOAT, [1], [-6.0]),
             c("one", TensorProto.FLOAT, [], [1.0])]
    model = helper.make_model(helper.make_graph(nodes, "fire", [x], [out], inits),
                              opset_imports=[helper.make_opsetid("", 13)], producer_name="ggvision-tests")
    model.ir_version = 8
    manifest = {"schema": "model-manifest/1.0", "name": "tiny-fire-risk", "version": version, "family": "tabular",
                "task": "tabular", "input": {"name": "features", "shape": [-1, n], "dtype": "float32",
                                             "features": list(FEATURE_NAMES)},
                "labels": ["no_fire", "fire"], "thresholds": {"score": 0.5},
                "decoder": {"probability_output": "probabilities", "positive_index": 1,
                            "outputs": {"fire_probability": "positive", "label": ["no_fire", "fire"]}},
                "created_by": "tests"}
    return write_model_dir(out_dir, model, manifest)


def yolox_nano_dir(out_dir: Path, version: str = "1.0.0") -> Path:
    """yolox_nano from /work/shared as a model folder (caller skips when it is absent)."""
    labels = [ln.strip() for ln in COCO.read_text().splitlines() if ln.strip()]
    manifest = {"schema": "model-manifest/1.0", "name": "yolox-nano", "version": version, "family": "yolox",
                "task": "detection",
                "input": {"name": "images", "shape": [1, 3, 416, 416], "dtype": "float32", "layout": "NCHW",
                          "color": "BGR", "scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1], "resize": "letterbox",
                          "pad_value": 114},
                "labels": labels, "thresholds": {"score": 0.3, "nms_iou": 0.45, "max_detections": 100},
                "decoder": {"strides": [8, 16, 32], "objectness": True}, "created_by": "tests"}
    return write_model_dir(out_dir, YOLOX, manifest)
