"""Rollout backends: where deployments go and where health summaries come from (base.py: the interface)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import RolloutConfig
    from .base import Backend


def make_backend(cfg: RolloutConfig) -> Backend:
    """The backend rollout.yaml names (local: a `ggvision fleet up` fleet; aws: boto3)."""
    if cfg.backend == "local":
        from .local import LocalBackend

        return LocalBackend.from_config(cfg)
    from .aws import AwsBackend

    return AwsBackend.from_config(cfg)
