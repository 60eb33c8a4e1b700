"""Give a fixed-batch-1 export a dynamic batch dimension, when that provably changes nothing.

Many exports (the official YOLOX ONNX files among them) fix the batch at 1: the graph input says [1, ...] and the
head's Reshape nodes carry a literal 1 ([1, 85, -1]). Making the input/output batch symbolic and turning those
leading 1s into 0 ("copy this dimension from the input", the Reshape default when allowzero=0) lets one run take
several frames. The rewrite is only kept if a batch of different inputs gives exactly the per-frame outputs
(verify_same); otherwise the caller keeps the original fixed-batch model.

Needs the `onnx` package (a development/training dependency); without it the model stays fixed-batch.
On CPU batching did not pay off for yolox_nano (see docs/models.md), so load_model only tries this on GPU or when
asked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)


def make_batch_dynamic(model_bytes: bytes) -> bytes | None:
    """The rewritten model, or None when the onnx package is missing or the graph is not a fixed-batch-1 one."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        log.info("onnx package not installed: fixed-batch model kept as is")
        return None
    model = onnx.load_from_string(model_bytes)
    g = model.graph
    inits = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    if len(real_inputs) != 1:
        return None
    dims = real_inputs[0].type.tensor_type.shape.dim
    if not dims or dims[0].dim_value != 1:
        return None
    dims[0].ClearField("dim_value")
    dims[0].dim_param = "batch"
    for out in g.output:
        od = out.type.tensor_type.shape.dim
        if od and od[0].dim_value == 1:
            od[0].ClearField("dim_value")
            od[0].dim_param = "batch"
    shape_inputs = {n.input[1] for n in g.node if n.op_type == "Reshape" and len(n.input) > 1
                    and not any(a.name == "allowzero" and a.i for a in n.attribute)}
    for init in g.initializer:
        if init.name in shape_inputs:
            a = numpy_helper.to_array(init)
            if a.ndim == 1 and len(a) > 1 and a[0] == 1:
                a = a.copy()
                a[0] = 0
                init.CopyFrom(numpy_helper.from_array(a, init.name))
    for n in g.node:  # shapes given as Constant nodes instead of initializers
        if n.op_type == "Constant" and n.output[0] in shape_inputs:
            for attr in n.attribute:
                if attr.name == "value":
                    a = numpy_helper.to_array(attr.t)
                    if a.ndim == 1 and len(a) > 1 and a[0] == 1:
                        a = a.copy()
                        a[0] = 0
                        attr.t.CopyFrom(numpy_helper.from_array(a, attr.t.name))
    del g.value_info[:]  # intermediate shapes recorded with batch 1 would now be wrong
    return model.SerializeToString()


def verify_same(run: Callable[[np.ndarray], list[np.ndarray]], sample: np.ndarray, n: int = 2) -> bool:
    """True when running `n` different inputs as one batch gives exactly the outputs of running them one by one.

    sample: one input [1, ...]; the batch is made of distinct variants of it so a batch-mixing bug would show.
    """
    rng = np.random.default_rng(0)
    batch = np.concatenate([sample] + [
        (sample + rng.uniform(0, 50, sample.shape)).astype(sample.dtype) for _ in range(n - 1)])
    try:
        together = run(batch)
        alone = [run(batch[i:i + 1]) for i in range(n)]
    except Exception as e:  # the rewrite broke the graph for batch > 1
        log.info("dynamic batch rewrite does not run: %s", e)
        return False
    for k, out in enumerate(together):
        single = np.concatenate([a[k] for a in alone])
        if out.shape != single.shape or not np.array_equal(out, single):
            return False
    return True
