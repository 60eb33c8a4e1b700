"""The real suite (Capture → Inference → Filter → Uplink, and Health) as the fault rehearsals run it under the test
runtime (tests/test_faults_*.py; the full-disk one, tests/test_reliability.py, keeps its own copy): recipes from the
product's, one synthetic camera, and what a test reads back — Health's Prometheus page, the directory bucket's
archive of records, the agent's subscriptions.

`write_suite(rt, parts, ...)` writes the recipes of the parts named (a row leaves out what it does not need);
`overrides` merges per part into the configuration written. `run_as_user` prefixes each component's Run with
`setpriv` dropping CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from its bounding set: the components
run as root without the capabilities that let root ignore file modes, as a Greengrass nucleus runs them as
`ggc_user` (posixUser), while the runtime itself keeps them (the local runtime has no runAs).
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path
from typing import Any

from harness import REPO, Runtime

CAMERA = "door"
AGENT = "com.ggvision.test.Agent"
SUB = "aws.greengrass#SubscribeToTopic"
AGENT_ACL = {"aws.greengrass.ipc.pubsub": {f"{AGENT}:pubsub:1": {"operations": [SUB], "resources": ["ggvision/v1/*"]}},
             "aws.greengrass.ipc.mqttproxy": {f"{AGENT}:mqtt:1": {"operations": ["*"], "resources": ["ggvision/#"]}}}
MODEL = "com.ggvision.Model.SyntheticDetector"
RESERVE = 1 << 20  # small test filesystems: the free-space reserves of a real disk would stop media at once
ALL = ("capture", "inference", "filter", "uplink", "health")
NO_FILE_MODE_BYPASS = "setpriv --bounding-set -dac_override,-dac_read_search,-fowner -- "


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        base[k] = _merge(dict(base.get(k) or {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def write_suite(rt: Runtime, parts: tuple[str, ...] = ALL, prom_port: int = 0, run_as_user: bool = False,
                overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """Recipes of the suite's `parts` into rt.recipes (and the model component); part -> component name."""
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

    over = overrides or {}
    names = {"capture": CAPTURE, "inference": INFERENCE, "filter": FILTER, "uplink": UPLINK, "health": HEALTH}
    configs: dict[str, dict[str, Any]] = {
        "capture": {"cameras": {CAMERA: {
            "source": {"type": "synthetic", "width": 320, "height": 180, "fps": 10, "seed": 3, "objects": 4},
            "detectFps": 5, "record": {"enabled": True, "segmentSeconds": 4, "retainS": 60, "dir": "segments",
                                       "minFreeBytes": RESERVE}}}, "metricsPeriodS": 1},
        "inference": {"models": {"detector": {"component": MODEL, "cameras": ["*"]}}, "provider": "cpu",
                      "threads": 1, "metricsPeriodS": 2},
        "filter": {"cameras": {CAMERA: {"policy": "events", "clipsFor": "all", "budgetKbps": 0,
                                        "tracker": {"maxAgeS": 1.5}}}, "metricsPeriodS": 1, "minFreeBytes": RESERVE},
        "uplink": {"iot": {"enabled": False}, "minFreeBytes": RESERVE, "metricsPeriodS": 1, "backoffMaxS": 2},
        "health": {"promPort": prom_port, "promBind": "127.0.0.1", "periodS": 1, "summaryPeriodS": 3600,
                   "hungAfterS": 600, "inferenceComponent": INFERENCE},
    }
    writers = {"capture": capture_dev_recipe, "inference": inference_dev_recipe, "filter": filter_dev_recipe,
               "uplink": uplink_dev_recipe, "health": health_dev_recipe}
    if "inference" in parts:
        model_dir = REPO / "components" / MODEL
        version = json.loads((model_dir / "manifest.json").read_text())["version"]
        model_component(rt.recipes, rt.artifacts, MODEL, version, model_dir)
    for part in parts:
        path = writers[part](rt.recipes, **_merge(configs[part], over.get(part, {})))
        if run_as_user:
            if shutil.which("setpriv") is None:
                import pytest

                pytest.skip("setpriv (util-linux) is not installed")
            doc = json.loads(path.read_text())
            life = doc["Manifests"][0]["Lifecycle"]
            life["Run"] = NO_FILE_MODE_BYPASS + life["Run"]
            path.write_text(json.dumps(doc))
    return {p: names[p] for p in parts}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Health's Prometheus page: (family, sorted labels) -> value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if m and not line.startswith("#"):
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def degraded(port: int) -> dict[str, list[str]]:
    """component -> the storage conditions Health shows (ggvision_storage_degraded == 1); {} when it cannot be read."""
    try:
        metrics = scrape(port)
    except OSError:
        return {}
    out: dict[str, list[str]] = {}
    for (name, labels), v in metrics.items():
        if name == "ggvision_storage_degraded" and v == 1:
            d = dict(labels)
            out.setdefault(d["component"], []).append(d["condition"])
    return out


def archived(bucket: Path) -> list[dict[str, Any]]:
    """The records the Uplink's archive lane put into the directory bucket (results/iot-rules/...)."""
    items = []
    for f in sorted((bucket / "results" / "iot-rules").rglob("*.json")):
        try:
            items += json.loads(f.read_text())["items"]
        except (OSError, ValueError):  # being written (the sink writes a temporary name and renames it)
            continue
    return items


def subscribe(agent: Any, **subs: str) -> None:
    for sub, topic in subs.items():
        agent.call("subscribe", id=sub, topic=topic)


def received(agent: Any, sub: str) -> list[dict[str, Any]]:
    """Every JSON message the agent's subscription `sub` got so far."""
    return [e["json"] for e in agent.call("events", id=sub, timeout=0.05) if "json" in e]


def start_suite(rt: Runtime, names: dict[str, str], timeout: float = 90) -> Any:
    """Start (or restart, on the same root) the runtime and wait for the agent and every part; the agent."""
    rt.start(wait_for={AGENT: ("RUNNING",)}, timeout=timeout)
    for name in names.values():
        rt.wait_state(name, ("RUNNING",), timeout)
    return rt.agent()


def acked(acks: list[dict[str, Any]], puts: dict[str, dict[str, Any]], destination: str) -> set[str]:
    """Ids of the puts to `destination` ("iot": records, "s3": media) the Uplink acknowledged as persisted."""
    return {a["id"] for a in acks if a["status"] == "persisted" and puts.get(a["id"], {}).get("destination")
            == destination}


def bucket_objects(bucket: Path) -> list[str]:
    """File names of the media objects in the directory bucket (one per upload; the archive of records aside)."""
    return [f.name for f in bucket.rglob("*") if f.is_file() and "iot-rules" not in f.parts
            and not f.name.startswith(".")]
