"""One component's lifecycle: install, startup/run, shutdown, recover, states and BROKEN.

Follows the nucleus (greengrass-facts.md §2, §3.5): Install once per version; Run → RUNNING at spawn
and FINISHED on exit 0; Startup → STARTING until it exits 0 or reports RUNNING over IPC; a failure
→ ERRORED → Recover step → restart; the third error within errorResetTime (counted per state the
error happened in) → BROKEN, which stays until a deployment replaces the component.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from .lifecyclesteps import LifecycleStep, SkipifError, should_skip
from .logs import LogHub
from .recipe import Recipe, ResolvedRecipe

log = logging.getLogger("gglocal.nucleus")

DEFAULT_TIMEOUTS: dict[str, float | None] = {
    "install": 120.0,
    "startup": 120.0,
    "run": None,
    "shutdown": 15.0,
    "recover": 60.0,
    "bootstrap": 120.0,
}
MAX_CONTINUAL_ERRORS = 3
MAX_LINE_BYTES = 1 << 20  # a component's output line longer than this is logged in pieces


class State(str, Enum):
    NEW = "NEW"
    INSTALLED = "INSTALLED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    FINISHED = "FINISHED"
    ERRORED = "ERRORED"
    BROKEN = "BROKEN"

    def __str__(self) -> str:
        return self.value


HEALTHY = (State.RUNNING, State.FINISHED)


def _die_with_parent() -> None:
    # If the runtime is killed (even kill -9), its direct children get SIGTERM from the kernel.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServiceHost(Protocol):
    """What a component's lifecycle asks of its kernel (gglocal.nucleus.kernel.Kernel implements it)."""

    hub: LogHub
    options: Any  # KernelOptions: error_reset_time
    root: Path  # the runtime root (Skipif's ~root/, ~config/, ~packages/)
    state_listeners: list[Callable[[ComponentService, State, State], None]]

    def on_state_change(self, svc: ComponentService, old: State, new: State) -> None: ...

    def component_env(self, svc: ComponentService, step: LifecycleStep) -> dict[str, str]: ...

    def interpolate(self, svc: ComponentService, text: str) -> str: ...

    def work_path(self, name: str) -> Path: ...

    def track_group(self, pgid: int) -> None: ...

    def is_installed(self, name: str, version: str) -> bool: ...

    def mark_installed(self, name: str, version: str) -> None: ...


class ComponentService:
    def __init__(self, kernel: ServiceHost, recipe: Recipe, resolved: ResolvedRecipe) -> None:
        self.kernel = kernel
        self.recipe = recipe
        self.resolved = resolved
        self.name = recipe.name
        self.version = recipe.version
        self.state = State.NEW
        self.reason = ""
        self.token = secrets.token_urlsafe(24)
        self.proc: asyncio.subprocess.Process | None = None
        self.errors: dict[State, list[float]] = {}
        self.restarts = 0
        self.state_since = time.monotonic()
        self._gen = 0  # bumped whenever the current process is abandoned (stop, error, restart)
        self._driver: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.wanted = True  # False after StopComponent: reconcile leaves it stopped
        self.pgid: int | None = None  # process group of the current Startup/Run step (its processes and children)
        self.paused = False  # PauseComponent: the state stays as it was (RUNNING), as the nucleus reports it

    # -- state --------------------------------------------------------------------------
    def set_state(self, state: State, reason: str = "") -> None:
        old = self.state
        if old == state and reason == self.reason:
            return
        self.state, self.reason, self.state_since = state, reason, time.monotonic()
        self.kernel.on_state_change(self, old, state)

    @property
    def shutdown_timeout(self) -> float:
        step = self.resolved.steps.get("shutdown")
        return float(step.timeout) if step and step.timeout is not None else float(DEFAULT_TIMEOUTS["shutdown"] or 15)

    def _timeout(self, name: str, step: LifecycleStep) -> float | None:
        return step.timeout if step.timeout is not None else DEFAULT_TIMEOUTS.get(name)

    # -- processes ----------------------------------------------------------------------
    async def _spawn(self, name: str, step: LifecycleStep) -> asyncio.subprocess.Process | None:
        """Start a step's script; None when its Skipif skips it, SkipifError when the Skipif is invalid."""
        env = self.kernel.component_env(self, step)
        # The nucleus interpolates the whole lifecycle, Skipif included, before evaluating it.
        skipif = self.kernel.interpolate(self, step.skipif) if step.skipif is not None else None
        try:
            skip = should_skip(skipif, root=self.kernel.root)
        except SkipifError as e:
            self.kernel.hub.line(self.name, "nucleus", f"{name}: {e}")
            raise
        if skip:
            self.kernel.hub.line(self.name, "nucleus", f"{name}: skipped ({skipif})")
            return None
        script = self.kernel.interpolate(self, step.script)
        work = self.kernel.work_path(self.name)
        work.mkdir(parents=True, exist_ok=True)
        self.kernel.hub.line(self.name, "nucleus", f"{name}: starting")
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", script, cwd=str(work), env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        assert proc.stdout and proc.stderr
        self.kernel.track_group(proc.pid)  # its own session: the pid is the process group id
        loop = asyncio.get_running_loop()
        loop.create_task(self._pump(proc.stdout, "stdout"))
        loop.create_task(self._pump(proc.stderr, "stderr"))
        return proc

    async def _pump(self, reader: asyncio.StreamReader, stream: str) -> None:
        """Drain one output stream of a process into its log until EOF. Nothing may end this early: a
        component whose pipe is not read blocks once the pipe buffer fills. The hub never raises (a log it
        cannot write drops and counts lines, logs.py); a line without an end is cut at MAX_LINE_BYTES."""
        pending = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LINE_BYTES:
                lines.append(pending)
                pending = b""
            for line in lines:
                self._log_line(stream, line.decode(errors="replace").rstrip("\r"))
        if pending:
            self._log_line(stream, pending.decode(errors="replace"))

    def _log_line(self, stream: str, text: str) -> None:
        try:
            self.kernel.hub.line(self.name, stream, text)
        except Exception:  # never the pump's end (see _pump)
            log.debug("%s: a %s line could not be logged", self.name, stream, exc_info=True)

    # -- pause / resume (PauseComponent, ResumeComponent) -------------------------------------
    def pause(self) -> None:
        """Freeze every process of the component: SIGSTOP to its process group (the nucleus freezes the
        component's cgroup, GenericExternalService.pause). Pausing a paused component does nothing."""
        if self.paused:
            return
        if self.pgid is None:
            raise ProcessLookupError(f"{self.name} has no running processes")
        os.killpg(self.pgid, signal.SIGSTOP)
        self.paused = True
        self.kernel.hub.line(self.name, "nucleus", "paused (SIGSTOP to its process group)")

    def resume(self) -> None:
        """Thaw a paused component: SIGCONT to its process group."""
        if not self.paused:
            return
        self.paused = False
        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError):  # nothing left to resume
                os.killpg(self.pgid, signal.SIGCONT)
        self.kernel.hub.line(self.name, "nucleus", "resumed (SIGCONT to its process group)")

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process, grace: float) -> None:
        """SIGTERM the process group, then SIGKILL it after `grace` seconds."""
        if proc.returncode is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers in the group
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
            os.killpg(proc.pid, signal.SIGCONT)  # a stopped (paused) process acts on SIGTERM only once continued
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except asyncio.TimeoutError:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()

    async def _run_step(self, name: str) -> tuple[bool, str]:
        """Run a one-shot step (install, shutdown, recover) to completion within its timeout."""
        step = self.resolved.steps.get(name)
        if step is None:
            return True, ""
        try:
            proc = await self._spawn(name, step)
        except SkipifError as e:
            return False, f"{name}: {e}"
        if proc is None:
            return True, ""
        timeout = self._timeout(name, step)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            await self._kill(proc, 1.0)
            return False, f"{name} timed out after {timeout:g}s"
        if code != 0:
            return False, f"{name} exited with code {code}"
        self.kernel.hub.line(self.name, "nucleus", f"{name}: done")
        return True, ""

    async def run_bootstrap(self) -> int:
        """The Bootstrap step, as GenericExternalService.bootstrap runs it during a deployment: its exit code;
        0 when there is none or its Skipif skips it, 1 when it cannot run (an invalid Skipif, a script that
        does not start). Past its Timeout (default 120 s) it is killed and TimeoutError raised."""
        step = self.resolved.steps.get("bootstrap")
        if step is None:
            return 0
        try:
            proc = await self._spawn("bootstrap", step)
        except SkipifError:
            return 1
        except OSError as e:
            self.kernel.hub.line(self.name, "nucleus", f"bootstrap could not start: {e}")
            return 1
        if proc is None:
            return 0
        timeout = self._timeout("bootstrap", step)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            await self._kill(proc, 1.0)
            raise TimeoutError(f"Bootstrap step timed out after {timeout:g}s") from None
        self.kernel.hub.line(self.name, "nucleus", f"bootstrap: exited with code {code}")
        return code

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Begin (or resume) the start sequence; returns at once."""
        if self.state in (State.STARTING, State.RUNNING, State.STOPPING, State.BROKEN):
            return
        if self._driver is not None and not self._driver.done():
            return
        self._gen += 1
        self._driver = asyncio.get_running_loop().create_task(self._start_sequence(self._gen))

    async def _start_sequence(self, gen: int) -> None:
        async with self._lock:
            if gen != self._gen:
                return
            if not self.kernel.is_installed(self.name, self.version):
                ok, why = await self._run_step("install")
                if gen != self._gen:
                    return
                if not ok:
                    await self._handle_error(why, State.NEW)
                    return
                self.kernel.mark_installed(self.name, self.version)
            self.set_state(State.INSTALLED)
            name = "startup" if "startup" in self.resolved.steps else "run" if "run" in self.resolved.steps else None
            if name is None:
                self.set_state(State.FINISHED)
                return
            step = self.resolved.steps[name]
            try:
                proc = await self._spawn(name, step)
            except (OSError, SkipifError) as e:
                await self._handle_error(f"{name} could not start: {e}", State.INSTALLED)
                return
            if proc is None:  # skipped
                self.set_state(State.FINISHED)
                return
            self.proc = proc
            self.pgid = proc.pid  # its own session: the pid is the process group id
            self.set_state(State.RUNNING if name == "run" else State.STARTING)
        await self._supervise(gen, name, step, proc)

    async def _supervise(self, gen: int, name: str, step: LifecycleStep, proc: asyncio.subprocess.Process) -> None:
        timeout = self._timeout(name, step) if name == "startup" else None
        try:
            code = await asyncio.wait_for(asyncio.shield(proc.wait()), timeout)
        except asyncio.TimeoutError:
            if gen != self._gen:
                return
            if self.state == State.RUNNING:  # reported RUNNING over IPC: it may keep running
                code = await proc.wait()
            else:
                await self._kill(proc, 1.0)
                if gen == self._gen:
                    await self._handle_error(f"startup timed out after {timeout:g}s", State.STARTING)
                return
        if gen != self._gen:
            return
        self.proc = None
        if code == 0:
            self.set_state(State.RUNNING if name == "startup" else State.FINISHED)
        else:
            await self._handle_error(f"{name} exited with code {code}", self.state)

    def report_state(self, state: str) -> None:
        """UpdateState from the component itself."""
        if state == "RUNNING":
            if self.state in (State.STARTING, State.INSTALLED):
                self.set_state(State.RUNNING)
        elif state == "ERRORED" and self.state not in (State.STOPPING, State.BROKEN, State.ERRORED):
            asyncio.get_running_loop().create_task(self._handle_error("component reported ERRORED", self.state))

    async def _handle_error(self, reason: str, during: State) -> None:
        self._gen += 1
        gen = self._gen
        self.resume()
        proc, self.proc = self.proc, None
        self.set_state(State.ERRORED, reason)
        log.warning("%s ERRORED: %s", self.name, reason)
        if proc is not None:
            await self._kill(proc, self.shutdown_timeout)
        self.pgid = None
        now = time.time()
        times = self.errors.setdefault(during, [])
        if times and now - times[-1] >= self.kernel.options.error_reset_time:
            times.clear()
        times.append(now)
        if len(times) >= MAX_CONTINUAL_ERRORS:
            self.set_state(State.BROKEN, f"{len(times)} errors without recovering; last: {reason}")
            log.error("%s is BROKEN: %s", self.name, reason)
            return
        ok, why = await self._run_step("recover")
        if not ok:
            self.kernel.hub.line(self.name, "nucleus", f"recover failed: {why}")
        if gen != self._gen:
            return
        self.restarts += 1
        self._driver = None
        self.start()

    async def stop(self, final: State = State.FINISHED) -> None:
        """Shutdown step, then SIGTERM → SIGKILL after the Shutdown timeout."""
        self._gen += 1
        self.resume()  # a paused component is resumed for a graceful shutdown (GenericExternalService.shutdown)
        proc, self.proc = self.proc, None
        if self._driver is not None and not self._driver.done() and self._driver is not asyncio.current_task():
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._driver
        self._driver = None
        if self.state in (State.NEW, State.INSTALLED, State.FINISHED, State.ERRORED, State.BROKEN) and proc is None:
            if self.state != State.BROKEN:
                self.set_state(final)
            return
        self.set_state(State.STOPPING)
        ok, why = await self._run_step("shutdown")
        if not ok:
            self.kernel.hub.line(self.name, "nucleus", f"shutdown step failed: {why}")
        if proc is not None:
            if proc.returncode is None:
                self.kernel.hub.line(self.name, "nucleus", "stopping: SIGTERM")
            await self._kill(proc, self.shutdown_timeout)
            if proc.returncode == -signal.SIGKILL:
                self.kernel.hub.line(self.name, "nucleus",
                                     f"did not stop within {self.shutdown_timeout:g}s of SIGTERM; killed")
        self.pgid = None
        self.set_state(final)

    async def restart(self) -> None:
        self.wanted = True
        await self.stop(State.INSTALLED)
        self.errors.clear()
        self.start()

    def on_state(self, cb: Callable[[State], None]) -> None:  # pragma: no cover - convenience
        self.kernel.state_listeners.append(lambda svc, old, new: cb(new) if svc is self else None)
