"""Rollout backends: where deployments go and where health summaries come from (base.py: the interface)."""
