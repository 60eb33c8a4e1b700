"""YOLOX-Nano on the GPU providers against the CPU, on real vtest frames: skipped where onnxruntime has no working
CUDA or TensorRT (CI, this project's VMs), run by bench/gpu.py's test step on an NVIDIA box.

On a GPU the loader gives the fixed-batch-1 export a dynamic batch, TensorRT runs in FP16 with its engine cached,
and the runner binds input and outputs on the device (docs/inference.md). The detections must be the CPU's: every
confident CPU detection has a GPU one of the same class over the same box (FP16 moves boxes and scores a little).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from inference_dev import YOLOX, yolox_nano_dir

from ggvision.model.loader import load_model
from ggvision.model.session import CUDA, TENSORRT

VIDEO = YOLOX.parents[1] / "data" / "video" / "vtest.avi"


def _frames(n: int) -> list[np.ndarray]:
    import av

    with av.open(str(VIDEO)) as c:
        out = []
        for i, f in enumerate(c.decode(video=0)):
            if i % 25 == 0:  # a second apart: different crowds
                out.append(f.to_ndarray(format="bgr24"))
            if len(out) == n:
                return out
    return out


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize(("preference", "provider"), [("cuda", CUDA), ("tensorrt", TENSORRT)])
def test_gpu_provider_detects_what_the_cpu_detects(preference: str, provider: str, tmp_path: Path) -> None:
    if not (YOLOX.exists() and VIDEO.exists()):
        pytest.skip("../shared (yolox_nano.onnx, vtest.avi) is absent")
    if provider not in ort.get_available_providers():
        pytest.skip(f"{provider} is not in this onnxruntime build (the `gpu` extra: onnxruntime-gpu)")
    model_dir = yolox_nano_dir(tmp_path / "yolox")
    # bench/gpu.py points this at its engine cache: the engine built here is the one its inference run loads
    cache = Path(os.environ.get("GGVISION_TEST_TRT_CACHE") or tmp_path / "trt")
    gpu = load_model(model_dir, provider=preference, trt_cache_dir=cache)
    if gpu.provider != provider:
        gpu.close()
        pytest.skip(f"{provider} did not register (fell back to {gpu.provider}: CUDA/cuDNN/TensorRT libraries?)")
    cpu = load_model(model_dir, provider="cpu")
    frames = _frames(4)
    try:
        assert gpu.max_batch is None or gpu.max_batch >= 4  # the export's batch 1 made dynamic on the GPU
        got, _ = gpu.infer(frames)  # one batch of 4
        want, _ = cpu.infer(frames)
    finally:
        gpu.close()
        cpu.close()
    assert len(got) == len(want) == 4
    confident = 0
    for g, w in zip(got, want, strict=True):
        for d in w["detections"]:
            if d["score"] < 0.5:
                continue
            confident += 1
            match = max((o for o in g["detections"] if o["class_id"] == d["class_id"]),
                        key=lambda o: _iou(o["box"], d["box"]), default=None)
            assert match is not None and _iou(match["box"], d["box"]) > 0.85, (d, match)
            assert abs(match["score"] - d["score"]) < 0.05, (d, match)
    assert confident >= 4  # vtest is a busy plaza: the comparison compared something
