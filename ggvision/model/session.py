"""ONNX Runtime sessions: execution provider choice, tuned session options, and a runner using IO binding on GPU.

Provider choice (choose_providers): the configured preference picks the first provider to try, the rest of the
chain TensorRT -> CUDA -> CPU follows in that order, and only providers this onnxruntime build offers are kept.
A preferred provider that is not available is logged as a warning and the next one in the chain is used, so a
box without a GPU still serves on CPU. ONNX Runtime itself assigns each graph node to the first provider in the
list that supports it; provider_in_use reports the first one the session actually registered.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil

from .manifest import ModelError

log = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROVIDERS = (TENSORRT, CUDA, CPU)  # fastest first
PREFERENCES = {"auto": 0, "tensorrt": 0, "cuda": 1, "cpu": 2}  # index into PROVIDERS where the chain starts
GPU_PROVIDERS = frozenset({TENSORRT, CUDA})

ProviderList = list[str | tuple[str, dict[str, Any]]]


def choose_providers(preference: str, available: list[str] | None = None, *, trt_cache_dir: Path | None = None,
                     device_id: int = 0) -> ProviderList:
    """Providers (with options) for InferenceSession, best first, limited to what `available` offers.

    preference: "auto" (best available), "tensorrt", "cuda" or "cpu". A preferred but unavailable provider falls
    back down the chain with a warning; CPU is always last. `available` defaults to ort.get_available_providers().
    TensorRT runs in FP16 with its engines cached in `trt_cache_dir` (building an engine takes minutes; the cache
    makes the next start take seconds). Without a cache dir, TensorRT builds its engine at every start.
    """
    pref = preference.lower().strip() if isinstance(preference, str) else preference
    if pref not in PREFERENCES:
        raise ModelError(f"provider preference {preference!r}: expected one of {', '.join(PREFERENCES)}")
    avail = set(ort.get_available_providers() if available is None else available)
    chain = PROVIDERS[PREFERENCES[pref]:]
    if pref != "auto" and chain[0] not in avail:
        fallback = next((p for p in chain[1:] if p in avail), CPU)
        log.warning("execution provider %s requested but not available in this onnxruntime (%s); using %s",
                    chain[0], ", ".join(sorted(avail)) or "none", fallback)
    out: ProviderList = []
    for p in chain:
        if p not in avail and p != CPU:
            continue
        if p == TENSORRT:
            opts: dict[str, Any] = {"device_id": device_id, "trt_fp16_enable": True}
            if trt_cache_dir is not None:
                cache = str(Path(trt_cache_dir))
                opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=cache,
                            trt_timing_cache_enable=True, trt_timing_cache_path=cache)
            out.append((p, opts))
        elif p == CUDA:
            out.append((p, {"device_id": device_id}))
        else:
            out.append(p)
    return out


def with_trt_profile(providers: ProviderList, input_name: str, shape: tuple[int, ...],
                     max_batch: int) -> ProviderList:
    """Give TensorRT an optimisation profile for a dynamic batch (1..max_batch, tuned for max_batch); without one
    it builds (and caches) a new engine for every batch size it meets."""
    dims = "x".join(str(d) for d in shape[1:])
    out: ProviderList = []
    for p in providers:
        if isinstance(p, tuple) and p[0] == TENSORRT:
            opts = dict(p[1])
            opts.update(trt_profile_min_shapes=f"{input_name}:1x{dims}",
                        trt_profile_opt_shapes=f"{input_name}:{max_batch}x{dims}",
                        trt_profile_max_shapes=f"{input_name}:{max_batch}x{dims}")
            p = (TENSORRT, opts)
        out.append(p)
    return out


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1


def create_session(model_bytes: bytes, providers: ProviderList, threads: int | None = None) -> ort.InferenceSession:
    """An InferenceSession with all graph optimisations, sequential execution and intra-op threads sized to the box.

    threads: intra-op threads; default the physical cores (hyper-threads only add contention for these kernels).
    Raises ModelError when ONNX Runtime refuses the model.
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = max(1, int(threads)) if threads else physical_cores()
    so.inter_op_num_threads = 1  # sequential execution: one graph thread
    so.log_severity_level = 3  # errors only; warnings about unused initialisers etc. are noise here
    if os.environ.get("GGVISION_ORT_SPIN", "0") != "1":
        # Idle intra-op threads sleep instead of spinning: on an edge box the cores they would burn between
        # runs are the ones Capture, Filter and the runtime need (measured in bench/inference.py).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for p in providers:
        if isinstance(p, tuple) and p[0] == TENSORRT:
            cache = p[1].get("trt_engine_cache_path")
            if cache:
                Path(cache).mkdir(parents=True, exist_ok=True)
    try:
        return ort.InferenceSession(model_bytes, sess_options=so, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        raise ModelError(f"ONNX Runtime cannot load the model: {type(e).__name__}: {e}") from None


def provider_in_use(session: ort.InferenceSession) -> str:
    """The first provider the session registered (the one that runs the nodes it supports)."""
    provs = session.get_providers()
    return provs[0] if provs else CPU


class SessionRunner:
    """Runs a session: plain session.run on CPU; on CUDA/TensorRT binds the input (copied to the device once)
    and lets outputs be allocated on the device, then copies them back to host memory once after the run.

    One runner per thread of use: an IOBinding is not safe to share between concurrent runs.
    """

    def __init__(self, session: ort.InferenceSession, device_id: int = 0, *, io_binding: bool | None = None) -> None:
        self.session = session
        self.provider = provider_in_use(session)
        self.device_id = device_id
        self.output_names = [o.name for o in session.get_outputs()]
        on_gpu = self.provider in GPU_PROVIDERS
        self.uses_io_binding = on_gpu if io_binding is None else io_binding
        self.device = "cuda" if on_gpu else "cpu"  # io_binding=True on CPU exercises the same path in tests

    def run(self, feed: dict[str, np.ndarray], options: ort.RunOptions | None = None) -> list[np.ndarray]:
        """`options`: ONNX Runtime's RunOptions; setting its `terminate` from another thread ends the run."""
        if not self.uses_io_binding:
            return self.session.run(self.output_names, feed, options)
        binding = self.session.io_binding()
        for name, arr in feed.items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), self.device, self.device_id)
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, self.device, self.device_id)
        self.session.run_with_iobinding(binding, options)
        return binding.copy_outputs_to_cpu()
