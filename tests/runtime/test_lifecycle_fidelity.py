"""Lifecycle fidelity against the nucleus' source: Skipif forms, artifact modes under the runtime, Bootstrap.

Sources (aws-greengrass/aws-greengrass-nucleus, read at a28341c41; developer guide = awsdocs
aws-iot-greengrass-v2-developer-guide doc_source/component-recipe-reference.md @42e810c):
- Skipif: lifecyclemanager/GenericExternalService.shouldSkip and SKIP_COMMAND_REGEX, util/platforms/unix/
  UnixExec.which, util/Exec.addPathEntries/deTilde, lifecyclemanager/KernelCommandLine.deTilde.
- Permission: componentmanager/models/Permission.toFileSystemPermission, util/Permissions.setArtifactPermission.
- Bootstrap: deployment/bootstrap/BootstrapManager and BootstrapSuccessCode, deployment/activator/
  KernelUpdateActivator, GenericExternalService.bootstrap/isBootstrapRequired, lifecyclemanager/Kernel.launch,
  KernelAlternatives.prepareBootstrapOnRollbackIfNeeded; developer guide "Bootstrap".
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest
from harness import Runtime, wait_until, write_recipe

from gglocal.nucleus.lifecyclesteps import SkipifError, nucleus_path_dirs, should_skip

BOOT, LIB = "com.ggvision.test.Boot", "com.ggvision.test.BootLib"


# --------------------------------------------------------------------------- Skipif, evaluated


@pytest.fixture
def tool(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "ggv-tool"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_skipif_forms_the_nucleus_accepts(tmp_path: Path, tool: Path) -> None:
    """SKIP_COMMAND_REGEX ``(exists|onpath) +(.+)`` on the trimmed expression, with a leading ``!`` negating it
    (GenericExternalService.shouldSkip): spaces around and between are fine, the argument may hold spaces."""
    path = f"/nonexistent:{tool.parent}"
    spaced = tmp_path / "with space.txt"
    spaced.write_text("x")
    assert should_skip("onpath ggv-tool", root=tmp_path, path_env=path)
    assert should_skip("  onpath    ggv-tool \t", root=tmp_path, path_env=path)
    assert not should_skip("onpath ggv-tool", root=tmp_path, path_env="/nonexistent")
    assert should_skip(f"exists {tool}", root=tmp_path)
    assert should_skip(f"exists {spaced}", root=tmp_path)
    assert not should_skip(f"exists {tmp_path / 'nope'}", root=tmp_path)
    assert should_skip(f"!exists {tmp_path / 'nope'}", root=tmp_path)  # negation
    assert not should_skip("! onpath ggv-tool", root=tmp_path, path_env=path)
    assert not should_skip(None, root=tmp_path)


@pytest.mark.parametrize("expr", ["Onpath sh", "EXISTS /", "onpath\tsh", "whenever x", "exists", "exists ", "",
                                  "!", "!!exists /", "exists/"])
def test_skipif_other_forms_fail_the_step(tmp_path: Path, expr: str) -> None:
    """Operators are matched case-sensitively, need spaces (not tabs) before an argument, and anything that does
    not match is an InputValidationException ("Invalid format for skipif") that fails the step: no guessing."""
    with pytest.raises(SkipifError, match="onpath <executable>"):
        should_skip(expr, root=tmp_path)


def test_onpath_searches_the_runtime_path_like_unixexec_which(tmp_path: Path, tool: Path) -> None:
    """UnixExec.which: an absolute name must be executable itself; otherwise the nucleus' own PATH is searched,
    split on ':' or ',' (Exec.addPathEntries), ~/ expanded, then /bin, /usr/bin, /sbin, /usr/sbin added."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    plain.chmod(0o644)
    assert should_skip(f"onpath {tool}", root=tmp_path, path_env="")
    assert not should_skip(f"onpath {plain}", root=tmp_path, path_env="")
    assert should_skip("onpath ggv-tool", root=tmp_path, path_env=f"/nonexistent, {tool.parent}")
    assert should_skip("onpath sh", root=tmp_path, path_env="")  # /bin or /usr/bin are always searched
    home = Path.home()
    assert nucleus_path_dirs("~/bin:/x,/y, /z:/x")[:4] == [str(home / "bin"), "/x", "/y", "/z"]


def test_exists_expands_the_nucleus_tildes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KernelCommandLine.deTilde: ~/ home, ~root/ the root, ~config/ and ~packages/ under it; a relative path is
    the JVM's, i.e. relative to the runtime's working directory (Files.exists(Paths.get(...)))."""
    root = tmp_path / "root"
    (root / "config").mkdir(parents=True)
    (root / "packages").mkdir()
    (root / "config" / "c.json").write_text("{}")
    (root / "packages" / "p").write_text("")
    assert should_skip("exists ~root/config", root=root)
    assert should_skip("exists ~config/c.json", root=root)
    assert should_skip("exists ~packages/p", root=root)
    assert not should_skip("exists ~packages/c.json", root=root)
    assert should_skip("exists ~/", root=root)
    monkeypatch.chdir(root)
    assert should_skip("exists config/c.json", root=tmp_path)


# --------------------------------------------------------------------------- the runtime: Skipif, Permission


def _recipe(name: str, version: str, lifecycle: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"RecipeFormatVersion": "2020-01-25", "ComponentName": name, "ComponentVersion": version,
            "Manifests": [{"Lifecycle": lifecycle, "Artifacts": extra.pop("artifacts", [])}], **extra}


def test_runtime_skipif_negation_path_and_invalid_form(tmp_path: Path, tool: Path) -> None:
    """Under `ggvision nucleus`: ``!exists`` skips when the file is absent, Skipif is interpolated first (the
    nucleus interpolates the whole lifecycle), ``onpath`` ignores the step's Setenv PATH (UnixExec.which uses
    the nucleus' PATH), and a Skipif of another form fails the step each time until the component is BROKEN
    (GenericExternalService.install: RunStatus.Errored -> serviceErrored; three errors -> BROKEN)."""
    rt = Runtime(tmp_path, [])
    write_recipe(_recipe("com.ggvision.test.SkipNeg", "1.0.0", {
        "Install": {"Script": "echo install-ran", "Skipif": "!exists {work:path}/never-there"},
        "Run": {"Script": "echo run-not-skipped", "Skipif": "onpath ggv-tool",
                "Setenv": {"PATH": str(tool.parent)}}}), rt.recipes)
    write_recipe(_recipe("com.ggvision.test.BadSkip", "1.0.0", {
        "Install": {"Script": "echo never", "Skipif": "Onpath sh"}, "Run": "echo never-either"}), rt.recipes)
    try:
        rt.launch()
        rt.wait_state("com.ggvision.test.SkipNeg", "FINISHED")
        rt.wait_state("com.ggvision.test.BadSkip", "BROKEN", 60)
        neg = rt.log("com.ggvision.test.SkipNeg")
        never = rt.root.resolve() / "work" / "com.ggvision.test.SkipNeg" / "never-there"
        assert f"install: skipped (!exists {never})" in neg and "install-ran" not in neg
        assert "run-not-skipped" in neg
        bad = rt.log("com.ggvision.test.BadSkip")
        assert bad.count("[nucleus] install: invalid Skipif 'Onpath sh'") == 3  # each attempt, then BROKEN
        assert "[stdout]" not in bad  # neither Install nor Run ever ran
    finally:
        rt.cleanup()


def test_runtime_installs_artifacts_with_the_nucleus_modes(tmp_path: Path) -> None:
    """A deployment through the runtime applies Permission.toFileSystemPermission (+ owner write when not root,
    Permissions.setArtifactPermission) to files and unpacked ZIP members; unpacked folders are 0755."""
    rt = Runtime(tmp_path, [])
    name = "com.ggvision.test.Perms"
    art = rt.artifacts / name / "1.0.0"
    art.mkdir(parents=True)
    for f in ("default.txt", "owner-exec.sh", "all-read.txt"):
        (art / f).write_text(f)
    with zipfile.ZipFile(art / "tree.zip", "w") as z:
        z.writestr("bin/tool", "#!/bin/sh\n")
    write_recipe(_recipe(name, "1.0.0", {"Run": "echo done"}, artifacts=[
        {"URI": "s3://b/default.txt"},
        {"URI": "s3://b/owner-exec.sh", "Permission": {"Execute": "OWNER"}},
        {"URI": "s3://b/all-read.txt", "Permission": {"Read": "ALL"}},
        {"URI": "s3://b/tree.zip", "Unarchive": "ZIP", "Permission": {"Read": "NONE", "Execute": "ALL"}},
    ]), rt.recipes)
    try:
        rt.launch()
        rt.wait_state(name, "FINISHED")
        store = rt.root / "packages" / "artifacts" / name / "1.0.0"
        unpacked = rt.root / "packages" / "artifacts-unarchived" / name / "1.0.0" / "tree"

        def mode(p: Path) -> int:
            return stat.S_IMODE(p.stat().st_mode)

        w = 0 if os.geteuid() == 0 else 0o200  # the nucleus adds owner write only when it is not root
        assert mode(store / "default.txt") == 0o440 | w  # Read OWNER: owner and group read
        assert mode(store / "owner-exec.sh") == 0o550 | w  # Execute OWNER: owner and group read + execute
        assert mode(store / "all-read.txt") == 0o444 | w
        assert mode(store / "tree.zip") == 0o555 | w  # Execute ALL implies read for all
        assert mode(unpacked / "bin" / "tool") == 0o555 | w
        assert mode(unpacked) == mode(unpacked / "bin") == 0o755
    finally:
        rt.cleanup()


# --------------------------------------------------------------------------- Bootstrap


def _boot(trace: Path, version: str, bootstrap: Any, deps: dict[str, Any] | None = None,
          name: str = BOOT, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """A component that records each lifecycle step it runs in `trace`, then keeps running."""
    lifecycle: dict[str, Any] = {
        "Install": f"echo {name}@{version} install >> {trace}",
        "Run": f"echo {name}@{version} run >> {trace}; exec sleep 600",
    }
    if bootstrap is not None:
        lifecycle["Bootstrap"] = bootstrap
    doc = _recipe(name, version, lifecycle, ComponentConfiguration={"DefaultConfiguration": config or {}})
    if deps:
        doc["ComponentDependencies"] = deps
    return doc


def _lines(trace: Path) -> list[str]:
    return trace.read_text().splitlines() if trace.exists() else []


def _deploy(rt: Runtime, folder: Path, docs: list[dict[str, Any]], **kwargs: Any) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        write_recipe(doc, folder)
    return rt.deploy(recipe_directory_path=str(folder),
                     root_component_versions_to_add={d["ComponentName"]: d["ComponentVersion"] for d in docs}, **kwargs)


def test_bootstrap_runs_before_install_restarts_everything_and_only_when_it_changes(tmp_path: Path) -> None:
    """Developer guide, Bootstrap: it runs before Install when the component is first deployed, when its version
    changes, or when its (interpolated) Bootstrap changes through a configuration update; afterwards the nucleus
    restarts, so every component starts again (KernelUpdateActivator: softShutdown, bootstrap, shutdown(100)).
    An unchanged Bootstrap never runs again, nor does a runtime restart run it (isBootstrapRequired)."""
    trace = tmp_path / "trace.txt"
    peer = "com.ggvision.test.Peer"
    rt = Runtime(tmp_path, [peer]).start()
    try:
        assert rt.log(peer).count("run: starting") == 1
        step = {"Script": f"echo {BOOT} bootstrap {{configuration:/bootArg}} >> {trace}", "Timeout": 30}
        d = _deploy(rt, tmp_path / "v1", [_boot(trace, "1.0.0", step, config={"bootArg": "a", "other": 1})])
        assert d.status == "SUCCEEDED", d.deployment_status_details
        rt.wait_state(BOOT, "RUNNING")
        assert _lines(trace) == [f"{BOOT} bootstrap a", f"{BOOT}@1.0.0 install", f"{BOOT}@1.0.0 run"]
        rt.wait_state(peer, "RUNNING")
        assert rt.log(peer).count("run: starting") == 2  # the nucleus restarted: every component started again
        assert f"Bootstrap to run for {BOOT}" in rt.log("ggvision.deployment")

        # configuration that the Bootstrap does not read: no Bootstrap, no restart of the others
        d = rt.deploy(component_to_configuration={BOOT: {"MERGE": {"other": 2}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        assert [x for x in _lines(trace) if "bootstrap" in x] == [f"{BOOT} bootstrap a"]
        assert rt.log(peer).count("run: starting") == 2

        # configuration that changes the interpolated Bootstrap: it runs again (before anything starts)
        d = rt.deploy(component_to_configuration={BOOT: {"MERGE": {"bootArg": "b"}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        assert [x for x in _lines(trace) if "bootstrap" in x] == [f"{BOOT} bootstrap a", f"{BOOT} bootstrap b"]
        assert _lines(trace)[-2:] == [f"{BOOT} bootstrap b", f"{BOOT}@1.0.0 run"]  # installed once per version

        # a restart of the runtime is not a deployment: nothing bootstraps
        assert rt.stop() == 0
        rt.launch()
        rt.wait_state(BOOT, "RUNNING")
        assert [x for x in _lines(trace) if "bootstrap" in x] == [f"{BOOT} bootstrap a", f"{BOOT} bootstrap b"]
    finally:
        rt.cleanup()


def test_bootstrap_exit_100_and_101_in_dependency_order_without_rebooting(tmp_path: Path) -> None:
    """BootstrapSuccessCode: 0 done, 100 restart the nucleus, 101 reboot the device; each stops the sequence
    and the remaining steps run after the restart (Kernel.launch, stage BOOTSTRAP), in dependency order
    (BootstrapManager: DependencyOrder). The runtime emulates the restart and never reboots the machine."""
    trace = tmp_path / "trace.txt"
    rt = Runtime(tmp_path, [])
    rt.recipes.mkdir()
    try:
        rt.launch()
        lib = _boot(trace, "1.0.0", f"echo {LIB} bootstrap >> {trace}; exit 101", name=LIB)
        app = _boot(trace, "1.0.0", f"echo {BOOT} bootstrap >> {trace}; exit 100",
                    deps={LIB: {"VersionRequirement": "^1.0.0"}})
        d = _deploy(rt, tmp_path / "v1", [app, lib])
        assert d.status == "SUCCEEDED", d.deployment_status_details
        rt.wait_state(BOOT, "RUNNING")
        lines = _lines(trace)
        assert lines[:2] == [f"{LIB} bootstrap", f"{BOOT} bootstrap"]  # both before anything installs
        assert lines.index(f"{LIB}@1.0.0 run") < lines.index(f"{BOOT}@1.0.0 run")
        log = rt.log("ggvision.deployment")
        assert f"{LIB}'s Bootstrap exited 101 (reboot the device): this runtime does NOT reboot" in log
        assert f"{BOOT}'s Bootstrap exited 100 (restart the nucleus): emulated" in log
    finally:
        rt.cleanup()


def test_bootstrap_failure_rolls_back_whatever_the_policy(tmp_path: Path) -> None:
    """KernelUpdateActivator.rollback never reads failureHandlingPolicy: a Bootstrap exiting with any other code
    ("Fail to execute bootstrap step"), one past its Timeout (COMPONENT_BOOTSTRAP_TIMEOUT; the process is
    closed), or one whose Skipif is invalid (bootstrap() returns 1) fails the deployment and restores the
    previous versions: FAILED_ROLLBACK_COMPLETE even with DO_NOTHING. The restored version's Bootstrap runs
    again only with BootstrapOnRollback (KernelAlternatives.prepareBootstrapOnRollbackIfNeeded)."""
    trace = tmp_path / "trace.txt"
    pid_file = tmp_path / "bootstrap.pid"
    rt = Runtime(tmp_path, [])
    rt.recipes.mkdir()
    try:
        rt.launch()
        v1 = {"Script": f"echo v1 bootstrap >> {trace}", "BootstrapOnRollback": True}
        assert _deploy(rt, tmp_path / "v1", [_boot(trace, "1.0.0", v1)]).status == "SUCCEEDED"
        rt.wait_state(BOOT, "RUNNING")
        cases = [
            ("2.0.0", f"echo v2 bootstrap >> {trace}; exit 3", f"Bootstrap step of {BOOT} failed with exit code 3"),
            ("2.0.1", {"Script": f"echo $$ > {pid_file}; exec sleep 60", "Timeout": 1},
             "Bootstrap step timed out after 1s"),
            ("2.0.2", {"Script": "exit 0", "Skipif": "EXISTS /"}, f"Bootstrap step of {BOOT} failed with exit code 1"),
        ]
        for version, step, cause in cases:
            d = _deploy(rt, tmp_path / version, [_boot(trace, version, step)], failure_handling_policy="DO_NOTHING")
            assert d.status == "FAILED"
            details = d.deployment_status_details
            assert details.detailed_deployment_status == "FAILED_ROLLBACK_COMPLETE", details
            assert cause in details.deployment_failure_cause
            assert rt.client.get_component_details(component_name=BOOT).component_details.version == "1.0.0"
            rt.wait_state(BOOT, "RUNNING")
        lines = _lines(trace)
        assert not [x for x in lines if "@2.0" in x]  # no new version ever installed or ran
        # v1's Bootstrap ran at its deployment and again on each rollback (BootstrapOnRollback)
        assert lines.count("v1 bootstrap") == 4
        pid = int(pid_file.read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the timed-out Bootstrap was killed
        state = json.loads((rt.root / "deployments" / "state.json").read_text())
        assert json.loads(state["bootstrapped"][BOOT])["version"] == "1.0.0"
        # a good version afterwards still bootstraps (the failed ones left no record behind)
        d = _deploy(rt, tmp_path / "3.0.0", [_boot(trace, "3.0.0", f"echo v3 bootstrap >> {trace}")])
        assert d.status == "SUCCEEDED", d.deployment_status_details
        wait_until(lambda: f"{BOOT}@3.0.0 run" in _lines(trace), 20, what="3.0.0 running")
        assert _lines(trace)[-3:] == ["v3 bootstrap", f"{BOOT}@3.0.0 install", f"{BOOT}@3.0.0 run"]
    finally:
        rt.cleanup()
