"""Test component: drives the real GreengrassCoreIPCClientV2 on behalf of a test.

Runs as a Greengrass component under the local runtime (from its recipe). It connects over IPC
with the SVCUID the runtime gave it, then serves JSON-line commands on a Unix socket named by its
configuration (`controlSocket`), so a test can make any IPC call *as this component* and read
back responses, errors and subscription events. Not product code.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import threading
import time
import traceback
from typing import Any

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import (
    QOS,
    BinaryMessage,
    ConfigurationValidityReport,
    JsonMessage,
    Metric,
    PublishMessage,
)


class Events:
    """Events per subscription id, with a condition so the test can wait without sleeping."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: dict[str, list[Any]] = {}

    def add(self, sub: str, item: Any) -> None:
        with self.cond:
            self.items.setdefault(sub, []).append(item)
            self.cond.notify_all()

    def wait(self, sub: str, count: int, timeout: float) -> list[Any]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.items.get(sub, [])) >= count, timeout)
            return list(self.items.get(sub, []))


class Feeder:
    """A frame source for Inference tests and benchmarks (op feed_start): writes frames into one shared-memory
    ring per camera and publishes their frame/1.0 descriptors, round-robin over the cameras. `window` > 0 paces
    it by the answers on `answer_topic` (at most `window` frames of a camera beyond its last answered one; a
    frame unanswered for `answer_timeout` s is recorded as lost); `fps` > 0 caps the rounds per second."""

    def __init__(self, client: GreengrassCoreIPCClientV2, a: dict[str, Any]) -> None:
        import numpy as np

        from ggvision.framebus import FrameRing

        self.client = client
        self.cameras: list[str] = a["cameras"]
        self.count = a.get("count")  # frames per camera; None: until feed_stop
        self.fps = float(a.get("fps", 0))
        self.window = int(a.get("window", 0))
        self.answer_timeout = float(a.get("answer_timeout", 10))
        self.topic = a.get("topic", "ggvision/v1/frames/{camera}")
        if a.get("npy"):
            self.frames = np.load(a["npy"], mmap_mode="r")
        else:
            h, w, c = a.get("shape", [48, 64, 3])
            rng = np.random.default_rng(a.get("seed", 0))
            self.frames = rng.integers(0, 256, (8, h, w, c), dtype=np.uint8)
        nbytes = int(np.prod(self.frames.shape[1:]))
        self.rings = {cam: FrameRing.create(cam, int(a.get("slots", 8)), nbytes) for cam in self.cameras}
        self.published: dict[str, list[int]] = {cam: [] for cam in self.cameras}
        self.answered = {cam: -1 for cam in self.cameras}
        self.answers: list[dict[str, Any]] = []
        self.lost: list[tuple[str, int]] = []
        self.started = self.finished = 0.0
        self.cond = threading.Condition()
        self.stop_event = threading.Event()
        self.done = threading.Event()
        self.sub = None
        if a.get("answer_topic"):
            _, self.sub = client.subscribe_to_topic(topic=a["answer_topic"], on_stream_event=self._on_answer)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_answer(self, ev: Any) -> None:
        msg = ev.json_message.message if ev.json_message is not None else None
        if not isinstance(msg, dict) or msg.get("camera") not in self.answered:
            return
        cam, seq = msg["camera"], msg.get("sequence", -1)
        with self.cond:
            self.answers.append({"camera": cam, "sequence": seq, "version": (msg.get("model") or {}).get("version"),
                                 "batch_size": msg.get("batch_size"), "n": len(msg.get("detections") or []),
                                 "t": time.monotonic()})
            self.answered[cam] = max(self.answered[cam], seq)
            self.cond.notify_all()

    def _run(self) -> None:
        self.started = time.monotonic()
        i = 0
        try:
            while not self.stop_event.is_set() and (self.count is None or i < self.count):
                for k, cam in enumerate(self.cameras):
                    if self.window:
                        self._wait_window(cam)
                    ring = self.rings[cam]
                    desc = ring.write(self.frames[(i + k) % len(self.frames)], time.time())
                    self.client.publish_to_topic(topic=self.topic.format(camera=cam), publish_message=PublishMessage(
                        json_message=JsonMessage(message=desc.to_message())))
                    with self.cond:
                        self.published[cam].append(desc.sequence)
                i += 1
                if self.fps:
                    self.stop_event.wait(max(0.0, self.started + i / self.fps - time.monotonic()))
            if self.window:
                for cam in self.cameras:
                    self._wait_window(cam, 1)
        finally:
            self.finished = time.monotonic()
            self.done.set()

    def _wait_window(self, cam: str, window: int | None = None) -> None:
        window = window or self.window
        with self.cond:
            if not self.published[cam]:
                return
            ok = self.cond.wait_for(lambda: self.published[cam][-1] - self.answered[cam] < window
                                    or self.stop_event.is_set(), self.answer_timeout)
            if not ok:  # the newest frame got no answer: record it and go on
                last = self.published[cam][-1]
                self.lost.append((cam, last))
                self.answered[cam] = last

    def status(self, answers: bool) -> dict[str, Any]:
        with self.cond:
            out = {"done": self.done.is_set(), "published": {c: len(v) for c, v in self.published.items()},
                   "answered": len(self.answers), "lost": list(self.lost),
                   "elapsed": (self.finished or time.monotonic()) - self.started}
            if answers:
                out["answers"] = list(self.answers)
                out["sequences"] = {c: list(v) for c, v in self.published.items()}
        return out

    def close(self) -> None:
        self.stop_event.set()
        with self.cond:
            self.cond.notify_all()
        self.thread.join(30)
        if self.sub is not None:
            self.sub.close()
        for ring in self.rings.values():
            ring.close()


def main() -> None:
    client = GreengrassCoreIPCClientV2()
    cfg = client.get_configuration().value
    path = cfg["controlSocket"]
    events = Events()
    ops: dict[str, Any] = {}
    policy = {"validate": cfg.get("validateReply", "ACCEPTED"), "defer_times": int(cfg.get("deferTimes", 0))}
    deferred: dict[str, int] = {}
    feeders: dict[str, Feeder] = {}

    def on_error(sub: str):
        return lambda e: events.add(sub, {"error": type(e).__name__, "message": str(e)})

    def handle(cmd: dict[str, Any]) -> Any:
        op = cmd["op"]
        a = cmd.get("args", {})
        if op == "publish_json":
            client.publish_to_topic(topic=a["topic"], publish_message=PublishMessage(
                json_message=JsonMessage(message=a["message"])))
            return {}
        if op == "publish_binary":
            client.publish_to_topic(topic=a["topic"], publish_message=PublishMessage(
                binary_message=BinaryMessage(message=base64.b64decode(a["b64"]))))
            return {}
        if op == "subscribe":
            sub = a["id"]

            def on_event(ev: Any) -> None:
                if ev.json_message is not None:  # rx: wall-clock receive time (bench/suite.py's latencies)
                    events.add(sub, {"topic": ev.json_message.context.topic, "json": ev.json_message.message,
                                     "rx": time.time()})
                else:
                    events.add(sub, {"topic": ev.binary_message.context.topic,
                                     "b64": base64.b64encode(ev.binary_message.message).decode()})

            resp, op_ = client.subscribe_to_topic(topic=a["topic"], receive_mode=a.get("receive_mode"),
                                                  on_stream_event=on_event, on_stream_error=on_error(sub))
            ops[sub] = op_
            return {"topic_name": resp.topic_name}
        if op == "unsubscribe":
            ops.pop(a["id"]).close().result(10)  # the close is on the wire when the test hears back
            return {}
        if op == "events":
            return events.wait(a["id"], a.get("count", 0), a.get("timeout", 10.0))
        if op == "get_config":
            r = client.get_configuration(component_name=a.get("component"), key_path=a.get("key_path"))
            return {"component": r.component_name, "value": r.value}
        if op == "update_config":
            import datetime

            ts = a.get("timestamp")
            client.update_configuration(key_path=a.get("key_path", []), value_to_merge=a["value"],
                                        timestamp=datetime.datetime.fromtimestamp(ts) if ts else
                                        datetime.datetime.now())
            return {}
        if op == "subscribe_config":
            sub = a["id"]
            _, op_ = client.subscribe_to_configuration_update(
                component_name=a.get("component"), key_path=a.get("key_path", []),
                on_stream_event=lambda ev: events.add(sub, {
                    "component": ev.configuration_update_event.component_name,
                    "key_path": ev.configuration_update_event.key_path}),
                on_stream_error=on_error(sub))
            ops[sub] = op_
            return {}
        if op == "subscribe_validate":
            sub = a["id"]

            def on_validate(ev: Any) -> None:
                e = ev.validate_configuration_update_event
                events.add(sub, {"deployment": e.deployment_id, "configuration": e.configuration})
                status = "REJECTED" if e.configuration.get("reject") else policy["validate"]
                client.send_configuration_validity_report(configuration_validity_report=ConfigurationValidityReport(
                    status=status, deployment_id=e.deployment_id, message=f"agent says {status}"))

            _, op_ = client.subscribe_to_validate_configuration_updates(
                on_stream_event=on_validate, on_stream_error=on_error(sub))
            ops[sub] = op_
            return {}
        if op == "subscribe_updates":
            sub = a["id"]

            def on_update(ev: Any) -> None:
                if ev.pre_update_event is not None:
                    dep = ev.pre_update_event.deployment_id
                    events.add(sub, {"pre": dep})
                    n = deferred.get(dep, 0)
                    deferred[dep] = n + 1
                    recheck = 500 if n < policy["defer_times"] else 0
                    client.defer_component_update(deployment_id=dep, message="busy" if recheck else "ok",
                                                  recheck_after_ms=recheck)
                elif ev.post_update_event is not None:
                    events.add(sub, {"post": ev.post_update_event.deployment_id})

            _, op_ = client.subscribe_to_component_updates(on_stream_event=on_update, on_stream_error=on_error(sub))
            ops[sub] = op_
            return {}
        if op == "update_state":
            client.update_state(state=a["state"])
            return {}
        if op == "put_metric":
            client.put_component_metric(metrics=[Metric(name=a["name"], unit=a.get("unit", "COUNT"),
                                                        value=a["value"])])
            return {}
        if op == "get_secret":
            r = client.get_secret_value(secret_id=a["secret_id"])
            return {"secret_id": r.secret_id, "string": r.secret_value.secret_string}
        if op == "update_shadow":
            r = client.update_thing_shadow(thing_name=a["thing"], shadow_name=a.get("name"),
                                           payload=json.dumps(a["doc"]).encode())
            return json.loads(r.payload)
        if op == "get_shadow":
            r = client.get_thing_shadow(thing_name=a["thing"], shadow_name=a.get("name"))
            return json.loads(r.payload)
        if op == "delete_shadow":
            r = client.delete_thing_shadow(thing_name=a["thing"], shadow_name=a.get("name"))
            return json.loads(r.payload) if r.payload else {}
        if op == "list_components":
            return [{"name": c.component_name, "version": c.version, "state": c.state}
                    for c in client.list_components().components]
        if op == "component_details":
            d = client.get_component_details(component_name=a["name"]).component_details
            return {"name": d.component_name, "version": d.version, "state": d.state}
        if op == "restart":
            r = client.restart_component(component_name=a["name"])
            return {"status": r.restart_status, "message": r.message}
        if op == "stop":
            r = client.stop_component(component_name=a["name"])
            return {"status": r.stop_status, "message": r.message}
        if op == "publish_iot":
            # qos or b64 given as null: sent without it (the nucleus refuses that)
            client.publish_to_iot_core(topic_name=a["topic"], qos=a.get("qos", QOS.AT_LEAST_ONCE),
                                       payload=None if a["b64"] is None else base64.b64decode(a["b64"]))
            return {}
        if op == "subscribe_iot":
            sub = a["id"]
            _, op_ = client.subscribe_to_iot_core(
                topic_name=a["topic"], qos=a.get("qos", QOS.AT_LEAST_ONCE),
                on_stream_event=lambda ev: events.add(sub, {
                    "topic": ev.message.topic_name, "b64": base64.b64encode(ev.message.payload).decode()}),
                on_stream_error=on_error(sub))
            ops[sub] = op_
            return {}
        if op == "feed_start":  # frames into rings + descriptors (Inference tests, bench)
            if a["id"] in feeders:
                feeders.pop(a["id"]).close()
            feeders[a["id"]] = Feeder(client, a)
            return {"rings": {c: r.name for c, r in feeders[a["id"]].rings.items()}}
        if op == "feed_status":
            f = feeders[a["id"]]
            if a.get("wait"):
                f.done.wait(a.get("timeout", 60))
            return f.status(bool(a.get("answers")))
        if op == "feed_stop":
            f = feeders.pop(a["id"])
            f.close()
            return f.status(bool(a.get("answers")))
        if op == "raw":
            # Any client method by name with plain keyword arguments.
            r = getattr(client, a["method"])(**a.get("kwargs", {}))
            return repr(r)
        if op == "exit":
            os._exit(int(a.get("code", 0)))
        raise ValueError(f"unknown agent op {op}")

    def serve(conn: socket.socket) -> None:
        f = conn.makefile("rwb")
        for line in f:
            cmd = json.loads(line)
            try:
                out = {"ok": handle(cmd)}
            except Exception as e:  # report any IPC error back to the test
                out = {"error": type(e).__name__, "message": str(getattr(e, "message", "") or e),
                       "trace": traceback.format_exc(limit=2)}
            f.write(json.dumps(out).encode() + b"\n")
            f.flush()

    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    print(f"agent ready on {path}", flush=True)
    if cfg.get("reportRunning", True):
        client.update_state(state="RUNNING")
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.exit(1)
