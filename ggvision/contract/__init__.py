"""The edge-cloud contract: names and shapes both halves depend on (S3 keys, topics, message schemas, metric names)."""
