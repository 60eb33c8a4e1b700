"""The repository keeps the promises of its layout: gdk projects, the suite recipe, the two commands."""

from __future__ import annotations

import json

import jsonschema
import pytest
from harness import REPO

from gglocal.nucleus.recipeparser import load_recipe

SHARED = REPO.parent / "shared"


def test_top_level_gdk_config_is_valid_and_names_the_suite() -> None:
    schema_path = SHARED / "schemas" / "gdk-cli-v1.6.2_config_schema.json"
    if not schema_path.exists():
        pytest.skip(f"gdk schema not found at {schema_path} (../shared is absent)")
    config = json.loads((REPO / "gdk-config.json").read_text())
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    assert list(config["component"]) == ["com.ggvision.Suite"]
    # gdk looks for recipe.yaml next to gdk-config.json; it is the suite recipe, kept once in recipes/
    assert (REPO / "recipe.yaml").resolve() == (REPO / "recipes" / "com.ggvision.Suite.yaml").resolve()
    assert load_recipe(REPO / "recipe.yaml").name == "com.ggvision.Suite"


def test_readme_and_ci_use_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
    for d in ("components", "recipes", "model_registry", "rollout", "tests", "bench", "docs", "deploy"):
        assert (REPO / d).is_dir(), d


def test_each_gdk_project_version_matches_its_recipe() -> None:
    """gdk overwrites ComponentVersion with the config's version; keeping both equal avoids surprises."""
    from gglocal.packaging.project import discover_projects

    projects = discover_projects(REPO)
    assert {p.name for p in projects} >= {"com.ggvision.Suite", "com.ggvision.Runtime"}
    for p in projects:
        assert load_recipe(p.recipe_file).version == p.version, p.config_file
