"""Component dependency resolution: version selection, start order and dependents.

Like the nucleus, resolution is greedy without backtracking: each component gets the highest
available version that satisfies every requirement currently placed on it (by the deployment and
by the chosen versions of its dependents); requirements are recomputed until nothing changes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

import semantic_version

from .recipe import Recipe

ROOT = "the deployment"
_MAX_ROUNDS = 100  # choices only change when a requirement set changes; this just bounds oscillation


class DependencyError(ValueError):
    """Dependencies cannot be satisfied, or they form a cycle."""


def _spec(requirement: str, who: str, name: str) -> semantic_version.NpmSpec:
    try:
        return semantic_version.NpmSpec(requirement.strip() or "*")
    except ValueError:
        raise DependencyError(f"{who} requires {name} with an invalid version range "
                              f"{requirement!r}") from None


def _index(available: Iterable[Recipe]) -> dict[str, list[Recipe]]:
    """Component name -> its recipes, highest version first; duplicate versions are an error."""
    by_name: dict[str, dict[semantic_version.Version, Recipe]] = {}
    for recipe in available:
        versions = by_name.setdefault(recipe.name, {})
        ver = recipe.semver
        if ver in versions:
            raise DependencyError(f"{recipe.name}@{recipe.version} is available twice: "
                                  f"{versions[ver].source} and {recipe.source}")
        versions[ver] = recipe
    return {name: [v[k] for k in sorted(v, reverse=True)] for name, v in by_name.items()}


def resolve(roots: Mapping[str, str], available: Iterable[Recipe]) -> dict[str, Recipe]:
    """Choose one recipe per component reachable from ``roots`` (name -> npm-style range).

    Both HARD and SOFT dependencies must be present. Raises DependencyError naming the requirers
    and the available versions when a component is missing or no version satisfies everyone.
    """
    index = _index(available)
    chosen: dict[str, Recipe] = {}
    for _ in range(_MAX_ROUNDS):
        # Requirements implied by the current choice: (who, range) per component.
        wants: dict[str, list[tuple[str, str]]] = {}
        for name, requirement in roots.items():
            wants.setdefault(name, []).append((ROOT, requirement))
        for recipe in chosen.values():
            who = f"{recipe.name}@{recipe.version}"
            for dep_name, dep in recipe.dependencies.items():
                wants.setdefault(dep_name, []).append((who, dep.version_requirement))

        new = {name: _choose(name, reqs, index) for name, reqs in sorted(wants.items())}
        if _same(new, chosen):
            return new
        chosen = new
    raise DependencyError("dependency resolution did not settle; requirements keep changing between "
                          f"versions of: {', '.join(sorted(chosen))}")


def _same(a: Mapping[str, Recipe], b: Mapping[str, Recipe]) -> bool:
    return a.keys() == b.keys() and all(a[k].version == b[k].version for k in a)


def _describe(reqs: list[tuple[str, str]]) -> str:
    return "; ".join(f"{who} requires {req!r}" for who, req in reqs)


def _choose(name: str, reqs: list[tuple[str, str]], index: Mapping[str, list[Recipe]]) -> Recipe:
    candidates = index.get(name)
    if not candidates:
        raise DependencyError(f"component {name} is not available ({_describe(reqs)})")
    specs = [_spec(req, who, name) for who, req in reqs]
    for recipe in candidates:
        if all(recipe.semver in spec for spec in specs):
            return recipe
    versions = ", ".join(r.version for r in reversed(candidates))
    unsatisfied = [(who, req) for (who, req), spec in zip(reqs, specs, strict=True)
                   if not any(r.semver in spec for r in candidates)]
    detail = f" (nothing matches: {_describe(unsatisfied)})" if unsatisfied else " (conflicting requirements)"
    raise DependencyError(f"no version of {name} satisfies all requirements: {_describe(reqs)}; "
                          f"available versions: {versions}{detail}")


def start_order(recipes: Mapping[str, Recipe]) -> list[str]:
    """Dependencies before dependents; ties broken alphabetically. Unknown dependencies are ignored."""
    deps = {name: sorted(d for d in recipe.dependencies if d in recipes and d != name)
            for name, recipe in recipes.items()}
    for name, recipe in recipes.items():
        if name in recipe.dependencies:
            raise DependencyError(f"dependency cycle: {name} -> {name}")
    waiting = {name: len(d) for name, d in deps.items()}
    users: dict[str, list[str]] = {name: [] for name in recipes}
    for name, d in deps.items():
        for dep in d:
            users[dep].append(name)

    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for user in users[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    if len(order) < len(recipes):
        cycle = _find_cycle({n: deps[n] for n in deps if waiting[n] > 0})
        raise DependencyError(f"dependency cycle: {' -> '.join(cycle)}")
    return order


def _find_cycle(graph: Mapping[str, list[str]]) -> list[str]:
    """A cycle in a graph where every node has an edge into the graph (what Kahn's sort leaves)."""
    start = min(graph)
    path: list[str] = []
    seen: dict[str, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(d for d in graph[node] if d in graph)
    # path runs dependent -> dependency; report it that way ("A -> B" = A depends on B)
    return path[seen[node]:] + [node]


def dependents(recipes: Mapping[str, Recipe], name: str) -> dict[str, str]:
    """Components that directly depend on ``name``, with the dependency type (HARD or SOFT)."""
    return {other: recipe.dependencies[name].dependency_type
            for other, recipe in sorted(recipes.items()) if name in recipe.dependencies and other != name}
