#!/usr/bin/env python3
"""Install step of com.ggvision.Runtime: create or refresh the one virtualenv all components share.

Standard library only: it runs with the device's system Python before any dependency exists.
Idempotent and fast when nothing changed: a fingerprint of the Python version, the accelerator
flavour, the pinned requirements and the wheelhouse is stored in the venv after a verified
install, and a matching fingerprint skips the work. An interrupted install leaves no fingerprint,
so the next run completes it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

STAMP = ".ggvision-runtime.json"


def log(msg: str) -> None:
    print(f"[com.ggvision.Runtime] {msg}", flush=True)


def has_nvidia_gpu() -> bool:
    """True when the NVIDIA driver reports at least one GPU."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
            if out.returncode == 0 and "GPU " in out.stdout:
                return True
        except (OSError, subprocess.TimeoutExpired):
            pass
    return Path("/dev/nvidia0").exists()


def flavour(accelerator: str) -> str:
    if accelerator not in ("auto", "gpu", "cpu"):
        raise SystemExit(f"accelerator must be auto, gpu or cpu; got {accelerator!r}")
    if accelerator == "auto":
        return "gpu" if has_nvidia_gpu() else "cpu"
    return accelerator


def fingerprint(kind: str, req_dir: Path, wheelhouse: Path, python: str) -> str:
    h = hashlib.sha256()
    h.update(f"{kind}\0{python}\0".encode())
    for path in sorted(req_dir.glob("requirements-*.txt")) + sorted(wheelhouse.glob("*")):
        if path.is_file():
            h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def up_to_date(venv: Path, fp: str) -> bool:
    try:
        stamp = json.loads((venv / STAMP).read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("fingerprint") != fp:
        return False
    probe = subprocess.run([str(venv_python(venv)), "-c", "import ggvision"], capture_output=True)
    return probe.returncode == 0


def run(cmd: list[str]) -> None:
    log("$ " + " ".join(cmd))
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise SystemExit(f"command failed with exit code {result.returncode}: {' '.join(cmd)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--venv", type=Path, required=True)
    ap.add_argument("--requirements-dir", type=Path, required=True)
    ap.add_argument("--wheelhouse", type=Path, required=True)
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--offline", default="false", help="true: install only from the wheelhouse")
    ap.add_argument("--index-url", default="")
    args = ap.parse_args()

    t0 = time.monotonic()
    kind = flavour(args.accelerator)
    python = ".".join(map(str, sys.version_info[:3]))
    fp = fingerprint(kind, args.requirements_dir, args.wheelhouse, python)
    if up_to_date(args.venv, fp):
        log(f"virtualenv {args.venv} is up to date ({kind}); nothing to do")
        return 0

    wheels = sorted(args.wheelhouse.glob("ggvision-*.whl"))
    if not wheels:
        raise SystemExit(f"no ggvision wheel in the wheelhouse {args.wheelhouse}")
    if not venv_python(args.venv).exists():
        log(f"creating virtualenv {args.venv} with Python {python}")
        run([sys.executable, "-m", "venv", str(args.venv)])
    pip = [str(venv_python(args.venv)), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    source = ["--find-links", str(args.wheelhouse)]
    if args.offline.lower() == "true":
        source.append("--no-index")
    elif args.index_url:
        source += ["--index-url", args.index_url]
    other = "onnxruntime-gpu" if kind == "cpu" else "onnxruntime"
    # Switching CPU <-> GPU: both packages provide the `onnxruntime` module, so remove the other one.
    subprocess.run([str(venv_python(args.venv)), "-m", "pip", "uninstall", "--yes", "--quiet", other],
                   capture_output=True)
    run([*pip, *source, "-r", str(args.requirements_dir / f"requirements-{kind}.txt")])
    run([*pip, *source, "--no-deps", "--force-reinstall", str(wheels[-1])])
    run([str(venv_python(args.venv)), "-c",
         "import ggvision, onnxruntime, numpy, cv2, av, awsiot.greengrasscoreipc.clientv2; "
         "print('onnxruntime providers:', onnxruntime.get_available_providers())"])
    tmp = args.venv / (STAMP + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": fp, "flavour": kind, "python": python, "installed_at": time.time()}))
    os.replace(tmp, args.venv / STAMP)
    log(f"virtualenv {args.venv} ready ({kind}) in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
