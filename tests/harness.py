"""Test harness: runs `ggvision nucleus` as a subprocess with the test components under tests/components.

Tests talk to the runtime only the ways a user or component would: through the real
GreengrassCoreIPCClientV2 (as the CLI identity, or inside the test agent component) and files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPONENTS = REPO / "tests" / "components"
RECIPES = COMPONENTS / "recipes"
AGENT_SCRIPT = COMPONENTS / "agent" / "agent.py"
TEST_SECRET = "s3cr3t-Value-do-not-log"


def dev_recipe(product: str, name: str) -> dict[str, Any]:
    """A product component's recipe adapted to run from this checkout under the test runtime: renamed, without
    its Runtime dependency, and Run using the development venv's python3 instead of the Runtime's venv. Same
    code, configuration and access control as the product (tests then change only what they say)."""
    doc = yaml.safe_load((REPO / "components" / product / "recipe.yaml").read_text())
    doc["ComponentName"] = name
    doc.pop("ComponentDependencies")
    lifecycle = doc["Manifests"][0]["Lifecycle"]
    lifecycle["Run"] = lifecycle["Run"].replace("{com.ggvision.Runtime:work:path}/venv/bin/python", "python3")
    return doc


def write_recipe(doc: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{doc['ComponentName']}.json"
    path.write_text(json.dumps(doc))
    return path


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll a condition until it holds (state held by another process has no event to await)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}; last value: {last!r}")


class AgentError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class Agent:
    """A connection to a test agent component's control socket."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        def connect() -> socket.socket | None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return s
            except OSError:  # not there yet, or a stale socket file from before a restart
                s.close()
                return None

        self.sock = wait_until(connect, timeout, what=f"agent socket {path}")
        self.f = self.sock.makefile("rwb")

    def call(self, op: str, **args: Any) -> Any:
        self.f.write(json.dumps({"op": op, "args": args}).encode() + b"\n")
        self.f.flush()
        line = self.f.readline()
        if not line:
            raise AgentError("AgentGone", "the agent closed its control socket")
        out = json.loads(line)
        if "error" in out:
            raise AgentError(out["error"], out["message"])
        return out["ok"]

    def close(self) -> None:
        self.sock.close()


class Runtime:
    def __init__(self, tmp: Path, components: list[str], iot: bool = False, args: list[str] | None = None,
                 config: dict[str, dict[str, Any]] | None = None) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        self.recipes = tmp / "recipes"
        self.artifacts = tmp / "artifacts"
        self.components = components
        self.iot = iot
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock_dir = Path(tempfile.mkdtemp(prefix="ggv-", dir="/tmp"))  # Unix socket paths must be short
        self.config = config or {}
        self.secrets_file = tmp / "secrets.json"
        self._client: Any = None

    # -- setup ----------------------------------------------------------------------------
    def agent_socket(self, name: str) -> str:
        return str(self.sock_dir / (name.rsplit(".", 1)[-1].lower() + ".sock"))

    def write_component(self, name: str, out_dir: Path | None = None, version: str | None = None,
                        edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        """Copy a test recipe (with a per-test control socket) and its artifacts into place."""
        doc = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
        if version:
            doc["ComponentVersion"] = version
        cfg = doc.get("ComponentConfiguration", {}).get("DefaultConfiguration", {})
        if "controlSocket" in cfg:
            cfg["controlSocket"] = self.agent_socket(name)
        cfg.update(self.config.get(name, {}))
        if edit:
            edit(doc)
        out_dir = out_dir or self.recipes
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{name}-{doc['ComponentVersion']}.json"
        path.write_text(json.dumps(doc))
        art = self.artifacts / name / str(doc["ComponentVersion"])
        art.mkdir(parents=True, exist_ok=True)
        for m in doc.get("Manifests", []):
            for a in m.get("Artifacts", []):
                fname = a["URI"].rsplit("/", 1)[-1]
                if fname == "agent.py":
                    shutil.copy(AGENT_SCRIPT, art / fname)
                elif fname == "bundle.zip":
                    with zipfile.ZipFile(art / fname, "w") as z:
                        z.write(COMPONENTS / "env" / "dump_env.py", "dump_env.py")
                else:  # any other payload lives somewhere under tests/components/
                    shutil.copy(next(COMPONENTS.rglob(fname)), art / fname)
        return path

    def start(self, wait_for: dict[str, tuple[str, ...]] | None = None, timeout: float = 60.0) -> Runtime:
        for name in self.components:
            self.write_component(name)
        self.launch()
        targets = wait_for if wait_for is not None else {n: ("RUNNING", "FINISHED") for n in self.components}
        for name, states in targets.items():
            self.wait_state(name, states, timeout)
        return self

    def launch(self) -> None:
        if not self.secrets_file.exists():
            self.secrets_file.write_text(json.dumps({"secrets": [
                {"name": "camera-1", "secretString": TEST_SECRET,
                 "arn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:camera-1"},
                {"name": "other", "secretString": "other-value"}]}))
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        sources = [] if "--build" in self.args else ["--recipes", str(self.recipes), "--artifacts", str(self.artifacts)]
        cmd = [sys.executable, "-m", "gglocal.cli", "nucleus", "--root", str(self.root), *sources,
               "--thing-name", "test-thing",
               "--secrets", str(self.secrets_file), "--settle", "0.5", *([] if self.iot else ["--no-iot"]), *self.args]
        cli = self.root / "cli_ipc_info" / "cli.json"
        cli.unlink(missing_ok=True)  # left by a previous run: wait for the new runtime's
        self.out = open(self.tmp / "runtime.out", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        wait_until(lambda: cli.exists() or self.proc.poll() is not None, 60, what="runtime start")
        if self.proc.poll() is not None:
            raise AssertionError(f"runtime exited early:\n{self.output()}")

    # -- observation ------------------------------------------------------------------------
    def output(self) -> str:
        return (self.tmp / "runtime.out").read_text(errors="replace")

    def log(self, component: str) -> str:
        p = self.root / "logs" / f"{component}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    @property
    def client(self) -> Any:
        """GreengrassCoreIPCClientV2 connected as the CLI identity."""
        if self._client is None:
            from awsiot.greengrasscoreipc import connect
            from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

            info = json.loads((self.root / "cli_ipc_info" / "cli.json").read_text())
            self._client = GreengrassCoreIPCClientV2(client=connect(ipc_socket=info["socket"],
                                                                     authtoken=info["token"]))
        return self._client

    def states(self) -> dict[str, str]:
        return {c.component_name: c.state for c in self.client.list_components().components}

    def state(self, name: str) -> str | None:
        return self.states().get(name)

    def wait_state(self, name: str, states: tuple[str, ...] | str, timeout: float = 30.0) -> str:
        want = (states,) if isinstance(states, str) else states

        def check() -> str | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"runtime died:\n{self.output()[-4000:]}")
            s = self.state(name)
            return s if s in want else None

        try:
            return wait_until(check, timeout, what=f"{name} in {want}")
        except AssertionError as e:
            raise AssertionError(f"{e}\nstates={self.states()}\n--- {name} log ---\n{self.log(name)[-3000:]}") from None

    def agent(self, name: str = "com.ggvision.test.Agent") -> Agent:
        return Agent(self.agent_socket(name))

    def deploy(self, timeout: float = 120.0, **kwargs: Any) -> Any:
        """CreateLocalDeployment through the real client; returns the final LocalDeployment."""
        from awsiot.greengrasscoreipc.model import CreateLocalDeploymentRequest

        op = self.client.client.new_create_local_deployment()
        op.activate(CreateLocalDeploymentRequest(**kwargs)).result(30)
        dep_id = op.get_response().result(30).deployment_id

        def done() -> Any:
            d = self.client.get_local_deployment_status(deployment_id=dep_id).deployment
            return d if d.status in ("SUCCEEDED", "FAILED") else None

        return wait_until(done, timeout, interval=0.1, what=f"deployment {dep_id}")

    # -- teardown ----------------------------------------------------------------------------
    def stop(self, timeout: float = 60.0) -> int:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"runtime did not stop within {timeout}s") from None
        code = self.proc.returncode
        self.proc = None
        self.out.close()
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None
        self.out.close()

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.sock_dir, ignore_errors=True)
