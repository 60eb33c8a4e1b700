"""Topics of the suite. Local topics travel over Greengrass IPC pub/sub between components; IoT Core topics
leave the device (≤ 128 KB a message). Templates take `.format(camera=..., thing=..., ...)`; `every()` turns
a template into the MQTT filter that matches all of its topics."""

from __future__ import annotations

import re

# -- local pub/sub (Greengrass IPC) -----------------------------------------------------------------------
FRAMES = "ggvision/v1/frames/{camera}"  # frame/1.0: Capture -> Filter (cameras with frameDescriptors on), Inference
FRAME_RINGS = "ggvision/v1/frame-rings"  # frame-rings/1.0: Capture -> Inference (which ring holds each camera)
SEGMENTS = "ggvision/v1/segments/{camera}"  # segment/1.0: Capture -> Filter
SENSORS = "ggvision/v1/sensors/{sensor}"  # gas/1.0: Capture -> Inference (fire risk)
DETECTIONS = "ggvision/v1/detections/{camera}"  # detections/1.0: Inference -> Filter, Health
EVENTS = "ggvision/v1/events/{camera}"  # event/1.0: Filter -> whoever watches (live view)
MOTION = "ggvision/v1/motion/{camera}"  # motion/1.0: Filter's motion gate -> whoever watches
ALERTS = "ggvision/v1/alerts/{component}"  # alert/1.0 (Inference, Health), filter-alert/1.0 (Filter)
METRICS = "ggvision/v1/metrics/{component}"  # <component>-metrics/1.0 -> Health, live view
UPLINK_PUT = "ggvision/v1/uplink/put"  # uplink-put/1.0: Filter (any producer) -> Uplink
UPLINK_ACKS = "ggvision/v1/uplink/acks"  # uplink-ack/1.0: Uplink -> producers
DISK_BUDGET = "ggvision/v1/disk/budget"  # disk-budget/1.0: Health -> Capture, Filter, Uplink (contract/disk.py)
# AWS-defined (the aws.greengrass.Cloudwatch component's documented defaults, developer guide page "CloudWatch
# metrics", Input data / Output data): Health -> CloudWatch metric requests; the component's status answers.
CLOUDWATCH_PUT = "cloudwatch/metric/put"
CLOUDWATCH_STATUS = "cloudwatch/metric/put/status"
# AWS-defined (ShadowManager publishes them on local pub/sub, binary JSON): a component's named shadow changed
# (contract/shadows.py); `delta` while desired differs from reported, `documents` after every update.
CAPTURE_SHADOW_DELTA = "$aws/things/{thing}/shadow/name/ggvision-capture/update/delta"
CAPTURE_SHADOW_DOCUMENTS = "$aws/things/{thing}/shadow/name/ggvision-capture/update/documents"
FILTER_SHADOW_DELTA = "$aws/things/{thing}/shadow/name/ggvision-filter/update/delta"
FILTER_SHADOW_DOCUMENTS = "$aws/things/{thing}/shadow/name/ggvision-filter/update/documents"

# -- IoT Core ---------------------------------------------------------------------------------------------
IOT_EVENTS = "ggvision/{thing}/events"  # event/1.0 and filter-alert/1.0 (through the Uplink), alert/1.0 (Health)
IOT_RESULTS = "ggvision/{thing}/results"  # uplink-batch/1.0 of detections results
IOT_METRICS = "ggvision/{thing}/metrics"  # health-summary/1.0: rollout gates and the metrics archive rule
IOT_STATUS = "ggvision/{thing}/status"  # uplink-status/1.0

_FIELD = re.compile(r"\{[a-z_]+\}")


def every(template: str) -> str:
    """The MQTT filter matching every topic of a template: `ggvision/v1/frames/{camera}` -> `.../frames/+`."""
    return _FIELD.sub("+", template)


def metrics(component: str) -> str:
    return METRICS.format(component=component)


def iot(template: str, thing: str) -> str:
    return template.format(thing=thing)


LOCAL = (FRAMES, FRAME_RINGS, SEGMENTS, SENSORS, DETECTIONS, EVENTS, MOTION, ALERTS, METRICS, UPLINK_PUT, UPLINK_ACKS,
         DISK_BUDGET, CLOUDWATCH_PUT, CLOUDWATCH_STATUS, CAPTURE_SHADOW_DELTA, CAPTURE_SHADOW_DOCUMENTS,
         FILTER_SHADOW_DELTA, FILTER_SHADOW_DOCUMENTS)
IOT = (IOT_EVENTS, IOT_RESULTS, IOT_METRICS, IOT_STATUS)
