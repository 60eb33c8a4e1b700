"""The contract: the names and shapes that both halves of the system depend on, defined once.

- topics.py   local pub/sub topics (Greengrass IPC) and IoT Core topics, with the schema each one carries
- schemas.py  every versioned message schema: its id, who produces it, who reads it, where it travels
- keys.py     the S3 object key layout the Uplink writes and the cloud reads
- metrics.py  the Prometheus metric families Health exports (names, types, labels)

Components, the local runtime's live view, the cloud side, the IaC and the docs import from here; nothing
here imports anything of ggvision. tests/test_contract.py holds docs/messages.md and deploy/ against it.
"""
