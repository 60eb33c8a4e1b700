"""Build a com.ggvision.Model.<Name> Greengrass component from a model directory (model.onnx + manifest.json).

The component is artifact-only: its recipe has an empty lifecycle and two artifacts, the model and its
manifest, with their SHA-256 digests; the Inference component depends on it and reads the files from
``{com.ggvision.Model.<Name>:artifacts:path}``. Everything in the recipe comes from the manifest (name,
version, description, what the model is in ComponentConfiguration), so a model never needs a hand-written
recipe. ComponentType is left out on purpose: the recipe reference advises against setting it, and a
recipe with no lifecycle steps is all an artifact-only component needs.

    python -m model_registry.component MODEL_DIR OUT_DIR [--name com.ggvision.Model.X] [--source-recipe PATH]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from gglocal.packaging.build import BUILD_URI_PREFIX, dump_recipe
from ggvision.model.manifest import MANIFEST_FILE, ModelError, load_manifest, sha256_file

COMPONENT_PREFIX = "com.ggvision.Model."
PUBLISHER = "ggvision"
RECIPE_FORMAT = "2020-01-25"
_NAME = re.compile(r"^[a-zA-Z0-9-_.]{1,128}$")


class ComponentBuildError(Exception):
    """The model directory cannot become a component; the message names the file and the problem."""


def component_name(model_name: str) -> str:
    """``synthetic-detector`` -> ``com.ggvision.Model.SyntheticDetector`` (CamelCase of the manifest name)."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", model_name) if p]
    if not parts:
        raise ComponentBuildError(f"model name {model_name!r} has no letters or digits to name a component with")
    return COMPONENT_PREFIX + "".join(p[:1].upper() + p[1:] for p in parts)


def greengrass_digest(path: Path) -> str:
    """A recipe artifact's Digest: base64 of the raw SHA-256 (what the Greengrass service records)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode("ascii")


def model_recipe(model_dir: Path, component_name_override: str | None = None) -> dict[str, Any]:
    """The recipe document for ``model_dir``; ComponentBuildError if the manifest or model file is unusable."""
    model_dir = Path(model_dir)
    try:
        manifest = load_manifest(model_dir)
    except ModelError as exc:
        raise ComponentBuildError(str(exc)) from None
    model_file = model_dir / manifest.file
    if not model_file.is_file():
        raise ComponentBuildError(f"{model_file}: the model file named by {model_dir / MANIFEST_FILE} is missing")
    actual = sha256_file(model_file)
    if actual != manifest.sha256:
        raise ComponentBuildError(f"{model_file}: sha256 {actual} does not match the manifest's {manifest.sha256} "
                                  f"({model_dir / MANIFEST_FILE})")
    name = component_name_override or component_name(manifest.name)
    if not _NAME.match(name):
        raise ComponentBuildError(f"component name {name!r}: allowed are letters, digits, - _ . (at most 128)")
    configuration: dict[str, Any] = {
        "model": {
            "name": manifest.name, "version": manifest.version, "family": manifest.family, "task": manifest.task,
            "file": manifest.file, "manifest": MANIFEST_FILE, "sha256": manifest.sha256,
            "labels": len(manifest.labels),
        },
    }
    if manifest.metrics:
        # Strings, as the developer guide recommends for numbers in configuration (they may turn into floats).
        configuration["model"]["metrics"] = {k: str(v) for k, v in manifest.metrics.items()
                                             if k in ("map50", "precision", "recall", "f1")}
    description = manifest.description or f"{manifest.family} model {manifest.name} {manifest.version}"
    artifacts = []
    for file in (manifest.file, MANIFEST_FILE):
        artifacts.append({
            "URI": f"{BUILD_URI_PREFIX}/{file}",
            "Digest": greengrass_digest(model_dir / file),
            "Algorithm": "SHA-256",
            "Unarchive": "NONE",
            "Permission": {"Read": "ALL", "Execute": "NONE"},  # read by the Inference component's user
        })
    return {
        "RecipeFormatVersion": RECIPE_FORMAT,
        "ComponentName": name,
        "ComponentVersion": manifest.version,
        "ComponentDescription": description[:1000],
        "ComponentPublisher": PUBLISHER,
        "ComponentConfiguration": {"DefaultConfiguration": configuration},
        "Manifests": [{"Lifecycle": {}, "Artifacts": artifacts}],
    }


def build_model_component(model_dir: Path, out_dir: Path, component_name: str | None = None,
                          recipe_name: str | None = None) -> dict[str, Any]:
    """Lay out ``out_dir`` as ``gdk component build`` does and return the recipe.

    ``out_dir/recipes/<recipe_name>`` (default ``<ComponentName>-<version>.yaml``) and
    ``out_dir/artifacts/<ComponentName>/<version>/{model.onnx, manifest.json}``.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    recipe = model_recipe(model_dir, component_name)
    name, version = recipe["ComponentName"], recipe["ComponentVersion"]
    artifacts = out_dir / "artifacts" / name / version
    recipes = out_dir / "recipes"
    artifacts.mkdir(parents=True, exist_ok=True)
    recipes.mkdir(parents=True, exist_ok=True)
    for art in recipe["Manifests"][0]["Artifacts"]:
        file = art["URI"].rsplit("/", 1)[-1]
        shutil.copyfile(model_dir / file, artifacts / file)
        if greengrass_digest(artifacts / file) != art["Digest"]:  # changed while we copied it
            raise ComponentBuildError(f"{model_dir / file}: changed during the build; build again")
    recipe_name = recipe_name or f"{name}-{version}.yaml"
    suffix = "json" if recipe_name.endswith(".json") else "yaml"
    (recipes / recipe_name).write_text(dump_recipe(recipe, suffix), encoding="utf-8")
    return recipe


def write_source_recipe(model_dir: Path, path: Path, component_name: str | None = None) -> dict[str, Any]:
    """The component folder's own recipe.yaml (what gdk needs to find), generated from the manifest."""
    recipe = model_recipe(model_dir, component_name)
    header = ("# Generated from manifest.json by model_registry/component.py; do not edit by hand\n"
              "# (re-made by the training scripts and checked by tests/cloud/test_demo_models.py).\n")
    Path(path).write_text(header + yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return recipe


def build_gdk_project(project_dir: Path) -> dict[str, Any]:
    """A model component folder's gdk custom build (its build_component.py calls this).

    The folder holds gdk-config.json, the model directory files and the generated recipe.yaml; the
    build refuses a gdk-config version that is not the manifest's, or a recipe.yaml that no longer
    matches what the manifest and files generate (a model re-made without regenerating it).
    """
    from gglocal.packaging.project import load_project  # the packaging layer, only needed for gdk builds

    project = load_project(project_dir)
    recipe = model_recipe(project.dir, project.name)
    if project.version != recipe["ComponentVersion"]:
        raise ComponentBuildError(f"{project.config_file}: version {project.version} is not the manifest's "
                                  f"{recipe['ComponentVersion']} ({project.dir / MANIFEST_FILE})")
    source = yaml.safe_load(project.recipe_file.read_text(encoding="utf-8"))
    if source != recipe:
        raise ComponentBuildError(f"{project.recipe_file}: out of date with {MANIFEST_FILE} and the model file; "
                                  f"regenerate it: python -m model_registry.component {project.dir} "
                                  f"{project.build_dir} --source-recipe {project.recipe_file}")
    return build_model_component(project.dir, project.build_dir, project.name, project.built_recipe_name)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build a com.ggvision.Model.<Name> component from a model directory.")
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out_dir", type=Path, help="a greengrass-build folder (recipes/ and artifacts/ are made in it)")
    ap.add_argument("--name", help="component name (default: from the manifest name)")
    ap.add_argument("--recipe-name", help="file name of the built recipe (default: <name>-<version>.yaml)")
    ap.add_argument("--source-recipe", type=Path, help="also write the generated recipe to this path")
    args = ap.parse_args(argv)
    try:
        recipe = build_model_component(args.model_dir, args.out_dir, args.name, args.recipe_name)
        if args.source_recipe:
            write_source_recipe(args.model_dir, args.source_recipe, args.name)
    except ComponentBuildError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"{recipe['ComponentName']} {recipe['ComponentVersion']} -> {args.out_dir}")


if __name__ == "__main__":
    main()
