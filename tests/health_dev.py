"""The product Health recipe, adapted to run from the development venv under the test runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from harness import REPO

NAME = "com.ggvision.test.HealthDev"


def health_dev_recipe(out_dir: Path, **config: Any) -> Path:
    """Same recipe and code as com.ggvision.Health; only the name, Run (no Runtime venv), the configuration
    given and the RestartComponent resource (the configured inferenceComponent) differ."""
    doc = yaml.safe_load((REPO / "components" / "com.ggvision.Health" / "recipe.yaml").read_text())
    doc["ComponentName"] = NAME
    doc.pop("ComponentDependencies")
    default = doc["ComponentConfiguration"]["DefaultConfiguration"]
    default.update(config)
    restart = default["accessControl"]["aws.greengrass.Cli"]["com.ggvision.Health:cli:2"]
    restart["resources"] = [default["inferenceComponent"]]
    doc["Manifests"][0]["Lifecycle"]["Run"] = "python3 -u -m ggvision.health"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{NAME}.json"
    path.write_text(json.dumps(doc))
    return path
