"""The product Filter recipe, adapted to run from the development venv under the test runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from harness import REPO

NAME = "com.ggvision.test.FilterDev"


def filter_dev_recipe(out_dir: Path, cameras: dict[str, Any] | None = None, **config: Any) -> Path:
    """Same recipe and code as com.ggvision.Filter; only the name, Run (no Runtime venv) and the configuration
    given differ."""
    doc = yaml.safe_load((REPO / "components" / "com.ggvision.Filter" / "recipe.yaml").read_text())
    doc["ComponentName"] = NAME
    doc.pop("ComponentDependencies")
    default = doc["ComponentConfiguration"]["DefaultConfiguration"]
    if cameras is not None:
        default["cameras"] = cameras
    default.update(config)
    doc["Manifests"][0]["Lifecycle"]["Run"] = "python3 -u -m ggvision.filter"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{NAME}.json"
    path.write_text(json.dumps(doc))
    return path
