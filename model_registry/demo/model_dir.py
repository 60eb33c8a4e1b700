"""Write a demo model directory (model.onnx + manifest.json) and, in a component folder, its recipe.

The files are written by the runtime library's write_model_dir, so the manifest is validated by the
same code that loads it and its sha256 is the file's.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from ggvision.model.manifest import write_model_dir as library_write
from model_registry.component import write_source_recipe


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def write_model_dir(out_dir: Path, onnx_bytes: bytes, manifest: dict[str, Any]) -> Path:
    out_dir = Path(out_dir)
    library_write(out_dir, onnx_bytes, manifest)
    config = out_dir / "gdk-config.json"
    if config.is_file():  # a component folder: its recipe.yaml is generated from the new manifest
        (name,) = json.loads(config.read_text(encoding="utf-8"))["component"]
        write_source_recipe(out_dir, out_dir / "recipe.yaml", name)
        print(f"regenerated {out_dir / 'recipe.yaml'}")
    return out_dir
