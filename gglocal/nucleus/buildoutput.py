"""Run a build output (`make build` or `gdk component build`) the way a core device would.

A device gets each recipe from the cloud and downloads its `s3://<bucket>/<name>/<version>/<file>`
artifacts. Here an s3:// URI maps to `<build>/artifacts/<name>/<version>/<file>`, and the
SHA-256 digest the build recorded for every artifact (`<build>/digests.json`) is written into the
recipe's Digest field, as the Greengrass service does when it stores a component version, so the
runtime verifies each file before use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .recipeparser import parse_recipe
from .recipereader import RecipeError, parse_document

DIGESTS = "digests.json"


def _ci(d: dict[str, Any], key: str) -> str | None:
    return next((k for k in d if k.lower() == key), None)


def prepare_build_output(build: Path, root: Path) -> tuple[Path, Path]:
    """Return (recipes dir, artifacts dir) for the runtime; ValueError with a reason on bad input."""
    recipes_in, artifacts = build / "recipes", build / "artifacts"
    if not recipes_in.is_dir() or not artifacts.is_dir():
        raise ValueError(f"{build} is not a build output (needs recipes/ and artifacts/; run `make build`)")
    digests_path = build / DIGESTS
    digests: dict[str, str] = json.loads(digests_path.read_text()) if digests_path.exists() else {}
    out = root / "build-recipes"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    seen: set[tuple[str, str]] = set()
    for path in sorted(recipes_in.iterdir()):
        if path.suffix.lower() not in (".json", ".yaml", ".yml"):
            continue
        try:
            doc = parse_document(path.read_text(), str(path))
            if isinstance(doc, dict) and doc.get(_ci(doc, "componentversion") or "") == "NEXT_PATCH":
                raise ValueError(f"{path}: version NEXT_PATCH is resolved only by publish; "
                                 "give the component an explicit version to run it locally")
            recipe = parse_recipe(doc, str(path))
        except RecipeError as e:
            raise ValueError(str(e)) from None
        if (recipe.name, recipe.version) in seen:
            continue  # recipes/recipe.yaml repeats the suite recipe for gdk
        seen.add((recipe.name, recipe.version))
        for manifest in doc.get(_ci(doc, "manifests") or "", []) or []:
            for art in manifest.get(_ci(manifest, "artifacts") or "", []) or []:
                uri_key = _ci(art, "uri")
                uri = str(art.get(uri_key, "")) if uri_key else ""
                if not uri.lower().startswith("s3://"):
                    continue
                fname = uri.rsplit("/", 1)[-1]
                key = f"{recipe.name}/{recipe.version}/{fname}"
                if not (artifacts / key).is_file():
                    raise ValueError(f"{path}: artifact {uri} not found in the build output ({artifacts / key})")
                if key in digests and _ci(art, "digest") is None:
                    art["Digest"], art["Algorithm"] = digests[key], "SHA-256"
        (out / f"{recipe.name}-{recipe.version}.json").write_text(json.dumps(doc))
    return out, artifacts
