"""The contract: the names and shapes that both halves of the system depend on, defined once.

- topics.py   local pub/sub topics (Greengrass IPC) and IoT Core topics, with the schema each one carries
- schemas.py  every versioned message schema: its id, who produces it, who reads it, where it travels
- keys.py     the S3 object key layout (kinds) the Uplink writes and the cloud reads, and the 7-day retention
- metrics.py  the Prometheus metric families Health exports (names, types, labels), its CloudWatch metrics
- secrets.py  secret names (camera credentials under the device's own name) and the metrics namespace
- shadows.py  the named device shadows that carry each device's per-site configuration to its components
- disk.py    the disk budget's classes, their eviction order and the disk-budget/1.0 message
- streams.py  the SQS queue and Kinesis stream names of a stack and the ordering/de-duplication keys of their messages
- cloud.py    the cloud ingest path: its queues, verdicts table and item layout, results objects, EventBridge
              detail-type and CloudWatch metrics

Components, the local runtime's live view, the cloud side, the IaC and the docs import from here; nothing
here imports anything of ggvision. tests/test_contract.py holds docs/messages.md and the recipes against it,
tests/cloud/test_site_contract.py the CloudFormation templates (deployed into moto with IAM enforcement).
"""
