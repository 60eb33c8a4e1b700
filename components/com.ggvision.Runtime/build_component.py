#!/usr/bin/env python3
"""gdk custom build of com.ggvision.Runtime (run by `gdk component build` here, or by `make build`).

Artifacts: the installer, the pinned requirements, and wheelhouse.zip holding the ggvision wheel.
With GGVISION_WHEELHOUSE=full the wheelhouse also carries every pinned dependency (CPU and GPU
flavours) for sites without package-registry access (set `offline: "true"` in the deployment).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from gglocal.packaging.build import build_epoch, deterministic_zip, transform_recipe  # noqa: E402
from gglocal.packaging.project import load_project  # noqa: E402

# What the wheel is built from: the tracked sources only. Building in the repository itself would reuse
# setuptools' build/ folder, which keeps modules that were deleted since (they ended up on devices).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "ggvision", "gglocal", "ggvision_cli", "topicmatch",
                 "model_registry", "rollout", "sites")


def main() -> None:
    project = load_project(HERE)
    staging = HERE / "zip-build"
    shutil.rmtree(staging, ignore_errors=True)
    wheelhouse = staging / "wheelhouse"
    wheelhouse.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    source = staging / "source"
    source.mkdir()
    for name in WHEEL_SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(src, source / name)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(build_epoch())}  # the wheel's zip timestamps
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheelhouse),
                    str(source)], check=True, env=env)
    shutil.rmtree(source)
    if os.environ.get("GGVISION_WHEELHOUSE") == "full":
        for flavour in ("cpu", "gpu"):
            subprocess.run([*pip, "download", "--quiet", "--dest", str(wheelhouse),
                            "-r", str(HERE / f"requirements-{flavour}.txt")], check=True)
    deterministic_zip(wheelhouse, staging / "wheelhouse.zip")
    shutil.rmtree(wheelhouse)
    for name in ("install_runtime.py", "requirements-common.txt", "requirements-cpu.txt", "requirements-gpu.txt"):
        shutil.copy(HERE / name, staging / name)
    transform_recipe(project, [staging], schemas=None)  # the caller validates the built recipe


if __name__ == "__main__":
    main()
