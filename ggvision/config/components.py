"""Which model validates which component's configuration, and the JSON Schemas made from them.

`python -m ggvision.config` writes docs/config/<component>.schema.json, and site.schema.json from site.py (for
docs and editors: point a YAML or JSON language server at them); tests/product/test_config_models.py checks
they are current and that every recipe's DefaultConfiguration is valid and agrees with the model's defaults.
"""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .base import json_schema

# component name -> "module:Model" (imported on demand: each component imports only its own)
MODELS = {
    "com.ggvision.Capture": "ggvision.config.capture:CaptureConfig",
    "com.ggvision.Inference": "ggvision.config.inference:InferenceConfig",
    "com.ggvision.Filter": "ggvision.config.filter:FilterConfig",
    "com.ggvision.Uplink": "ggvision.config.uplink:UplinkConfig",
    "com.ggvision.Health": "ggvision.config.health:HealthConfig",
}


def model_of(component: str) -> type[BaseModel]:
    module, _, name = MODELS[component].partition(":")
    return getattr(import_module(module), name)


def schema_of(component: str) -> dict[str, Any]:
    schema = json_schema(model_of(component))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"{component} configuration"
    return schema


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for component in MODELS:
        path = folder / f"{component}.schema.json"
        path.write_text(json.dumps(schema_of(component), indent=2, sort_keys=True) + "\n")
        out.append(path)
    return out
