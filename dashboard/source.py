"""Which backend the dashboard reads: GGVISION_DASHBOARD_BACKEND=edge (the runtime root in GGVISION_DASHBOARD_ROOT)
or cloud (data/cloud.py's CloudSettings), and the rollout state when GGVISION_DASHBOARD_ROLLOUT_CONFIG names a
rollout.yaml. Bad settings raise ValueError naming the variable."""

from __future__ import annotations

import os

from .data.base import DataSource
from .data.cloud import CloudSettings, CloudSource
from .data.edge import EdgeSettings, EdgeSource

BACKENDS = ("edge", "cloud")


def open_source(env: dict[str, str] | None = None) -> DataSource:
    env = dict(os.environ if env is None else env)
    kind = env.get("GGVISION_DASHBOARD_BACKEND") or "edge"
    if kind == "cloud":
        return CloudSource(CloudSettings.from_env(env))
    if kind == "edge":
        return EdgeSource(EdgeSettings.from_env(env))
    raise ValueError(f"GGVISION_DASHBOARD_BACKEND: {kind!r} is not one of {', '.join(BACKENDS)}")
