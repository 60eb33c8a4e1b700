"""The IO spec of an ONNX file as ONNX Runtime sees it (input name, shape with -1 for dynamic dims, dtype)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .names import RegistryError

_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
           "tensor(int8)": "int8", "tensor(double)": "float64"}


def read_io(model: Path) -> dict[str, Any]:
    """{"inputs": [{"name","shape","dtype"}], "outputs": [...]}; RegistryError if ONNX Runtime cannot open it."""
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad graphs
        raise RegistryError(f"{model}: ONNX Runtime cannot load it: {str(e).splitlines()[0][:300]}") from None

    def spec(arg: Any) -> dict[str, Any]:
        shape = [d if isinstance(d, int) and d > 0 else -1 for d in arg.shape]
        return {"name": arg.name, "shape": shape, "dtype": _DTYPES.get(arg.type, arg.type)}

    return {"inputs": [spec(a) for a in sess.get_inputs()], "outputs": [spec(a) for a in sess.get_outputs()]}


def input_spec(model: Path, family: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest's `input` for `model`: name/shape/dtype from the file, the rest from overrides."""
    io = read_io(model)
    if len(io["inputs"]) != 1:
        names = [i["name"] for i in io["inputs"]]
        raise RegistryError(f"{model}: expected exactly one input, the model has {len(names)}: {names}")
    spec = dict(io["inputs"][0])
    if family != "tabular" and len(spec["shape"]) == 4 and spec["shape"][1] not in (1, 3) \
            and spec["shape"][3] in (1, 3):
        spec["layout"] = "NHWC"
    spec.update(overrides or {})
    return spec
