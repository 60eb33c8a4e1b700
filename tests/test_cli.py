"""The `ggvision` command refuses bad input at start with a clear message and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _nucleus(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ggvision.cli", "nucleus", "--root", str(tmp_path / "root"),
                           "--no-iot", "--no-dashboard", *args], capture_output=True, text=True, timeout=60)


def test_bad_recipe_at_start_names_file_and_key(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "cam.yaml").write_text(
        "RecipeFormatVersion: '2020-01-25'\nComponentName: a.B\nComponentVersion: 1.0.0\n"
        "Manifests:\n  - Lifecycle:\n      Run:\n        Script: echo\n        Timeout: soon\n")
    r = _nucleus(tmp_path, "--recipes", str(recipes))
    assert r.returncode == 2
    out = r.stdout + r.stderr
    assert "cam.yaml" in out and "Timeout" in out and "Traceback" not in out


def test_malformed_secrets_file_is_refused_without_leaking_values(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text('{"secrets": [{"name": "cam", "secretString": "hunter2", "secretBinary": "aGk="}]}')
    r = _nucleus(tmp_path, "--secrets", str(secrets))
    assert r.returncode == 2
    out = r.stdout + r.stderr
    assert "secrets[0]" in out and "hunter2" not in out and "Traceback" not in out
