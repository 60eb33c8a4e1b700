"""The whole GPU run in one go: on a fresh NVIDIA box (a T4) with this repo, figures within about 8 minutes.

    .venv/bin/python bench/gpu.py [--out DIR] [--cameras 8 16 32] [--budget 480]
    .venv/bin/python bench/gpu.py --dry-run        # a CPU-only box: the same steps on provider cpu, tiny sizes

Steps, each a subprocess whose output goes to OUT/gpu-run.log (OUT: --out, else $OUT, else ./gpu-run-<time>):
1. preflight (OUT/preflight.json): nvidia-smi, onnxruntime's version and providers, whether a session really
   registers TensorRT and CUDA (a tiny graph: ONNX Runtime falls back to the CPU quietly when CUDA's libraries are
   missing), PyAV/FFmpeg's hwaccels and whether NVDEC opens (ggvision.capture.sources.cuda_decode_probe). Without
   a GPU provider it stops here (exit 3; --force goes on), saving the machine's minutes.
1b. tests: tests/product/test_capture_hwdecode.py and test_gpu_inference.py, which take the GPU branch where a
   device works (NVDEC frames = the CPU decoder's BGR within rounding; YOLOX on CUDA and TensorRT finds what the
   CPU finds) and are skipped or take the fallback branch elsewhere.
2. bench/inference.py --provider tensorrt, then cuda: batches 1 and 8, one alternation, 2 s per bare row
   (OUT/inference-tensorrt.json, OUT/inference-cuda.json).
3. bench/suite.py --provider tensorrt --hwdecode auto: the ramp over --cameras (warm-up 5 s, window 10 s, --stop;
   OUT/suite-tensorrt-hwdecode-auto.json), then the same with --hwdecode off (OUT/suite-tensorrt-hwdecode-off.json).
OUT/summary.json: each step's command, exit status, seconds and headline figures (providers used, decoders,
capacities, ratios), also printed as markdown tables at the end of the log (`--report OUT` prints them again).

Budget: --budget seconds for everything (default 480). Preflight, tests and the two inference runs are capped
(60, 90, 150, 70 s; typically much less); the two ramps share what is left, the NVDEC ramp first. A step that
runs out of time is interrupted (SIGINT: its runtimes, servers and moto are cleaned up) and suite.py keeps the
rows it finished (its JSON is rewritten after each N), so a short budget gives fewer N, never nothing. TensorRT
engines go to --trt-cache (default .trt-cache/ in the repo, ignored by git) and are built once: the tests build
the YOLOX-Nano export's engine, the inference run the dynamic-batch graph's, which the ramps then load (the same
cache entry). On a cold cache the builds take part of the budget (not measured yet); a second run on the same box
starts from the cache.

Libraries: CUDA/cuDNN/TensorRT from pip wheels (nvidia-*, tensorrt-cu12-libs) live in site-packages, where
ONNX Runtime does not look by default; their lib folders are put on LD_LIBRARY_PATH for every step (the
components inherit it through the runtime). The preflight says whether that worked.

--dry-run: provider cpu instead of tensorrt/cuda (and no stop without a GPU), inference on 16 frames and batch 1,
ramps of 1 camera with the null model (warm-up 3 s, window 4 s): the same scripts and code paths, about 80 s on
2 cores (tests/test_bench_suite.py runs it).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


class Run:
    """The output folder, its log, and the steps' results."""

    def __init__(self, out: Path, budget: float) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.log = (out / "gpu-run.log").open("a", buffering=1)
        self.t0 = time.monotonic()
        self.budget = budget
        self.steps: list[dict[str, Any]] = []

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log.write(text + "\n")

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def step(self, name: str, cmd: list[str], timeout: float, env: dict[str, str],
             json_out: Path | None = None) -> dict[str, Any]:
        """Run `cmd`, its output into the log; interrupted (SIGINT, then SIGKILL) after `timeout` seconds."""
        timeout = min(timeout, self.left())
        if timeout < 20:  # too little left to start runtimes and measure anything
            self.say(f"\n=== {name}: skipped, {self.left():.0f} s of the budget left")
            rec = {"step": name, "cmd": cmd, "rc": None, "seconds": 0.0, "timed_out": False, "skipped": True}
            self.steps.append(rec)
            return rec
        self.say(f"\n=== {name}: {' '.join(cmd)}  (up to {timeout:.0f} s; {self.left():.0f} s of the budget left)")
        t = time.monotonic()
        # its own process group: the interrupt reaches the bench and the runtimes, servers and moto it started
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        assert proc.stdout is not None
        reader = threading.Thread(target=lambda: [self.say(ln.rstrip("\n")) for ln in proc.stdout], daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            self.say(f"--- {name}: out of time after {timeout:.0f} s; interrupting")
            _signal_group(proc, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(10)
        reader.join(10)
        rec = {"step": name, "cmd": cmd, "rc": proc.returncode, "seconds": round(time.monotonic() - t, 1),
               "timed_out": timed_out}
        if json_out is not None:
            rec["json"] = json_out.name if json_out.exists() else None
        self.say(f"--- {name}: exit {proc.returncode} after {rec['seconds']} s" + (" (timed out)" if timed_out else ""))
        self.steps.append(rec)
        return rec


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def library_env() -> dict[str, str]:
    """The environment for the steps: pip-installed NVIDIA libraries (nvidia-*/lib, tensorrt_libs) on the loader's
    path, ahead of what was there."""
    env = dict(os.environ)
    site = sysconfig.get_paths()["purelib"]
    dirs = sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib"))) + sorted(
        glob.glob(os.path.join(site, "tensorrt_libs")))
    if dirs:
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*dirs, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --------------------------------------------------------------------------- preflight (run as a step)


def preflight(path: Path, trt_cache: Path) -> int:
    """Write what this box offers to `path`; exit 0 when TensorRT or CUDA really registers, else 3."""
    import av
    import onnxruntime as ort
    from av.codec.hwaccel import hwdevices_available
    from onnx_graphs import mean_color_model

    from ggvision.capture.sources import cuda_decode_probe
    from ggvision.model.session import CUDA, TENSORRT, choose_providers, create_session, provider_in_use

    doc: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                           "cpus": os.cpu_count(), "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", "")}
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
        doc["nvidia_smi"] = (r.stdout or r.stderr).strip()
    except (OSError, subprocess.SubprocessError) as e:
        doc["nvidia_smi"] = f"not available: {e}"
    doc["onnxruntime"] = {"version": ort.__version__, "available": ort.get_available_providers()}
    graph = mean_color_model().SerializeToString()
    registered = {}
    for pref, name in (("tensorrt", TENSORRT), ("cuda", CUDA)):
        if name not in ort.get_available_providers():
            registered[pref] = "not in this onnxruntime build"
            continue
        try:
            sess = create_session(graph, choose_providers(pref, trt_cache_dir=trt_cache / "preflight"), threads=1)
            used = provider_in_use(sess)
            registered[pref] = "ok" if used == name else f"fell back to {used} (libraries missing?)"
        except Exception as e:  # noqa: BLE001 - reported, not fatal: the other provider may work
            registered[pref] = f"{type(e).__name__}: {e}"[:500]
    doc["onnxruntime"]["sessions"] = registered
    ok_nvdec, why = cuda_decode_probe()
    doc["pyav"] = {"version": av.__version__, "ffmpeg": av.ffmpeg_version_info,
                   "hwdevices": hwdevices_available(), "nvdec": "ok" if ok_nvdec else why}
    gpu = any(v == "ok" for v in registered.values())
    doc["gpu_inference"] = gpu
    path.write_text(json.dumps(doc, indent=2, default=str))
    print(json.dumps(doc, indent=2, default=str))
    return 0 if gpu else 3


# --------------------------------------------------------------------------- the summary


def headline(path: Path) -> dict[str, Any] | None:
    """The figures a reader wants first from one step's JSON."""
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    if "rows" in doc and "capacity" in doc:  # suite.py
        return {"capacity": doc["capacity"], "partial": doc.get("partial", False), "gpu": doc["machine"].get("gpu"),
                "rows": [{"n": r["n"], **{side: {"ratio": round(r[side]["ratio"], 3), "provider": r[side]["provider"],
                                                 "decoders": r[side]["decoders"],
                                                 "ms_per_frame": r[side]["ms_per_frame"]}
                                          for side in ("bare", "suite") if side in r}} for r in doc["rows"]]}
    if "rows" in doc:  # inference.py
        return {"provider": doc.get("provider"),
                "rows": [{k: r[k] for k in ("row", "batch", "bare_fps", "component_fps", "ratio") if k in r}
                         for r in doc["rows"]]}
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="output folder (default $OUT, else ./gpu-run-<time>)")
    ap.add_argument("--cameras", type=int, nargs="+", default=[8, 16, 32], help="the ramps' N")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run")
    ap.add_argument("--trt-cache", type=Path, default=REPO / ".trt-cache", help="TensorRT engine cache folder")
    ap.add_argument("--dry-run", action="store_true", help="provider cpu, tiny sizes: the code paths on any box")
    ap.add_argument("--force", action="store_true", help="go on when no GPU provider registers")
    ap.add_argument("--report", type=Path, metavar="OUT", help="print an earlier run's summary as markdown tables")
    ap.add_argument("--preflight-only", type=Path, help=argparse.SUPPRESS)  # the preflight step itself
    args = ap.parse_args()
    if args.report:
        print(markdown(json.loads((args.report / "summary.json").read_text())))
        return 0
    if args.preflight_only:
        return preflight(args.preflight_only, args.trt_cache)

    out = args.out or Path(os.environ.get("OUT") or REPO / f"gpu-run-{time.strftime('%Y%m%d-%H%M%S')}")
    run = Run(out.resolve(), args.budget)
    env = library_env()
    py = sys.executable
    run.say(f"bench/gpu.py{' --dry-run' if args.dry_run else ''}: output in {run.out}, budget {args.budget:.0f} s, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
    pre = run.step("preflight", [py, __file__, "--preflight-only", str(run.out / "preflight.json"),
                                 "--trt-cache", str(args.trt_cache)], 60, env, run.out / "preflight.json")
    gpu_ready = pre["rc"] == 0
    if not gpu_ready and not (args.dry_run or args.force):
        run.say("no GPU provider registers (preflight.json says why); stopping. --force runs the benches anyway.")
        return finish(run, args, 3)

    # the GPU-conditional tests: NVDEC's frames against the CPU decoder's, YOLOX on CUDA/TensorRT against the CPU
    # (skipped without a device; -rs lists why in the log)
    tests = ["tests/product/test_capture_hwdecode.py", "tests/product/test_gpu_inference.py"]
    scratch = Path(tempfile.mkdtemp(prefix="ggv-gpu-tests-"))  # test videos stay out of OUT
    run.step("tests", [py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--basetemp", str(scratch),
                       *tests], 90, {**env, "GGVISION_TEST_TRT_CACHE": str(args.trt_cache)})
    shutil.rmtree(scratch, ignore_errors=True)

    providers = ["cpu"] if args.dry_run else ["tensorrt", "cuda"]
    inf_args = (["--batches", "1", "--frames", "16", "--min-seconds", "0.5"] if args.dry_run
                else ["--batches", "1", "8", "--frames", "100", "--min-seconds", "2"])
    for p, cap in zip(providers, (150, 70), strict=False):  # TensorRT's cap holds two cold engine builds
        path = run.out / f"inference-{p}.json"
        run.step(f"inference {p}", [py, "bench/inference.py", "--provider", p, "--repeat", "1", *inf_args,
                                    "--trt-cache", str(args.trt_cache), "--json", str(path)], cap, env, path)

    suite_provider = "cpu" if args.dry_run else "tensorrt"
    ramp = (["--cameras", "1", "--model", "null", "--warmup", "3", "--window", "4"] if args.dry_run
            else ["--cameras", *map(str, args.cameras), "--warmup", "5", "--window", "10", "--stop"])
    variants = ("auto", "off")  # NVDEC where a device opens, then CPU decoding
    for i, hw in enumerate(variants):
        path = run.out / f"suite-{suite_provider}-hwdecode-{hw}.json"
        share = run.left() / (len(variants) - i)  # the first ramp may not take the second's time
        run.step(f"suite {suite_provider} hwdecode {hw}", [py, "bench/suite.py", "--provider", suite_provider,
                                                           "--hwdecode", hw, *ramp, "--trt-cache", str(args.trt_cache),
                                                           "--json", str(path)], share, env, path)
    return finish(run, args, 0)


def markdown(doc: dict[str, Any]) -> str:
    """summary.json as the tables docs/performance.md wants: inference per provider, then cameras per GPU."""
    fig = doc["figures"]
    pre = fig.get("preflight") or {}
    ort_ = pre.get("onnxruntime", {})
    lines = [f"GPU: {pre.get('nvidia_smi', '?')}; onnxruntime {ort_.get('version', '?')} sessions "
             f"{ort_.get('sessions', {})}; NVDEC {pre.get('pyav', {}).get('nvdec', '?')}", "",
             "| inference run | provider used | row | bare fps | component fps | component ÷ bare |",
             "| --- | --- | --- | --- | --- | --- |"]
    for step, f in fig.items():
        if step.startswith("inference") and f:
            for r in f["rows"]:
                cells = [step, str(f.get("provider")), r["row"], f"{r['bare_fps']:.1f}",
                         f"{r['component_fps']:.1f}" if "component_fps" in r else "–",
                         f"{r['ratio']:.2f}" if "ratio" in r else "–"]
                lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| suite ramp | N | bare analysed | suite analysed | bare / suite ms CPU per frame "
              "| provider, decoders (bare; suite) |", "| --- | --- | --- | --- | --- | --- |"]
    caps = []
    for step, f in fig.items():
        if not step.startswith("suite") or not f:
            continue
        for r in f["rows"]:
            b, su = r.get("bare"), r.get("suite")
            ms = "/".join("–" if x is None or x.get("ms_per_frame") is None else f"{x['ms_per_frame']:.1f}"
                          for x in (b, su))
            who = "; ".join(f"{x['provider']}, {x['decoders']}" for x in (b, su) if x)
            lines.append(f"| {step} | {r['n']} | {b['ratio'] if b else '–'} | {su['ratio'] if su else '–'} | {ms} | "
                         f"{who} |")
        c = f["capacity"]
        ratio = f"{c['suite'] / c['bare']:.2f}" if c["bare"] else "–"
        caps.append(f"{step}: cameras per box suite {c['suite']}, bare {c['bare']}, ratio {ratio}"
                    + (" (ramp cut short by the budget)" if f.get("partial") else ""))
    return "\n".join([*lines, "", *caps])


def finish(run: Run, args: argparse.Namespace, rc: int) -> int:
    figures = {s["step"]: headline(run.out / s["json"]) for s in run.steps if s.get("json")}
    # preflight's 3 = no GPU provider: a finding (gpu_ready false), not a failure, when the run went on anyway
    failed = [s["step"] for s in run.steps if s["rc"] != 0 and not (s["step"] == "preflight" and s["rc"] == 3)]
    gpu_ready = bool(run.steps) and run.steps[0]["rc"] == 0
    doc = {"dry_run": args.dry_run, "gpu_ready": gpu_ready, "budget_s": args.budget,
           "seconds": round(time.monotonic() - run.t0, 1), "steps": run.steps, "figures": figures, "failed": failed}
    (run.out / "summary.json").write_text(json.dumps(doc, indent=2, default=str))
    run.say("\n" + markdown(doc))
    run.say(f"\nsummary: {run.out / 'summary.json'}; {doc['seconds']} s in all; "
            + (f"steps that failed or were cut: {', '.join(failed)}" if failed else "every step finished"))
    run.log.close()
    return rc or (1 if failed else 0)


if __name__ == "__main__":
    raise SystemExit(main())
