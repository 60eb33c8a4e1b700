"""The whole suite (Capture → Inference → Filter → Uplink → Health) under the test runtime, for the model,
camera and clock fault rehearsals (tests/test_faults_{model,camera,clock}.py, docs/reliability.md; the storage,
power and network ones use tests/suite_dev.py — the two grew apart and are to be folded into one): the recipes
of one camera's suite, what a rehearsal watches (local topics through the test agent, Health's Prometheus page,
the directory bucket), and the closing count every rehearsal makes — every event ended, put and uploaded; lost
and duplicated records.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import REPO, Agent, Runtime, wait_until
from suite_dev import scrape

CAMERA = "door"
AGENT = "com.ggvision.test.Agent"
MODEL = "com.ggvision.Model.SyntheticDetector"
MODEL_DIR = REPO / "components" / MODEL
AGENT_ACL = {"aws.greengrass.ipc.pubsub": {f"{AGENT}:pubsub:1": {
    "operations": ["aws.greengrass#SubscribeToTopic"], "resources": ["ggvision/v1/*"]}}}
SYNTHETIC = {"type": "synthetic", "width": 320, "height": 180, "fps": 10, "seed": 3, "objects": 4}


def model_version() -> str:
    return str(json.loads((MODEL_DIR / "manifest.json").read_text())["version"])


def suite_recipes(rt: Runtime, prom_port: int, source: dict[str, Any] | None = None, *,
                  camera: dict[str, Any] | None = None, capture: dict[str, Any] | None = None,
                  inference: dict[str, Any] | None = None, filter_: dict[str, Any] | None = None,
                  uplink: dict[str, Any] | None = None, health: dict[str, Any] | None = None) -> dict[str, str]:
    """The five components' dev recipes and the demo model component, for camera CAMERA (`source`: its
    source, default the synthetic camera; `camera`: more of its Capture settings). Each dict given is merged
    into that component's configuration. Returns role -> component name."""
    from capture_dev import NAME as CAPTURE
    from capture_dev import capture_dev_recipe
    from filter_dev import NAME as FILTER
    from filter_dev import filter_dev_recipe
    from health_dev import NAME as HEALTH
    from health_dev import health_dev_recipe
    from inference_dev import NAME as INFERENCE
    from inference_dev import inference_dev_recipe, model_component
    from uplink_dev import NAME as UPLINK
    from uplink_dev import uplink_dev_recipe

    model_component(rt.recipes, rt.artifacts, MODEL, model_version(), MODEL_DIR)
    cam = {"source": source or SYNTHETIC, "detectFps": 5,
           "record": {"enabled": True, "segmentSeconds": 4, "retainS": 30, "dir": "segments"}, **(camera or {})}
    capture_dev_recipe(rt.recipes, cameras={CAMERA: cam}, **{"metricsPeriodS": 1, **(capture or {})})
    inference_dev_recipe(rt.recipes, **{"models": {"detector": {"component": MODEL, "cameras": ["*"]}},
                                        "provider": "cpu", "threads": 1, "metricsPeriodS": 1, **(inference or {})})
    filter_dev_recipe(rt.recipes, cameras={CAMERA: {"policy": "events", "clipsFor": "all", "budgetKbps": 0,
                                                    "tracker": {"maxAgeS": 1.5}}},
                      **{"metricsPeriodS": 1, **(filter_ or {})})
    uplink_dev_recipe(rt.recipes, **{"iot": {"enabled": False}, "metricsPeriodS": 1, "backoffMaxS": 2,
                                     **(uplink or {})})
    health_dev_recipe(rt.recipes, **{"promPort": prom_port, "promBind": "127.0.0.1", "periodS": 1,
                                     "summaryPeriodS": 3600, "hungAfterS": 600, "inferenceComponent": INFERENCE,
                                     **(health or {})})
    return {"capture": CAPTURE, "inference": INFERENCE, "filter": FILTER, "uplink": UPLINK, "health": HEALTH}


def start_suite(rt: Runtime, names: dict[str, str], topics: dict[str, str]) -> Agent:
    """Start the runtime, wait for every component, subscribe the agent: subscription id -> topic."""
    rt.start(wait_for={AGENT: ("RUNNING",)}, timeout=90)
    for name in names.values():
        rt.wait_state(name, ("RUNNING",), 90)
    a = rt.agent()
    for sub, topic in {"events": f"ggvision/v1/events/{CAMERA}", "puts": "ggvision/v1/uplink/put", **topics}.items():
        a.call("subscribe", id=sub, topic=topic)
    return a


def got(a: Agent, sub: str) -> list[dict[str, Any]]:
    """Every JSON message the agent has received on subscription `sub` so far."""
    return [e["json"] for e in a.call("events", id=sub, timeout=0.05) if "json" in e]


def events(a: Agent, kind: str) -> list[dict[str, Any]]:
    return [e for e in got(a, "events") if e["kind"] == kind]


def restarts(port: int) -> dict[str, float]:
    """component -> restarts Health has seen (ggvision_component_restarts_total)."""
    return {dict(k[1])["component"]: v for k, v in scrape(port).items() if k[0] == "ggvision_component_restarts_total"}


def archived(bucket: Path) -> list[dict[str, Any]]:
    """The records the Uplink's archive lane put into the directory bucket (results/iot-rules/...)."""
    items = []
    for f in sorted((bucket / "results" / "iot-rules").rglob("*.json")):
        items += json.loads(f.read_text())["items"]
    return items


@dataclass
class Closing:
    """What the closing count found: events (id -> `new`), ends (id -> `end`), their archived records."""

    news: dict[str, dict[str, Any]]
    ends: dict[str, dict[str, Any]]
    uploaded: list[dict[str, Any]]

    @property
    def lost(self) -> int:
        return len(set(self.news) - set(self.ends))

    @property
    def duplicates(self) -> int:
        """Records uploaded more than once (the same record id twice in the archive)."""
        return sum(n - 1 for n in Counter(i["id"] for i in self.uploaded).values() if n > 1)


def close_out(rt: Runtime, a: Agent, names: dict[str, str], timeout: float = 60) -> Closing:
    """Stop Capture (no new events; the open ones end), then wait for an `end` of every event, published, put to
    the Uplink and uploaded to the directory bucket."""
    rt.client.stop_component(component_name=names["capture"])
    news = {e["event_id"]: e for e in events(a, "new")}

    def all_of(found: dict[str, Any]) -> dict[str, Any] | None:
        return found if set(news) <= set(found) else None

    ends = wait_until(lambda: all_of({e["event_id"]: e for e in events(a, "end")}), timeout, interval=0.5,
                      what="an end for every event")
    wait_until(lambda: all_of({p["payload"]["event_id"]: p for p in got(a, "puts") if p.get("priority") == "results"
                               and p["payload"].get("kind") == "end"}), timeout, interval=0.5,
               what="every end put to the Uplink")
    bucket = rt.root / "work" / names["uplink"] / "bucket"
    uploads = wait_until(lambda: (lambda items: items if all_of(
        {i["payload"]["event_id"]: i for i in items if i["payload"].get("kind") == "end"}) else None)(
        archived(bucket)), timeout, interval=0.5, what="every end record uploaded")
    return Closing(news, ends, [i for i in uploads if "event_id" in i["payload"]])
