"""Lifecycle under the local runtime: states, BROKEN, shutdown timeouts, dependencies, variables."""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness import Runtime, wait_until


def test_broken_after_three_errors_with_recover_step(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, ["com.ggvision.test.Crasher"])
    try:
        rt.start(wait_for={"com.ggvision.test.Crasher": ("BROKEN",)})
        log = rt.log("com.ggvision.test.Crasher")
        assert log.count("run: starting") == 3
        assert log.count("recover-step-ran") == 2  # recover runs between errors, not after the last one
        assert "ERRORED -> BROKEN" in log and "run exited with code 3" in log
        # BROKEN stays BROKEN: no further restarts
        n = rt.log("com.ggvision.test.Crasher").count("run: starting")
        rt.client.list_components()
        assert rt.log("com.ggvision.test.Crasher").count("run: starting") == n
    finally:
        rt.cleanup()


def test_shutdown_timeout_kills_a_component_that_ignores_sigterm(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, ["com.ggvision.test.SlowStop"])
    try:
        rt.start()
        wait_until(lambda: "slowstop up" in rt.log("com.ggvision.test.SlowStop"), 20, what="slowstop up")
        t0 = time.monotonic()
        assert rt.stop() == 0
        took = time.monotonic() - t0
        log = rt.log("com.ggvision.test.SlowStop")
        assert "shutdown-step-ran" in log and "got SIGTERM, ignoring it" in log
        assert "did not stop within 2s of SIGTERM; killed" in log
        assert 1.5 < took < 15, took
    finally:
        rt.cleanup()


def test_dependencies_variables_environment_and_install_once(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, ["com.ggvision.test.Base", "com.ggvision.test.Env"])
    try:
        rt.start()
        env_file = rt.root / "work" / "com.ggvision.test.Env" / "env.json"
        out = json.loads(wait_until(lambda: env_file.exists() and env_file.read_text(), 20, what="env.json"))
        root = rt.root.resolve()
        art = root / "packages" / "artifacts" / "com.ggvision.test.Env" / "1.0.0"
        unz = root / "packages" / "artifacts-unarchived" / "com.ggvision.test.Env" / "1.0.0"
        assert out["argv"] == [
            str(art), str(unz), str(root / "work" / "com.ggvision.test.Env"), str(root), "test-thing", "hi",
            '{"k":1}', "hello from base", str(root / "work" / "com.ggvision.test.Base"),
            "{configuration:/missing}", "{com.ggvision.test.Other:work:path}",  # unknown: left as written
        ]
        env = out["env"]
        assert env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"] == str(root / "ipc.socket")
        assert env["SVCUID"] and env["SVCUID"] == env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        assert env["AWS_IOT_THING_NAME"] == "test-thing" and env["AWS_REGION"] == env["AWS_DEFAULT_REGION"]
        assert env["GGC_VERSION"] and env["GREETING"] == "hi"
        assert out["cwd"] == str(root / "work" / "com.ggvision.test.Env")
        base_work = root / "work" / "com.ggvision.test.Base"
        assert (base_work / "startup.txt").read_text().strip() == "lifecycle"
        # the dependency was RUNNING before the dependent started
        merged = rt.output()
        assert merged.index("com.ggvision.test.Base | state STARTING -> RUNNING") < \
            merged.index("com.ggvision.test.Env | run: starting")
        assert rt.state("com.ggvision.test.Base") == "RUNNING"
        # Install runs once per version: a runtime restart does not install again
        assert rt.stop() == 0
        rt.launch()
        rt.wait_state("com.ggvision.test.Env", ("RUNNING", "FINISHED"))
        assert (base_work / "install-count.txt").read_text().count("installed") == 1
    finally:
        rt.cleanup()


def test_startup_timeout_errors(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, [])

    def slow_startup(doc: dict) -> None:
        doc["ComponentName"] = "com.ggvision.test.SlowStartup"
        doc["Manifests"] = [{"Lifecycle": {"Startup": {"Script": "sleep 30", "Timeout": 1}}}]

    rt.write_component("com.ggvision.test.Crasher", edit=slow_startup)
    try:
        rt.launch()
        rt.wait_state("com.ggvision.test.SlowStartup", "BROKEN", 30)
        assert "startup timed out after 1s" in rt.log("com.ggvision.test.SlowStartup")
    finally:
        rt.cleanup()


def test_skipif_and_finished(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, [])

    def skippy(doc: dict) -> None:
        doc["ComponentName"] = "com.ggvision.test.Skippy"
        doc["Manifests"] = [{"Lifecycle": {
            "Install": {"Script": "exit 1", "Skipif": "exists /"},
            "Run": {"Script": "echo ran-to-completion", "Skipif": "onpath no-such-tool-ggv"}}}]

    rt.write_component("com.ggvision.test.Crasher", edit=skippy)
    try:
        rt.launch()
        rt.wait_state("com.ggvision.test.Skippy", "FINISHED")
        log = rt.log("com.ggvision.test.Skippy")
        assert "install: skipped (exists /)" in log and "ran-to-completion" in log
    finally:
        rt.cleanup()


def test_hard_dependents_restart_with_their_dependency_soft_ones_do_not(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, [])

    def depends(kind: str):  # noqa: ANN202
        def edit(doc: dict) -> None:
            doc["ComponentDependencies"] = {"com.ggvision.test.Base": {"VersionRequirement": "^1.0.0",
                                                                        "DependencyType": kind}}
        return edit

    rt.write_component("com.ggvision.test.Base")
    rt.write_component("com.ggvision.test.Agent", edit=depends("HARD"))
    rt.write_component("com.ggvision.test.Peer", edit=depends("SOFT"))
    try:
        rt.launch()
        for name in ("com.ggvision.test.Agent", "com.ggvision.test.Peer"):
            rt.wait_state(name, "RUNNING")
        hard = rt.log("com.ggvision.test.Agent").count("run: starting")
        soft = rt.log("com.ggvision.test.Peer").count("run: starting")
        rt.client.restart_component(component_name="com.ggvision.test.Base")
        wait_until(lambda: rt.log("com.ggvision.test.Agent").count("run: starting") > hard, 20,
                   what="the HARD dependent restarted after its dependency")
        rt.wait_state("com.ggvision.test.Agent", "RUNNING")
        assert rt.log("com.ggvision.test.Peer").count("run: starting") == soft
        assert rt.state("com.ggvision.test.Peer") == "RUNNING"
    finally:
        rt.cleanup()


def test_components_left_by_a_killed_runtime_are_stopped_at_the_next_start(tmp_path: Path) -> None:
    import psutil

    rt = Runtime(tmp_path, [])

    def stubborn(doc: dict) -> None:  # survives its parent's death: ignores SIGTERM and never writes again
        doc["ComponentName"] = "com.ggvision.test.Stubborn"
        doc["Manifests"] = [{"Lifecycle": {
            "Run": "exec python3 -c \"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('stubborn up', flush=True); [time.sleep(0.2) for _ in iter(int, 1)]\"",
            "Shutdown": {"Script": "true", "Timeout": 2}}}]

    rt.write_component("com.ggvision.test.Crasher", edit=stubborn)
    try:
        rt.launch()
        wait_until(lambda: "stubborn up" in rt.log("com.ggvision.test.Stubborn"), 20, what="stubborn up")
        sock = str(rt.root.resolve() / "ipc.socket")

        def ours() -> list[int]:
            pids = []
            for p in psutil.process_iter(["cmdline"]):
                try:
                    if "stubborn up" in " ".join(p.info["cmdline"] or []) and p.environ().get(
                            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT") == sock:
                        pids.append(p.pid)
                except psutil.Error:
                    continue
            return pids

        before = ours()
        assert before
        rt.kill9()  # the runtime dies without stopping its components
        assert ours() == before  # the component outlives it
        rt.launch()
        wait_until(lambda: "a previous runtime left running" in rt.output(), 30, what="orphans reaped")
        assert not set(before) & set(ours())
        rt.wait_state("com.ggvision.test.Stubborn", "RUNNING")
    finally:
        rt.cleanup()


def test_a_broken_console_pipe_loses_nothing_and_stops_nothing(tmp_path: Path) -> None:
    """`make run | tee log` and Ctrl-C: tee dies first; the runtime's console writes must not abort its shutdown."""
    from gglocal.nucleus.logs import LogHub

    class BrokenPipe:
        def isatty(self) -> bool:
            return False

        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    hub = LogHub(tmp_path / "logs", console=BrokenPipe())  # type: ignore[arg-type]
    hub.line("com.example.A", "stdout", "first")
    hub.line("com.example.A", "stdout", "second")  # no exception, console dropped
    hub.close()
    assert hub.console is None
    assert [line.split("] ", 1)[1] for line in (tmp_path / "logs" / "com.example.A.log").read_text().splitlines()] \
        == ["first", "second"]
