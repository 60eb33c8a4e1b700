"""Run the kernel as a process: start, deploy the given recipes, run until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from .deployments import ConfigUpdate, DeploymentManager, DeploymentRequest
from .kernel import Kernel, KernelOptions
from .logs import HubHandler
from .recipe import Recipe
from .recipeparser import load_recipe_dir

log = logging.getLogger("gglocal.nucleus")


async def serve(options: KernelOptions, recipe_dir: Path | None = None, artifact_dir: Path | None = None,
                stop: asyncio.Event | None = None, dashboard: bool = False) -> int:
    kernel = Kernel(options, DeploymentManager)
    handler = HubHandler(kernel.hub)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root_logger = logging.getLogger("gglocal")
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await kernel.start()
        # Startup deployment: persisted roots plus every recipe in --recipes as a root.
        newest: dict[str, Recipe] = {}
        for r in load_recipe_dir(recipe_dir) if recipe_dir is not None else []:
            if r.name not in newest or r.semver > newest[r.name].semver:
                newest[r.name] = r
        add = {name: r.version for name, r in newest.items()}
        config = {name: ConfigUpdate(merge=options.startup_merge.get(name, {}),
                                     reset=options.startup_reset.get(name, []))
                  for name in {*options.startup_merge, *options.startup_reset}}
        dep_id = kernel.deployments.submit(DeploymentRequest(recipe_dir=recipe_dir, artifact_dir=artifact_dir, add=add,
                                                             config=config, notify_components=False,
                                                             failure_policy="DO_NOTHING"))

        async def report() -> None:
            rec = await kernel.deployments.wait(dep_id)
            if rec.status != "SUCCEEDED":
                log.error("startup deployment failed: %s: %s", rec.detailed, rec.cause)

        reporter = loop.create_task(report())
        follower = None
        if options.thing_groups:
            from .groupdeploy import GroupFollower

            follower = GroupFollower(kernel, options.thing_groups)
            await follower.start()
        if dashboard:
            from .dashboard import Dashboard

            await Dashboard(kernel).run(stop)
        await stop.wait()
        reporter.cancel()
        if follower is not None:
            await follower.stop()
        return 0
    finally:
        log.info("ggvision runtime stopping")
        await kernel.stop()
        root_logger.removeHandler(handler)
