"""The product Filter recipe, adapted to run from the development venv under the test runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import dev_recipe, write_recipe

NAME = "com.ggvision.test.FilterDev"


def filter_dev_recipe(out_dir: Path, cameras: dict[str, Any] | None = None, **config: Any) -> Path:
    """Same recipe and code as com.ggvision.Filter; only the name, Run (no Runtime venv) and the configuration
    given differ."""
    doc = dev_recipe("com.ggvision.Filter", NAME)
    default = doc["ComponentConfiguration"]["DefaultConfiguration"]
    if cameras is not None:
        default["cameras"] = cameras
    default.update(config)
    return write_recipe(doc, out_dir)
