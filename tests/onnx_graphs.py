"""Tiny ONNX graphs for tests, built with onnx.helper: their outputs are known exactly, so decoders, batching and
model loading can be checked against hand-computed results. Reusable by other test modules.

  constant_model(input_shape, outputs, ...)   outputs are given arrays (per image) repeated over the batch
  mean_color_model(labels, ...)               classification: per-image channel means as the class scores
  linear_softmax_model(weights, bias, ...)    tabular classifier: probabilities = softmax(x @ W + b), label = argmax
  model_manifest(family, ...)                 a model-manifest/1.0 dict for such a graph (fill in what differs)
  with_nan_outputs(model)                     the same graph, its first output multiplied by NaN
  hanging(model)                              the same graph, its first output waiting on a Loop that never ends
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # onnxruntime 1.23 accepts up to 11; 8 keeps the graphs loadable by older runtimes too

_ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
         np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int64): TensorProto.INT64,
         np.dtype(np.int32): TensorProto.INT32, np.dtype(np.float64): TensorProto.DOUBLE}


def _dims(shape: tuple | list) -> list:
    """-1 -> a symbolic dimension (dynamic)."""
    return ["N" if d == -1 else d for d in shape]


def _finish(nodes: list, inputs: list, outputs: list, inits: list, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ggvision-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def constant_model(input_shape: tuple | list, outputs: dict[str, np.ndarray], *, input_name: str = "images",
                   input_dtype: Any = np.float32, output_batch: int | None = None) -> onnx.ModelProto:
    """A graph whose output `name` is outputs[name] (one image's worth) stacked over the input's batch.

    input_shape uses -1 for a dynamic batch. Each output becomes Expand(const[None], [batch] + shape), so a batch
    of n inputs yields n copies. output_batch fixes the declared output batch (default: follows the input).
    """
    x = helper.make_tensor_value_info(input_name, _ELEM[np.dtype(input_dtype)], _dims(input_shape))
    nodes = [
        helper.make_node("Shape", [input_name], ["in_shape"]),
        helper.make_node("Slice", ["in_shape", "zero", "one"], ["batch"]),
    ]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one")]
    outs = []
    b = input_shape[0] if output_batch is None else output_batch
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        inits.append(numpy_helper.from_array(arr[None], f"{name}_const"))
        inits.append(numpy_helper.from_array(np.array(arr.shape, np.int64), f"{name}_tail"))
        nodes.append(helper.make_node("Concat", ["batch", f"{name}_tail"], [f"{name}_shape"], axis=0))
        nodes.append(helper.make_node("Expand", [f"{name}_const", f"{name}_shape"], [name]))
        outs.append(helper.make_tensor_value_info(name, _ELEM[arr.dtype], _dims([b, *arr.shape])))
    return _finish(nodes, [x], outs, inits, "constant")


def mean_color_model(n_channels: int = 3, size: int = 32, *, batch: int = -1, softmax: bool = False,
                     input_name: str = "images", output_name: str = "scores") -> onnx.ModelProto:
    """Classification over channels: scores[b, c] = mean of channel c of image b (NCHW float32), optionally
    softmax-ed. A frame's dominant channel is its top class: batch order can be checked."""
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, _dims([batch, n_channels, size, size]))
    nodes = [helper.make_node("ReduceMean", [input_name], ["m" if softmax else output_name], axes=[2, 3], keepdims=0)]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["m"], [output_name], axis=1))
    inits: list = []
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, _dims([batch, n_channels]))
    return _finish(nodes, [x], [y], inits, "mean_color")


def linear_softmax_model(weights: np.ndarray, bias: np.ndarray, *, input_name: str = "features",
                         batch: int = -1) -> onnx.ModelProto:
    """A tabular classifier laid out like skl2onnx's with zipmap disabled: outputs `label` [N] int64 and
    `probabilities` [N, C] = softmax(x @ W + b)."""
    w = np.asarray(weights, np.float32)
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, _dims([batch, w.shape[0]]))
    nodes = [
        helper.make_node("MatMul", [input_name, "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.asarray(bias, np.float32), "b")]
    outs = [helper.make_tensor_value_info("label", TensorProto.INT64, _dims([batch])),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, _dims([batch, w.shape[1]]))]
    return _finish(nodes, [x], outs, inits, "linear_softmax")


def model_manifest(family: str, labels: list[str] | None, input_spec: dict, **extra: Any) -> dict:
    """A model-manifest/1.0 dict (sha256 is filled in by write_model_dir)."""
    task = {"classification": "classification", "tabular": "tabular"}.get(family, "detection")
    d: dict[str, Any] = {"schema": "model-manifest/1.0", "name": f"test-{family}", "version": "1.0.0",
                         "family": family, "task": task, "file": "model.onnx", "input": input_spec,
                         "thresholds": {"score": 0.3, "nms_iou": 0.45, "per_class": {}, "max_detections": 100},
                         "decoder": {}, "created_by": "tests"}
    if labels is not None:
        d["labels"] = labels
    d.update(extra)
    return d


def _reroute_first_output(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """A copy whose first output is renamed `<name>_raw` inside the graph, so a node can produce `<name>` from it."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    name = m.graph.output[0].name
    for node in m.graph.node:
        for i, o in enumerate(node.output):
            if o == name:
                node.output[i] = f"{name}_raw"
    return m, name


def with_nan_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model, but its first output is all NaN (a broken export): loads, runs, says nothing useful."""
    m, name = _reroute_first_output(model)
    m.graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan_const"))
    m.graph.node.append(helper.make_node("Mul", [f"{name}_raw", "nan_const"], [name]))
    onnx.checker.check_model(m)
    return m


def hanging(model: onnx.ModelProto, trips: int = 1 << 62) -> onnx.ModelProto:
    """The same model, but its first output waits on a Loop of `trips` empty iterations (2^62: never ends; ONNX
    Runtime's RunOptions.terminate can still stop it)."""
    m, name = _reroute_first_output(model)
    f32 = TensorProto.FLOAT
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "zero_f"], ["acc_out"])],
        "spin", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("acc_in", f32, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", f32, [])],
        [numpy_helper.from_array(np.array(0, np.float32), "zero_f")])
    m.graph.initializer.extend([numpy_helper.from_array(np.array(trips, np.int64), "spin_trips"),
                                numpy_helper.from_array(np.array(True), "spin_cond"),
                                numpy_helper.from_array(np.array(0, np.float32), "spin_acc")])
    m.graph.node.append(helper.make_node("Loop", ["spin_trips", "spin_cond", "spin_acc"], ["spin_out"], body=body))
    m.graph.node.append(helper.make_node("Add", [f"{name}_raw", "spin_out"], [name]))
    onnx.checker.check_model(m)
    return m
