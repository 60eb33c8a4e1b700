"""The runtime's component store: every recipe version it has been given, kept under packages/recipes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .recipe import Recipe
from .recipeparser import load_recipe, parse_recipe
from .recipereader import RecipeError


class RecipeStore:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._recipes: dict[tuple[str, str], Recipe] = {}
        for path in sorted(self.dir.glob("*.json")):
            try:
                r = load_recipe(path)
            except RecipeError:
                continue  # a corrupt stored copy is ignored; the next deployment brings it back
            self._recipes[(r.name, r.version)] = r

    def add(self, recipe: Recipe, body: str) -> Recipe:
        """Store a recipe as a JSON document."""
        path = self.dir / f"{recipe.name}-{recipe.version}.json"
        stored = parse_recipe(body, source=str(path))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(body)
        os.replace(tmp, path)
        self._recipes[(recipe.name, recipe.version)] = stored
        return stored

    def import_dir(self, directory: Path) -> list[Recipe]:
        """Parse every recipe in `directory` first (all or nothing), then store them."""
        found: list[tuple[Recipe, str]] = []
        files = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in (".json", ".yaml", ".yml"))
        for path in files:
            text = path.read_text()
            found.append((load_recipe(path), text))
        out = []
        for recipe, text in found:
            out.append(self.add_text(recipe, text))
        return out

    def add_text(self, recipe: Recipe, text: str) -> Recipe:
        from .recipereader import parse_document

        return self.add(recipe, json.dumps(parse_document(text), default=str))

    def all(self) -> list[Recipe]:
        return list(self._recipes.values())

    def get(self, name: str, version: str) -> Recipe | None:
        return self._recipes.get((name, version))

    def versions(self, name: str) -> list[str]:
        return [v for (n, v) in self._recipes if n == name]

