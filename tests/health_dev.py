"""The product Health recipe, adapted to run from the development venv under the test runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import dev_recipe, write_recipe

NAME = "com.ggvision.test.HealthDev"


def health_dev_recipe(out_dir: Path, **config: Any) -> Path:
    """Same recipe and code as com.ggvision.Health; only the name, Run (no Runtime venv), the configuration
    given and the RestartComponent resource (the configured inferenceComponent) differ."""
    doc = dev_recipe("com.ggvision.Health", NAME)
    default = doc["ComponentConfiguration"]["DefaultConfiguration"]
    default.update(config)
    restart = default["accessControl"]["aws.greengrass.Cli"]["com.ggvision.Health:cli:2"]
    restart["resources"] = [default["inferenceComponent"]]
    return write_recipe(doc, out_dir)
