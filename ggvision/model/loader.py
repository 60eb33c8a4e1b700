"""Loading a model directory (model.onnx + manifest.json) into a verified, warmed-up, ready-to-run LoadedModel.

load_model refuses (ModelError naming what and where) a model whose digest does not match its manifest, that
ONNX Runtime cannot load, whose input/outputs do not fit the manifest and family, whose warm-up run fails, gives
NaN or infinite outputs, or does not finish within its deadline (a model that hangs). The caller keeps whatever
it was serving before. At serving time too, a run whose outputs are not finite raises instead of publishing.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import preprocess
from .decoders import Decoder, make_decoder
from .dynamic_batch import make_batch_dynamic, verify_same
from .manifest import MANIFEST_FILE, VISION_FAMILIES, ModelError, ModelManifest, load_manifest, write_model_dir
from .session import (
    CPU,
    GPU_PROVIDERS,
    TENSORRT,
    ProviderList,
    SessionRunner,
    choose_providers,
    create_session,
    provider_in_use,
    with_trt_profile,
)

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "ModelError", "load_model", "write_model_dir"]

_ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "uint8": "tensor(uint8)",
              "int8": "tensor(int8)", "float64": "tensor(double)"}


class LoadedModel:
    """A verified model with its session, pre-processing and decoder.

    infer() may be called from one thread at a time (the component's inference thread); the session itself is
    thread-safe but the runner's IO binding and the decoder's one-time auto-detection are not shared safely.
    Reading the attributes from other threads is fine. close() releases the session and may come from another
    thread (a hot swap): a call already running finishes, later infer() calls raise ModelError.
    """

    def __init__(self, manifest: ModelManifest, model_dir: Path, session: Any, decoder: Decoder,
                 max_batch: int | None, device_id: int = 0) -> None:
        self.manifest = manifest
        self.model_dir = model_dir
        self.session = session
        self.decoder = decoder
        self.max_batch = max_batch
        self.provider = provider_in_use(session)
        self.load_ms = 0.0
        self._runner: SessionRunner | None = SessionRunner(session, device_id)
        self._vision = manifest.family in VISION_FAMILIES

    def __repr__(self) -> str:
        m = self.manifest
        return f"<LoadedModel {m.name} {m.version} {m.family} on {self.provider} max_batch={self.max_batch}>"

    @property
    def where(self) -> str:
        return f"model {self.manifest.name} {self.manifest.version} ({self.model_dir})"

    def dummy_input(self) -> np.ndarray:
        if not self._vision:
            return np.zeros(self.manifest.input.shape[1], dtype=np.float32)
        return _dummy_frame(self.manifest)

    def warm_up(self, timeout_s: float | None = None) -> None:
        """One inference on a dummy input (first-run allocations, TensorRT engine build, decoder checks).

        timeout_s: ONNX Runtime is told to end the run after this long, and the model is refused as hung (a run
        that never ends would hold the loader, and a core, for good)."""
        options = None
        timer = None
        if timeout_s is not None:
            import onnxruntime as ort

            options = ort.RunOptions()
            timer = threading.Timer(timeout_s, lambda: setattr(options, "terminate", True))
            timer.daemon = True
            timer.start()
        try:
            self.infer([self.dummy_input()], options)
        except ModelError:
            if options is not None and options.terminate:
                raise ModelError(f"{self.where}: the warm-up run did not finish within {timeout_s:g} s "
                                 "(a model that hangs, or warmupTimeoutS too short for it)") from None
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def infer(self, inputs: Sequence[Any], options: Any = None) -> tuple[list[dict], dict[str, float]]:
        """Frames (vision: HxWxC uint8 BGR, or HxW / HxWx1 single channel) or feature rows (tabular: 1-D float
        vectors, or mappings by feature name) -> (per-input task parts of detections/1.0, batch timings_ms).

        Inputs beyond max_batch are run in chunks; timings are summed over the chunks. `options`: RunOptions for
        each run. Outputs with NaN or infinite values raise ModelError (a decoder would drop or publish them).
        """
        runner = self._runner  # close() from another thread lets a running call finish on its own reference
        if runner is None:
            raise ModelError(f"{self.where}: closed")
        timings = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        results: list[dict] = []
        if not inputs:
            return results, timings
        step = self.max_batch or len(inputs)
        spec = self.manifest.input
        for i in range(0, len(inputs), step):
            chunk = inputs[i:i + step]
            t0 = time.perf_counter()
            try:
                if self._vision:
                    tensor, geoms = preprocess.prepare(list(chunk), spec)
                else:
                    tensor, geoms = preprocess.features_tensor(list(chunk), spec), [None] * len(chunk)
            except ModelError as e:
                raise ModelError(f"{self.where}: inputs from #{i}: {e}") from None
            except Exception as e:  # cv2/numpy on a malformed frame
                raise ModelError(f"{self.where}: cannot preprocess input: {type(e).__name__}: {e}") from None
            t1 = time.perf_counter()
            try:
                raw = runner.run({spec.name: tensor}, options)
            except Exception as e:  # onnxruntime's own exception types
                raise ModelError(f"{self.where}: inference failed: {type(e).__name__}: {e}") from None
            _check_finite(runner.output_names, raw, self.where)
            t2 = time.perf_counter()
            try:
                results.extend(self.decoder(dict(zip(runner.output_names, raw, strict=True)), geoms))
            except ModelError:
                raise
            except Exception as e:  # outputs the decoder cannot read
                raise ModelError(f"{self.where}: cannot decode outputs: {type(e).__name__}: {e}") from None
            t3 = time.perf_counter()
            timings["preprocess"] += (t1 - t0) * 1000
            timings["inference"] += (t2 - t1) * 1000
            timings["postprocess"] += (t3 - t2) * 1000
        return results, timings

    def close(self) -> None:
        """Release the session (memory is freed once no infer call still holds it). Idempotent."""
        self._runner = None
        self.session = None


def _check_finite(names: list[str], arrays: list[np.ndarray], where: str) -> None:
    """A model whose outputs are NaN/inf is broken (bad export, overflow); its detections would be silently
    dropped by score thresholds, or published as invalid JSON numbers."""
    for name, arr in zip(names, arrays, strict=True):
        a = np.asarray(arr)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise ModelError(f"{where}: output {name!r} has {bad} NaN or infinite value(s) of {a.size}")


def _shape(dims: list) -> list:
    return [d if isinstance(d, int) and d > 0 else -1 for d in dims]


def _check_io(session: Any, m: ModelManifest, where: str) -> int | None:
    """Compare the session's input with the manifest; returns max_batch (None = dynamic)."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"{where}: the model has {len(inputs)} inputs {[i.name for i in inputs]}; one expected")
    inp = inputs[0]
    spec = m.input
    if inp.name != spec.name:
        raise ModelError(f"{where}: input is named {inp.name!r} in the model, {spec.name!r} in the manifest")
    if inp.type != _ORT_TYPES[spec.dtype]:
        raise ModelError(f"{where}: input {inp.name!r} is {inp.type} in the model, manifest says {spec.dtype}")
    model_shape = _shape(inp.shape)
    if len(model_shape) != len(spec.shape):
        raise ModelError(f"{where}: input {inp.name!r} shape {model_shape} in the model vs {list(spec.shape)} "
                         "in the manifest (rank differs)")
    for axis, (md, sd) in enumerate(zip(model_shape, spec.shape, strict=True)):
        if md != -1 and md != sd:
            raise ModelError(f"{where}: input {inp.name!r} shape {model_shape} in the model vs {list(spec.shape)} "
                             f"in the manifest (axis {axis}: {md} vs {sd})")
    if model_shape[0] != -1:
        return model_shape[0]
    return None if spec.shape[0] == -1 else spec.shape[0]


def load_model(model_dir: str | Path, *, provider: str = "auto", threads: int | None = None,
               trt_cache_dir: Path | None = None, device_id: int = 0, dynamic_batch: bool | None = None,
               batch_limit: int = 16, warmup_timeout_s: float | None = None) -> LoadedModel:
    """Verify and load `model_dir` (manifest.json + the model file it names); ModelError on any refusal.

    provider: "auto" | "tensorrt" | "cuda" | "cpu" (see session.choose_providers); threads: intra-op threads
    (default: physical cores). dynamic_batch: give a fixed-batch-1 export a dynamic batch when that provably
    gives identical outputs (dynamic_batch.py); None = only on GPU, where batching pays (on CPU it did not).
    batch_limit: the largest batch TensorRT's optimisation profile covers for a dynamic-batch model.
    warmup_timeout_s: refuse the model when its warm-up run (which includes a TensorRT engine build) takes longer.
    """
    t0 = time.perf_counter()
    model_dir = Path(model_dir)
    m = load_manifest(model_dir)
    path = model_dir / m.file
    where = f"{path}"
    try:
        data = path.read_bytes()  # hash the very bytes the session gets: no swap between check and use
    except OSError as e:
        raise ModelError(f"{where}: cannot read model file: {e.strerror or e}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != m.sha256:
        raise ModelError(f"{where}: sha256 mismatch: file has {digest}, manifest {model_dir / MANIFEST_FILE} "
                         f"says {m.sha256} (corrupt or replaced model)")
    decoder = make_decoder(m, where)
    if trt_cache_dir is not None:
        # ONNX Runtime names cached engines after the graph's structure, not its weights: a retrained model of the
        # same architecture would load the old engine. One subdirectory per model digest keeps them apart.
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", m.name)[:64]
        trt_cache_dir = Path(trt_cache_dir) / f"{safe}-{m.sha256[:16]}"
    providers = choose_providers(provider, trt_cache_dir=trt_cache_dir, device_id=device_id)
    first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    on_gpu = first in GPU_PROVIDERS
    session = None
    rewritten = False
    if (dynamic_batch if dynamic_batch is not None else on_gpu) and m.input.batch in (1, -1):
        new = make_batch_dynamic(data)
        if new is not None:
            cpu = _session(new, [CPU], threads, where)
            _check_io(cpu, m, where)
            sample = preprocess.prepare([_dummy_frame(m)], m.input)[0] if m.family in VISION_FAMILIES else None
            if sample is not None and verify_same(lambda x: cpu.run(None, {m.input.name: x}), sample):
                rewritten, data = True, new
                log.info("%s: fixed batch 1 made dynamic (identical outputs verified)", where)
                if on_gpu:
                    providers = with_trt_profile(providers, m.input.name, m.input.shape, batch_limit)
                else:
                    session = cpu
    if session is None:
        session = _session(data, providers, threads, where)
    max_batch = _check_io(session, m, where)
    if rewritten:
        max_batch = batch_limit if first == TENSORRT else None
    elif max_batch is None and first == TENSORRT:
        session = _session(data, with_trt_profile(providers, m.input.name, m.input.shape, batch_limit), threads,
                           where)
        max_batch = batch_limit
    decoder.check_outputs([(o.name, list(o.shape), o.type) for o in session.get_outputs()])
    model = LoadedModel(m, model_dir, session, decoder, max_batch, device_id)
    try:
        model.warm_up(warmup_timeout_s)
    except ModelError as e:
        raise ModelError(f"{where}: warm-up failed: {e}") from None
    except Exception as e:  # a decoder meeting outputs it cannot read
        raise ModelError(f"{where}: warm-up failed: {type(e).__name__}: {e}") from None
    model.load_ms = (time.perf_counter() - t0) * 1000
    log.info("loaded %s %s (%s) on %s in %.0f ms, max_batch=%s", m.name, m.version, m.family, model.provider,
             model.load_ms, model.max_batch)
    return model


def _session(data: bytes, providers: ProviderList, threads: int | None, where: str) -> Any:
    try:
        return create_session(data, providers, threads)
    except ModelError as e:
        raise ModelError(f"{where}: {e}") from None


def _dummy_frame(m: ModelManifest) -> np.ndarray:
    h, w = m.input.hw
    return np.full((h, w, 3 if m.input.channels == 3 else 1), m.input.pad_value, dtype=np.uint8)
