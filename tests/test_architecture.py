"""The house's import rule holds (pyproject.toml [tool.importlinter], docs/architecture.md): the product and the
local runtime apart, components independent, layers, no circles — and the check would catch a break."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import REPO

PACKAGES = (
    "ggvision", "gglocal", "ggvision_cli", "topicmatch", "model_registry", "rollout", "deploy", "sites", "cloud",
    "dashboard",
)
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("house")
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_tree_keeps_every_import_contract() -> None:
    r = _lint(REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


@pytest.mark.parametrize(
    ("file", "line", "broken"),
    [
        # the product reaching into the local runtime
        ("ggvision/capture/component.py", "import gglocal.nucleus.kernel", "product-apart"),
        # the runtime reaching into a component (it may read only the contract)
        ("gglocal/nucleus/dashboard.py", "import ggvision.uplink.queue", "runtime-apart"),
        # one component importing another
        ("ggvision/filter/events.py", "import ggvision.inference.worker", "components-independent"),
        # a library importing a component
        ("ggvision/framebus/ring.py", "import ggvision.capture.worker", "product-layers"),
        # a cloud-side tool importing component internals
        ("rollout/engine.py", "import ggvision.health.exporter", "tools-use-the-contract"),
        # the dashboard reaching into the local runtime (it reads the contract, the rings, the rollout engine)
        ("dashboard/data/edge.py", "import gglocal.nucleus.kernel", "dashboard-reads"),
        # the IPC layer importing the nucleus again (the circle ipc/host.py broke)
        ("gglocal/ipc/operations.py", "import gglocal.nucleus.kernel", "no-circles"),
    ],
)
def test_a_forbidden_import_is_caught(copy: Path, file: str, line: str, broken: str) -> None:
    target = copy / file
    original = target.read_text()
    target.write_text(original + f"\n{line}  # injected by the test\n")
    try:
        r = _lint(copy)
    finally:
        target.write_text(original)
    assert r.returncode != 0, r.stdout[-2000:]
    name = {c["id"]: c["name"] for c in _contracts()}[broken]
    flat = " ".join(r.stdout.split())
    assert f"{name} BROKEN" in flat, flat[-3000:]


def _contracts() -> list[dict[str, str]]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
