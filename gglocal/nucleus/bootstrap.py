"""Bootstrap lifecycle steps in a deployment, as the nucleus runs them.

What the nucleus does (aws-greengrass-nucleus: deployment/bootstrap/BootstrapManager,
deployment/activator/DeploymentActivatorFactory and KernelUpdateActivator, lifecyclemanager/Kernel.launch,
GenericExternalService.bootstrap and isBootstrapRequired; developer guide, component-recipe-reference,
"Bootstrap"):

- A component needs its Bootstrap step when the deployment adds it, changes its version, or changes its
  (interpolated) Bootstrap step, e.g. through a configuration update; only if the new version has one.
- If any component needs it, the deployment is "intrusive": every component is stopped, the new
  configuration is written, the Bootstrap steps run one at a time in dependency order (Timeout default
  120 s, Skipif honoured: a skipped step counts as exit 0), and the nucleus then restarts into the new
  configuration, even when every step exited 0.
- Exit 0: done. 100: the nucleus must restart; 101: the device must reboot. Either stops the sequence;
  the remaining steps run after the restart, before any component starts. Any other code, or a timeout,
  fails the deployment and it is rolled back, whatever its failureHandlingPolicy (KernelUpdateActivator
  never reads it): FAILED_ROLLBACK_COMPLETE, or FAILED_UNABLE_TO_ROLLBACK.
- On that rollback, a restored version whose Bootstrap says ``BootstrapOnRollback: true`` (nucleus
  >= 2.12.0) runs it again, if its Bootstrap had started in the failed deployment and differs from it.

This runtime emulates the restart: all components are already stopped, so it runs the remaining steps and
then starts every component again (fresh lifecycle state, as after a restart). It never reboots the
machine: exit 101 is treated as a restart and says so in the deployment log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .artifacts import component_paths
from .dependencies import start_order
from .interpolation import ComponentPaths, InterpolationContext, interpolate
from .recipe import Recipe
from .service import ComponentService

if TYPE_CHECKING:
    from .kernel import Kernel

NO_OP, REQUEST_RESTART, REQUEST_REBOOT = 0, 100, 101  # BootstrapSuccessCode


class BootstrapFailed(Exception):
    """A Bootstrap step exited with an error code or timed out: the deployment is rolled back."""


def _context(kernel: Kernel, name: str, versions: Mapping[str, Recipe],
             configs: Mapping[str, dict[str, Any]]) -> InterpolationContext:
    """Interpolation as the deployment's configuration will have it (KernelConfigResolver interpolates the
    whole lifecycle, Bootstrap included, with the new versions and configuration)."""

    def paths(n: str) -> ComponentPaths:
        p = component_paths(kernel.root, n, versions[n].version)
        return ComponentPaths(p.artifacts_path, p.decompressed_path, kernel.work_path(n), configs.get(n, {}))

    deps = {d: paths(d) for d in versions[name].dependencies if d in versions}
    return InterpolationContext(name, paths(name), kernel.root, kernel.options.thing_name, deps)


def bootstrap_key(kernel: Kernel, name: str, versions: Mapping[str, Recipe],
                  configs: Mapping[str, dict[str, Any]]) -> str | None:
    """The version and interpolated Bootstrap step a component would be deployed with; None without one.
    Two keys differ exactly when GenericExternalService.isBootstrapRequired would say the step must run."""
    step = versions[name].resolve(kernel.options.platform).steps.get("bootstrap")
    if step is None:
        return None
    ctx = _context(kernel, name, versions, configs)
    return json.dumps({
        "version": versions[name].version,
        "script": interpolate(step.script, ctx),
        "skipif": interpolate(step.skipif, ctx) if step.skipif is not None else None,
        "timeout": step.timeout,
        "setenv": {k: interpolate(v, ctx) for k, v in sorted(step.setenv.items())},
        "requiresPrivilege": step.requires_privilege,
        "bootstrapOnRollback": step.bootstrap_on_rollback,
    }, sort_keys=True)


def pending_bootstraps(kernel: Kernel, target: Mapping[str, Recipe],
                       configs: Mapping[str, dict[str, Any]]) -> list[str]:
    """Components of the deployment whose Bootstrap must run, in dependency order (BootstrapManager)."""
    out = []
    for name in start_order(target):
        key = bootstrap_key(kernel, name, target, configs)
        if key is not None and kernel.bootstrapped.get(name) != key:
            out.append(name)
    return out


def rollback_bootstraps(kernel: Kernel, old: Mapping[str, Recipe], old_configs: Mapping[str, dict[str, Any]],
                        target: Mapping[str, Recipe], configs: Mapping[str, dict[str, Any]],
                        started: list[str]) -> list[str]:
    """Restored components whose Bootstrap runs on rollback (KernelAlternatives.prepareBootstrapOnRollbackIfNeeded):
    the restored version's Bootstrap has BootstrapOnRollback, the failed deployment had started that
    component's Bootstrap, and the restored step differs from the one that ran."""
    out = []
    for name in start_order(old):
        if name not in started:
            continue
        step = old[name].resolve(kernel.options.platform).steps.get("bootstrap")
        if step is None or not step.bootstrap_on_rollback:
            continue
        current = bootstrap_key(kernel, name, target, configs) if name in target else None
        if bootstrap_key(kernel, name, old, old_configs) != current:
            out.append(name)
    return out


async def restart_into(kernel: Kernel, roots: Mapping[str, str], versions: Mapping[str, Recipe],
                       configs: Mapping[str, dict[str, Any]]) -> None:
    """Stop every component and put the given roots, versions and configuration in place, starting nothing
    until `start_all`: the state a restarted nucleus comes up in (KernelLifecycle.softShutdown, then
    updateConfiguration). The new services are held back (not wanted), so that the kernel's reconciling,
    which the stopping components trigger, starts none of them while Bootstrap steps run."""
    for name in reversed(kernel.start_order()):
        await kernel.services[name].stop()
    for name in list(kernel.services):
        if name not in versions:
            kernel.config.remove(name)
    kernel.services.clear()
    for name, recipe in versions.items():
        svc = ComponentService(kernel, recipe, recipe.resolve(kernel.options.platform))
        svc.wanted = False
        kernel.services[name] = svc
    for name, cfg in configs.items():
        if name in versions:
            kernel.config.replace(name, cfg)
    kernel.bootstrapped = {n: k for n, k in kernel.bootstrapped.items() if n in versions}
    kernel.roots = dict(roots)
    kernel.save_state()


def start_all(kernel: Kernel) -> None:
    """Start every component, as the restarted nucleus does once the Bootstrap steps are done."""
    for svc in kernel.services.values():
        svc.wanted = True
    kernel.reconcile()


async def run_bootstraps(kernel: Kernel, names: list[str], versions: Mapping[str, Recipe],
                         configs: Mapping[str, dict[str, Any]], started: list[str],
                         say: Callable[[str], None]) -> None:
    """Run the Bootstrap steps one at a time (BootstrapManager.executeAllBootstrapTasksSequentially). Each one
    that succeeds is recorded; exit 100/101 is answered by the emulated restart (see the module docstring);
    any other code, or a timeout, raises BootstrapFailed."""
    for name in names:
        svc = kernel.services[name]
        started.append(name)
        try:
            code = await svc.run_bootstrap()
        except TimeoutError as e:
            raise BootstrapFailed(f"{name}: {e}") from None
        if code == REQUEST_RESTART:
            say(f"{name}'s Bootstrap exited 100 (restart the nucleus): emulated; every component is stopped "
                "and starts again once the remaining Bootstrap steps have run")
        elif code == REQUEST_REBOOT:
            say(f"{name}'s Bootstrap exited 101 (reboot the device): this runtime does NOT reboot the machine; it "
                "goes on as after a nucleus restart, so whatever the step left for a reboot has not happened")
            kernel.counters["bootstrap_reboots_not_performed"] += 1
        elif code != NO_OP:
            raise BootstrapFailed(f"Bootstrap step of {name} failed with exit code {code}")
        key = bootstrap_key(kernel, name, versions, configs)
        if key is not None:
            kernel.bootstrapped[name] = key
            kernel.save_state()
