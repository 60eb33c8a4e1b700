"""The dashboard's data layer: base.py (the records and the DataSource protocol), cloud.py and edge.py (the two
backends), rollouts.py (the rollout engine's state and actions)."""
