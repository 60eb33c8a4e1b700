"""Rollout CLI: promote model versions dev → staging → production thing groups with a canary, a soak time,
health gates on what com.ggvision.Health publishes (health-summary/1.0), and automatic rollback by redeploying
the previous revision. Backends: the local fleet (`ggvision fleet up`) and AWS (boto3 greengrassv2/iot).

config.py (rollout.yaml), gates.py, state.py (state + history), engine.py, cli.py, backends/. Docs: docs/rollout.md.
"""
