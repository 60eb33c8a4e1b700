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

from gglocal.packaging.build import transform_recipe  # noqa: E402
from gglocal.packaging.project import load_project  # noqa: E402


def main() -> None:
    project = load_project(HERE)
    staging = HERE / "zip-build"
    shutil.rmtree(staging, ignore_errors=True)
    wheelhouse = staging / "wheelhouse"
    wheelhouse.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheelhouse), str(REPO)], check=True)
    if os.environ.get("GGVISION_WHEELHOUSE") == "full":
        for flavour in ("cpu", "gpu"):
            subprocess.run([*pip, "download", "--quiet", "--dest", str(wheelhouse),
                            "-r", str(HERE / f"requirements-{flavour}.txt")], check=True)
    shutil.make_archive(str(staging / "wheelhouse"), "zip", root_dir=wheelhouse)
    for name in ("install_runtime.py", "requirements-common.txt", "requirements-cpu.txt", "requirements-gpu.txt"):
        shutil.copy(HERE / name, staging / name)
    transform_recipe(project, [staging], schemas=None)  # the caller validates the built recipe


if __name__ == "__main__":
    main()
