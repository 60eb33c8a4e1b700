"""Test component standing in for com.ggvision.Inference: publishes detections for a camera for
`publishForS` seconds after each start, then goes quiet while staying RUNNING (a hung model). Like the real one it
reports, twice a second and also while hung, inference-metrics/1.1 with its per-camera detections count (what
Health reads). Not product code."""

from __future__ import annotations

import signal
import threading
import time

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client = GreengrassCoreIPCClientV2()
    cfg = client.get_configuration().value
    camera, period, publish_for = cfg["camera"], 1.0 / float(cfg["rateHz"]), float(cfg["publishForS"])
    print(f"fake inference started: detections for {camera} during {publish_for:g} s", flush=True)
    client.update_state(state="RUNNING")
    n, last = 0, time.monotonic()

    def metrics() -> None:
        while not stop.wait(0.5):
            client.publish_to_topic(topic="ggvision/v1/metrics/inference", publish_message=PublishMessage(
                json_message=JsonMessage(message={
                    "schema": "inference-metrics/1.1", "model": "fake", "timestamp": time.time(), "runs": n,
                    "errors": 0, "frames": n,
                    "cameras": {camera: {"detection_msgs": n, "last_age_s": round(time.monotonic() - last, 3)}}})))

    threading.Thread(target=metrics, daemon=True).start()
    while n * period < publish_for and not stop.wait(period):
        client.publish_to_topic(topic=f"ggvision/v1/detections/{camera}", publish_message=PublishMessage(
            json_message=JsonMessage(message={"schema": "detections/1.0", "camera": camera, "sequence": n,
                                              "detections": []})))
        last = time.monotonic()
        n += 1
    print(f"fake inference went quiet after {n} messages", flush=True)
    stop.wait()
    client.close()


if __name__ == "__main__":
    main()
