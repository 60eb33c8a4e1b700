"""The product Capture recipe, adapted to run from the development venv under the test runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import dev_recipe, write_recipe

NAME = "com.ggvision.test.CaptureDev"


def capture_dev_recipe(out_dir: Path, cameras: dict[str, Any] | None = None, **config: Any) -> Path:
    """Same recipe and code as com.ggvision.Capture; only the name, Run (no Runtime venv) and cameras differ."""
    doc = dev_recipe("com.ggvision.Capture", NAME)
    default = doc["ComponentConfiguration"]["DefaultConfiguration"]
    if cameras is not None:
        default["cameras"] = cameras
    default.update(config)
    acl = default["accessControl"]
    acl["aws.greengrass.SecretManager"] = {"test:secrets:1": {
        "operations": ["aws.greengrass#GetSecretValue"],
        "resources": ["arn:aws:secretsmanager:us-east-1:000000000000:secret:camera-1"]}}
    return write_recipe(doc, out_dir)
