"""Rollout CLI: promote model versions dev → staging → production with canary and metric gates.

Not implemented yet (see the model registry and rollout issue).
"""
