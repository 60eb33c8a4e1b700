"""Every recipe in the repository validates against the official recipe JSON schemas.

Validation follows GDK (``gdk/common/RecipeValidator.py``): read the file with ``json.loads`` or
``yaml.safe_load``, lower-case every key recursively, validate with Draft-07. Both copies of the
schema are checked: GDK's (case-insensitive enum patterns) and aws-greengrass-component-common's
(strict upper-case enums). See shared/schemas/SOURCES.md.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gglocal.nucleus.recipeparser import parse_recipe
from gglocal.packaging.build import lower_keys

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SCHEMA_FILES = ("gdk-cli-v1.6.2_recipe_schema.json", "greengrass-component-common_recipe_schema.json")
RECIPE_GLOBS = (
    "recipes/**/recipe*.json", "recipes/**/recipe*.yaml", "recipes/**/recipe*.yml",
    "recipes/*.json", "recipes/*.yaml",
    "components/**/recipe.json", "components/**/recipe.yaml",
    "tests/components/**/recipe.json", "tests/components/**/recipe.yaml",
    "tests/components/recipes/*.yaml", "tests/components/recipes/*.json",
    "bench/components/**/*.yaml", "bench/components/**/*.json",
)


BUILD_OUTPUTS = {"greengrass-build", "zip-build"}  # built copies (git-ignored): checked by test_packaging instead


def repo_recipe_files() -> list[Path]:
    """The source recipes; the same set on a fresh clone and after a build."""
    found = {p for pattern in RECIPE_GLOBS for p in REPO.glob(pattern)
             if p.is_file() and not BUILD_OUTPUTS & set(p.relative_to(REPO).parts)}
    return sorted(found)


RECIPE_FILES = repo_recipe_files()
Validators = dict[str, jsonschema.Draft7Validator]
# An explicit skip (rather than pytest's "empty parameter set") when the repo has no recipes yet.
RECIPE_PARAMS = [pytest.param(p, id=str(p.relative_to(REPO))) for p in RECIPE_FILES] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no recipe files in the repository yet"))
]


@pytest.fixture(scope="module")
def validators() -> Validators:
    folder = SHARED / "schemas"
    missing = [name for name in SCHEMA_FILES if not (folder / name).is_file()]
    if missing:
        pytest.skip(f"recipe schemas not available: {', '.join(str(folder / m) for m in missing)} "
                    "(the shared/ folder beside the repository is not checked in)")
    out = {}
    for name in SCHEMA_FILES:
        schema = json.loads((folder / name).read_text(encoding="utf-8"))
        jsonschema.Draft7Validator.check_schema(schema)
        out[name] = jsonschema.Draft7Validator(schema)
    return out


def read_like_gdk(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def apply_gdk_config(recipe: dict[str, Any], recipe_path: Path) -> dict[str, Any]:
    """``gdk component build`` overwrites name, version and publisher from a sibling gdk-config.json."""
    config_path = recipe_path.parent / "gdk-config.json"
    if not config_path.is_file():
        return recipe
    components = json.loads(config_path.read_text(encoding="utf-8")).get("component") or {}
    if len(components) != 1:
        return recipe
    (name, settings), = components.items()
    out = {k: v for k, v in recipe.items()
           if k.lower() not in ("componentname", "componentversion", "componentpublisher")}
    out.update({"ComponentName": name, "ComponentVersion": settings.get("version"),
                "ComponentPublisher": settings.get("author")})
    return out


def schema_errors(validator: jsonschema.Draft7Validator, recipe: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(recipe), key=lambda e: list(map(str, e.absolute_path)))]


# --------------------------------------------------------------------------- repository recipes


@pytest.mark.parametrize("path", RECIPE_PARAMS)
def test_repo_recipe_matches_schemas(path: Path, validators: Validators) -> None:
    recipe = apply_gdk_config(read_like_gdk(path), path)
    lowered = lower_keys(recipe)
    problems = {name: schema_errors(v, lowered) for name, v in validators.items()}
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, f"{path.relative_to(REPO)} fails schema validation: {json.dumps(problems, indent=1)}"


@pytest.mark.parametrize("path", RECIPE_PARAMS)
def test_repo_recipe_loads_in_local_nucleus(path: Path) -> None:
    recipe = apply_gdk_config(read_like_gdk(path), path)
    version = str(recipe.get("ComponentVersion", ""))
    if version == "NEXT_PATCH":  # resolved by gdk at publish time; any valid version will do here
        recipe = {**recipe, "ComponentVersion": "0.0.1"}
    parse_recipe(recipe, str(path.relative_to(REPO)))


def test_recipe_discovery_is_consistent() -> None:
    # Guards the globs themselves: every listed file is a recipe-looking document.
    for path in RECIPE_FILES:
        data = read_like_gdk(path)
        assert isinstance(data, dict), f"{path} is not a JSON/YAML object"
        assert "recipeformatversion" in lower_keys(data), f"{path} has no RecipeFormatVersion"


# --------------------------------------------------------------------------- inline fixtures
# These always run, so the schema check means something even before the repo has recipes.

GOOD_RECIPE: dict[str, Any] = {
    "RecipeFormatVersion": "2020-01-25",
    "ComponentName": "com.ggvision.SchemaProbe",
    "ComponentVersion": "1.0.0",
    "ComponentDescription": "fixture",
    "ComponentPublisher": "ggvision",
    "ComponentConfiguration": {"DefaultConfiguration": {"Interval": "5", "accessControl": {}}},
    "ComponentDependencies": {
        "com.ggvision.Runtime": {"VersionRequirement": "^1.0.0", "DependencyType": "HARD"},
    },
    "Manifests": [{
        "Platform": {"os": "linux", "architecture": "/amd64|aarch64/"},
        "Lifecycle": {
            "Setenv": {"PYTHONUNBUFFERED": "1"},
            "Install": {"Script": "python3 -m venv {work:path}/venv", "Timeout": 300,
                        "RequiresPrivilege": False},
            "Run": {"Script": "python3 {artifacts:decompressedPath}/probe/main.py",
                    "Skipif": "exists /tmp/x"},
        },
        "Artifacts": [{"URI": "s3://bucket/probe.zip", "Unarchive": "ZIP",
                       "Permission": {"Read": "OWNER", "Execute": "NONE"}}],
    }],
}


def test_inline_good_recipe_validates_after_lowercasing(validators: Validators) -> None:
    for name, validator in validators.items():
        assert schema_errors(validator, lower_keys(GOOD_RECIPE)) == [], name
    parse_recipe(GOOD_RECIPE)  # and the local nucleus accepts it


def test_inline_recipe_needs_lowercasing(validators: Validators) -> None:
    for name, validator in validators.items():
        errors = schema_errors(validator, GOOD_RECIPE)
        assert any("'recipeformatversion' is a required property" in e for e in errors), name


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.update(Bogus=1), "Additional properties are not allowed"),
        (lambda r: r.pop("Manifests"), "'manifests' is a required property"),
        (lambda r: r.update(RecipeFormatVersion="2021-01-01"), "is not one of"),
        (lambda r: r.update(ComponentName="bad name"), "does not match"),
    ],
)
def test_inline_bad_recipe_fails_both(validators: Validators, mutate: Any,
                                      expected: str) -> None:
    recipe = copy.deepcopy(GOOD_RECIPE)
    mutate(recipe)
    for name, validator in validators.items():
        errors = schema_errors(validator, lower_keys(recipe))
        assert any(expected in e for e in errors), f"{name}: {errors}"


def test_lowercase_enum_value_differs_between_schemas(validators: Validators) -> None:
    recipe = copy.deepcopy(GOOD_RECIPE)
    recipe["Manifests"][0]["Artifacts"][0]["Unarchive"] = "zip"
    gdk, common = (validators[name] for name in SCHEMA_FILES)
    assert schema_errors(gdk, lower_keys(recipe)) == []
    assert schema_errors(common, lower_keys(recipe)) != []
    assert parse_recipe(recipe).manifests[0].artifacts[0].unarchive == "ZIP"  # the nucleus accepts it


def test_unquoted_yaml_format_version_fails_gdk_style_loading(
    validators: Validators, tmp_path: Path
) -> None:
    # yaml.safe_load turns an unquoted 2020-01-25 into a date, which the schema rejects;
    # recipes in this repo must quote it. The local nucleus itself accepts both.
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(GOOD_RECIPE, sort_keys=False).replace("'2020-01-25'", "2020-01-25"))
    assert "RecipeFormatVersion: 2020-01-25\n" in path.read_text()
    for validator in validators.values():
        assert schema_errors(validator, lower_keys(read_like_gdk(path))) != []
    quoted = tmp_path / "quoted.yaml"
    quoted.write_text(yaml.safe_dump(GOOD_RECIPE, sort_keys=False))
    for validator in validators.values():
        assert schema_errors(validator, lower_keys(read_like_gdk(quoted))) == []
