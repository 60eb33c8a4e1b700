"""com.ggvision.Runtime from the build output: one shared venv that dependents run in, digests checked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import REPO, Runtime, wait_until

from gglocal.packaging.build import build_all

RUNTIME = "com.ggvision.Runtime"
USER = "com.ggvision.test.RuntimeUser"


@pytest.fixture(scope="module")
def build_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gb") / "greengrass-build"
    build_all(REPO, out=out)
    return out


@pytest.fixture(scope="module")
def installed(build_output: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """The suite from the build output under the local runtime, plus a dependent test component."""
    tmp = tmp_path_factory.mktemp("rt")
    rt = Runtime(tmp, [], args=["--build", str(build_output)])
    try:
        rt.launch()
        rt.wait_state(RUNTIME, "FINISHED", timeout=600)  # a real pip install of the pinned set
        rt.wait_state("com.ggvision.Suite", "FINISHED")
        user_recipes = tmp / "user"
        rt.write_component(USER, out_dir=user_recipes)
        d = rt.deploy(recipe_directory_path=str(user_recipes), artifacts_directory_path=str(rt.artifacts),
                      root_component_versions_to_add={USER: "1.0.0"})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        yield rt
    finally:
        rt.cleanup()


def test_dependent_component_runs_inside_the_runtime_venv(installed: Runtime) -> None:
    rt = installed
    probe = rt.root / "work" / USER / "probe.json"
    out = json.loads(wait_until(lambda: probe.exists() and probe.read_text(), 60, what="probe.json"))
    venv = rt.root.resolve() / "work" / RUNTIME / "venv"
    assert Path(out["prefix"]) == venv
    assert out["ggvision"].startswith(str(venv))  # the wheel from the build, not this checkout
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "components" / RUNTIME / "requirements-common.txt")
                           .read_text(), re.M))
    assert out["versions"]["numpy"] == pins["numpy"]
    assert out["versions"]["onnxruntime"] == "1.23.2" and "CPUExecutionProvider" in out["providers"]
    assert out["config"]["marker"] == "from-recipe"  # IPC works from inside the venv
    wait_until(lambda: rt.state(USER) == "FINISHED", 30, what="the probe's exit")  # it writes, then exits


def test_install_is_idempotent_and_fast(installed: Runtime) -> None:
    rt = installed
    art = rt.root / "packages" / "artifacts" / RUNTIME / "0.1.0"
    unz = rt.root / "packages" / "artifacts-unarchived" / RUNTIME / "0.1.0"
    t0 = time.monotonic()
    venv = rt.root / "work" / RUNTIME / "venv"
    r = subprocess.run([sys.executable, str(art / "install_runtime.py"), "--venv", str(venv), "--requirements-dir",
                        str(art), "--wheelhouse", str(unz / "wheelhouse"), "--accelerator", "cpu"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "up to date" in r.stdout
    assert time.monotonic() - t0 < 10
    assert rt.log(RUNTIME).count("install: starting") == 1  # once per version under the runtime


def test_tampered_artifact_is_refused(build_output: Path, tmp_path: Path) -> None:
    bad = tmp_path / "greengrass-build"
    shutil.copytree(build_output, bad)
    target = bad / "artifacts" / RUNTIME / "0.1.0" / "install_runtime.py"
    target.write_text(target.read_text() + "\n# changed after the build\n")
    rt = Runtime(tmp_path, [], args=["--build", str(bad)])
    try:
        rt.launch()
        wait_until(lambda: "digest mismatch" in rt.output(), 60, what="digest refusal")
        assert RUNTIME not in rt.states()
    finally:
        rt.cleanup()


def test_product_pins_match_the_runtime_requirements() -> None:
    """pyproject and the device venv must agree, or code tested here differs from code on devices."""
    import tomllib

    req = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "components" / RUNTIME / "requirements-common.txt")
                          .read_text(), re.M))
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name, version = dep.split("==")
        norm = {k.lower().replace("_", "-"): v for k, v in req.items()}
        assert norm.get(name.lower().replace("_", "-")) == version, f"{dep} vs requirements-common.txt"


def test_inference_runtime_pins_match_the_device_requirements() -> None:
    """The `cpu`/`gpu` extras that CI installs are the onnxruntime builds the Runtime installs on devices."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("cpu", "gpu"):
        text = (REPO / "components" / RUNTIME / f"requirements-{extra}.txt").read_text()
        pins = set(re.findall(r"^(onnxruntime[A-Za-z0-9_.-]*==\S+)", text, re.M))
        assert pins == set(extras[extra]), f"pyproject [{extra}] vs requirements-{extra}.txt"


def test_two_builds_of_the_same_tree_are_byte_identical(build_output: Path, tmp_path: Path) -> None:
    """Digests in a deployment change only when content does: every artifact of a second build (zips with
    sorted members and one timestamp, the wheel with SOURCE_DATE_EPOCH) equals the first byte for byte."""
    again = tmp_path / "greengrass-build"
    build_all(REPO, out=again)
    first = sorted(p.relative_to(build_output) for p in (build_output / "artifacts").rglob("*") if p.is_file())
    second = sorted(p.relative_to(again) for p in (again / "artifacts").rglob("*") if p.is_file())
    assert first == second
    differ = [str(p) for p in first if (build_output / p).read_bytes() != (again / p).read_bytes()]
    assert differ == []


def test_the_wheel_holds_exactly_the_tracked_modules(build_output: Path) -> None:
    """Built from the tracked sources, not the repository's setuptools build/ folder (which keeps modules that
    were deleted since, and once shipped them to devices)."""
    import zipfile

    [house] = (build_output / "artifacts" / RUNTIME).glob("*/wheelhouse.zip")
    with zipfile.ZipFile(house) as z:
        [wheel_name] = [n for n in z.namelist() if n.endswith(".whl")]
        wheel = zipfile.ZipFile(__import__("io").BytesIO(z.read(wheel_name)))
    modules = {n for n in wheel.namelist() if n.endswith(".py")}
    tracked = set(subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout.split())
    assert modules and modules <= tracked | {n for n in modules if (REPO / n).exists()}, modules - tracked
    assert "ggvision/contract/keys.py" in modules
