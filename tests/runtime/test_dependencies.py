"""Dependency resolution: npm-style ranges, highest satisfying version, conflicts, order, cycles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gglocal.nucleus.dependencies import DependencyError, dependents, resolve, start_order
from gglocal.nucleus.recipe import Recipe
from gglocal.nucleus.recipeparser import load_recipe_dir, parse_recipe


def make(name: str, version: str, deps: dict[str, str | tuple[str, str]] | None = None) -> Recipe:
    component_deps = {}
    for dep, spec in (deps or {}).items():
        req, kind = (spec, "HARD") if isinstance(spec, str) else spec
        component_deps[dep] = {"VersionRequirement": req, "DependencyType": kind}
    return parse_recipe({
        "RecipeFormatVersion": "2020-01-25", "ComponentName": name, "ComponentVersion": version,
        "ComponentDependencies": component_deps, "Manifests": [{"Lifecycle": {"Run": "true"}}],
    }, f"{name}-{version}.json")


def versions(result: dict[str, Recipe]) -> dict[str, str]:
    return {name: recipe.version for name, recipe in result.items()}


LIB = [make("Lib", v) for v in ("0.9.0", "1.0.0", "1.1.0", "1.4.2", "2.0.0", "2.1.0", "3.0.0-beta.1")]


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        ("^1.1.0", "1.4.2"),
        ("~1.1.0", "1.1.0"),
        (">=2.0.0 <3.0.0", "2.1.0"),
        ("1.0.0", "1.0.0"),
        ("*", "2.1.0"),  # pre-releases are not picked by a plain range
        (">=0.0.0", "2.1.0"),
        ("<1.0.0", "0.9.0"),
        ("1.x", "1.4.2"),
    ],
)
def test_highest_satisfying_version_chosen(requirement: str, expected: str) -> None:
    assert versions(resolve({"Lib": requirement}, LIB)) == {"Lib": expected}


def test_transitive_requirements_combine() -> None:
    app = make("App", "1.0.0", {"Lib": "^1.0.0", "Mid": "^1.0.0"})
    mid = make("Mid", "1.2.0", {"Lib": "<1.2.0"})
    result = resolve({"App": "1.0.0"}, [app, mid, *LIB])
    assert versions(result) == {"App": "1.0.0", "Mid": "1.2.0", "Lib": "1.1.0"}


def test_soft_dependencies_are_resolved_too() -> None:
    app = make("App", "1.0.0", {"Lib": ("^2.0.0", "SOFT")})
    assert versions(resolve({"App": "*"}, [app, *LIB]))["Lib"] == "2.1.0"


def test_root_and_dependent_requirements_both_apply() -> None:
    app = make("App", "1.0.0", {"Lib": ">=1.0.0"})
    assert versions(resolve({"App": "*", "Lib": "<2.0.0"}, [app, *LIB]))["Lib"] == "1.4.2"


def test_conflict_names_requirers_and_available_versions() -> None:
    app = make("App", "1.0.0", {"Lib": "^1.0.0"})
    with pytest.raises(DependencyError) as info:
        resolve({"App": "1.0.0", "Lib": "^2.0.0"}, [app, *LIB])
    msg = str(info.value)
    assert "Lib" in msg and "App@1.0.0 requires '^1.0.0'" in msg and "the deployment requires '^2.0.0'" in msg
    assert "0.9.0, 1.0.0, 1.1.0, 1.4.2, 2.0.0, 2.1.0" in msg


def test_unsatisfiable_single_requirement() -> None:
    with pytest.raises(DependencyError, match=r"no version of Lib.*\^4\.0\.0.*nothing matches"):
        resolve({"Lib": "^4.0.0"}, LIB)


def test_missing_component() -> None:
    app = make("App", "1.0.0", {"Ghost": "^1.0.0"})
    with pytest.raises(DependencyError, match=r"Ghost is not available \(App@1\.0\.0 requires '\^1\.0\.0'\)"):
        resolve({"App": "*"}, [app])


def test_missing_root_component() -> None:
    with pytest.raises(DependencyError, match="Nope is not available"):
        resolve({"Nope": "1.0.0"}, LIB)


def test_dependency_of_a_version_not_chosen_is_not_required() -> None:
    old = make("App", "1.0.0", {"Ghost": "*"})
    new = make("App", "2.0.0", {"Lib": "^1.0.0"})
    assert versions(resolve({"App": "*"}, [old, new, *LIB])) == {"App": "2.0.0", "Lib": "1.4.2"}


def test_requirements_change_when_a_dependent_version_changes() -> None:
    # First round picks Mid 2.0.0 (needs Lib ^2); App restricts Mid to 1.x, whose Lib need is ^1.
    app = make("App", "1.0.0", {"Mid": "^1.0.0"})
    mid1 = make("Mid", "1.0.0", {"Lib": "^1.0.0"})
    mid2 = make("Mid", "2.0.0", {"Lib": "^2.0.0"})
    result = resolve({"App": "*", "Mid": "*"}, [app, mid1, mid2, *LIB])
    assert versions(result) == {"App": "1.0.0", "Mid": "1.0.0", "Lib": "1.4.2"}


def test_duplicate_available_versions_rejected() -> None:
    with pytest.raises(DependencyError, match="available twice"):
        resolve({"Lib": "*"}, [make("Lib", "1.0.0"), make("Lib", "1.0.0")])


def test_invalid_root_range() -> None:
    with pytest.raises(DependencyError, match="invalid version range"):
        resolve({"Lib": "one point oh"}, LIB)


def test_resolve_from_recipe_files(tmp_path: Path) -> None:
    for name, version, deps in [("A", "1.0.0", {"B": {"VersionRequirement": "^1.0.0"}}),
                                ("B", "1.5.0", {}), ("B", "2.0.0", {})]:
        (tmp_path / f"{name}-{version}.json").write_text(json.dumps({
            "RecipeFormatVersion": "2020-01-25", "ComponentName": name, "ComponentVersion": version,
            "ComponentDependencies": deps, "Manifests": [],
        }))
    assert versions(resolve({"A": "*"}, load_recipe_dir(tmp_path))) == {"A": "1.0.0", "B": "1.5.0"}


# --------------------------------------------------------------------------- start order


def graph(edges: dict[str, list[str]]) -> dict[str, Recipe]:
    return {name: make(name, "1.0.0", {d: "*" for d in deps}) for name, deps in edges.items()}


def test_start_order_dependencies_first_and_alphabetical_ties() -> None:
    recipes = graph({"App": ["Lib", "Cfg"], "Lib": ["Base"], "Cfg": [], "Base": [], "Zed": [],
                     "Aux": ["Base"]})
    order = start_order(recipes)
    assert order == ["Base", "Aux", "Cfg", "Lib", "App", "Zed"]
    for name, recipe in recipes.items():
        for dep in recipe.dependencies:
            assert order.index(dep) < order.index(name)


def test_start_order_is_deterministic() -> None:
    edges = {"d": ["a"], "c": ["a"], "b": ["a"], "a": []}
    backwards = dict(reversed(list(edges.items())))
    assert start_order(graph(edges)) == start_order(graph(backwards)) == ["a", "b", "c", "d"]


def test_start_order_ignores_dependencies_outside_the_set() -> None:
    assert start_order(graph({"App": ["Elsewhere"]})) == ["App"]


def test_cycle_is_named() -> None:
    with pytest.raises(DependencyError) as info:
        start_order(graph({"A": ["B"], "B": ["C"], "C": ["A"], "D": []}))
    assert "dependency cycle: A -> B -> C -> A" in str(info.value)


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(DependencyError, match="A -> A"):
        start_order(graph({"A": ["A"]}))


def test_dependents_with_types() -> None:
    recipes = {
        "Lib": make("Lib", "1.0.0"),
        "App": make("App", "1.0.0", {"Lib": "*"}),
        "Tool": make("Tool", "1.0.0", {"Lib": ("*", "SOFT")}),
        "Other": make("Other", "1.0.0", {"App": "*"}),
    }
    assert dependents(recipes, "Lib") == {"App": "HARD", "Tool": "SOFT"}
    assert dependents(recipes, "App") == {"Other": "HARD"}
    assert dependents(recipes, "Other") == {}
