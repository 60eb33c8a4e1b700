"""com.ggvision.Uplink: durable store-and-forward of objects (S3 or a directory bucket) and messages (IoT Core,
optionally SQS / Kinesis), with priorities, bandwidth caps, a disk quota and retention. See docs/uplink.md."""

PRIORITIES = ("alerts", "results", "clips", "video")  # index = rank: lower is more important
