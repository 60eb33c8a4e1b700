"""The `ggvision` command refuses bad input at start with a clear message and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _nucleus(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gglocal.cli", "nucleus", "--root", str(tmp_path / "root"),
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


def test_log_and_spool_limits_are_checked_at_start(tmp_path: Path) -> None:
    r = _nucleus(tmp_path, "--log-file-size-kb", "2048", "--log-total-size-kb", "1024")
    assert r.returncode == 2
    out = r.stdout + r.stderr
    assert "--log-total-size-kb" in out and "Traceback" not in out


def _commands(app: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    import typer.main

    group = typer.main.get_command(app)  # type: ignore[arg-type]
    out: list[tuple[str, ...]] = []

    def walk(cmd: object, path: tuple[str, ...]) -> None:
        subs = getattr(cmd, "commands", None)
        if not subs:
            out.append(path)
            return
        for name, sub in subs.items():
            walk(sub, (*path, name))

    walk(group, prefix)
    return out


def test_every_command_of_every_cli_has_working_help() -> None:
    """A help text is the first thing a user runs; rich markup in it (e.g. `[/prefix]`) must not crash it."""
    from typer.testing import CliRunner

    from gglocal.cli import app as gglocal_app
    from ggvision_cli import app as ggvision_app
    from model_registry.cli import app as models_app
    from rollout.cli import app as rollout_app

    runner = CliRunner()
    for app in (ggvision_app, gglocal_app, models_app, rollout_app):
        commands = _commands(app)
        assert len(commands) >= 2
        for path in commands:
            r = runner.invoke(app, [*path, "--help"])
            assert r.exit_code == 0, f"{' '.join(path)} --help: {r.output[-300:]}"
