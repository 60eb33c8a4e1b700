#!/usr/bin/env python3
"""gdk custom build of com.ggvision.Model.SyntheticDetector (run by `gdk component build` here, or by `make build`).

Artifact-only: model.onnx + manifest.json, with the recipe generated from the manifest by
model_registry/component.py (see that module and docs/models-demo.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from model_registry.component import ComponentBuildError, build_gdk_project  # noqa: E402

if __name__ == "__main__":
    try:
        build_gdk_project(HERE)
    except ComponentBuildError as exc:
        raise SystemExit(f"error: {exc}") from None
