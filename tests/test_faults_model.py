"""Fault rehearsal: a bad model deployed to the running suite (docs/reliability.md).

The whole suite runs under `ggvision nucleus` with the demo detector (com.ggvision.Model.SyntheticDetector)
serving a synthetic camera. Four bad versions of the model component are deployed, one after the other, the
way a rollout would: a model.onnx that does not match its manifest's sha256, a manifest whose input shape the
graph does not have, a graph whose outputs are NaN, and a graph whose run never ends. Each must be refused with a
`model-refused` alert naming the reason while the old model keeps serving every frame; then a good version is
deployed and serves (a hung load must not block later ones). The closing count: every event ended, put and
uploaded once; no component restarted. The figures it prints are the ones docs/reliability.md reports.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import onnx
import pytest
from closing_dev import (
    AGENT,
    AGENT_ACL,
    CAMERA,
    MODEL,
    MODEL_DIR,
    close_out,
    got,
    model_version,
    restarts,
    start_suite,
    suite_recipes,
)
from harness import Runtime, wait_until
from inference_dev import model_component
from onnx_graphs import hanging, with_nan_outputs
from uplink_dev import free_port

from ggvision.model.loader import write_model_dir

WARMUP_TIMEOUT_S = 3.0  # the hung model is stopped and refused after this (the product default is 900 s)


def _version(tmp: Path, recipes: Path, artifacts: Path, version: str, bad: str | None) -> None:
    """Model component `version`: the demo detector, made bad the way `bad` says."""
    man = json.loads((MODEL_DIR / "manifest.json").read_text())
    man = {k: v for k, v in man.items() if k != "sha256"} | {"version": version}
    graph = onnx.load(MODEL_DIR / "model.onnx")
    if bad == "nan-outputs":
        graph = with_nan_outputs(graph)
    elif bad == "hangs":
        graph = hanging(graph)
    elif bad == "wrong-input-shape":
        man["input"] = man["input"] | {"shape": [-1, 3, 224, 320]}  # the graph takes 192x320
    folder = write_model_dir(tmp / version, graph, man)
    if bad == "wrong-digest":
        with open(folder / "model.onnx", "ab") as f:
            f.write(b"\0")  # replaced or corrupted in transit: the manifest's sha256 no longer matches
    model_component(recipes, artifacts, MODEL, version, folder)


BAD = {"1.1.0": ("wrong-digest", "sha256 mismatch"),
       "1.2.0": ("wrong-input-shape", "axis 2: 192 vs 224"),
       "1.3.0": ("nan-outputs", "NaN or infinite value"),
       "1.4.0": ("hangs", f"did not finish within {WARMUP_TIMEOUT_S:g} s")}
GOOD = "1.5.0"


@pytest.mark.timeout(300)
def test_bad_models_are_refused_while_the_old_one_serves_every_frame(tmp_path: Path) -> None:
    port = free_port()
    rt = Runtime(tmp_path, [AGENT], config={AGENT: {"accessControl": AGENT_ACL}})
    names = suite_recipes(rt, port, inference={"warmupTimeoutS": WARMUP_TIMEOUT_S},
                          health={"hungAfterS": 10})
    recipes = tmp_path / "model-recipes"
    for version, (bad, _) in BAD.items():
        _version(tmp_path / "models", recipes, rt.artifacts, version, bad)
    _version(tmp_path / "models", recipes, rt.artifacts, GOOD, None)
    old = model_version()
    t_start = time.monotonic()
    figures: dict[str, dict[str, Any]] = {}
    try:
        a = start_suite(rt, names, {"det": f"ggvision/v1/detections/{CAMERA}", "alerts": "ggvision/v1/alerts/+",
                                    "metrics": "ggvision/v1/metrics/inference"})
        wait_until(lambda: [e for e in got(a, "events") if e["kind"] == "end"], 60, interval=0.2,
                   what="the suite's first finished event")

        def refusals() -> list[dict[str, Any]]:
            return [x for x in got(a, "alerts") if x.get("alert") == "model-refused"]

        for version, (bad, words) in BAD.items():
            t0 = time.monotonic()
            d = rt.deploy(recipe_directory_path=str(recipes), artifacts_directory_path=str(rt.artifacts),
                          root_component_versions_to_add={MODEL: version})
            assert d.status == "SUCCEEDED", d.deployment_status_details
            alert = wait_until(lambda v=version: [x for x in refusals() if f"{MODEL} {v}" in x["message"]], 60,
                               interval=0.2, what=f"{version} ({bad}) refused")[0]
            assert words in alert["message"] and f"still serving synthetic-detector {old}" in alert["message"], alert
            figures[bad] = {"refused_after_s": round(time.monotonic() - t0, 1), "reason": alert["message"]}
        t_good = time.monotonic()
        d = rt.deploy(recipe_directory_path=str(recipes), artifacts_directory_path=str(rt.artifacts),
                      root_component_versions_to_add={MODEL: GOOD})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        wait_until(lambda: [x for x in got(a, "det") if x["model"]["version"] == GOOD], 60, interval=0.2,
                   what=f"the good version {GOOD} serving after the hung one")
        t_recovered = time.monotonic() - t_good
        metric = wait_until(lambda: [m for m in got(a, "metrics") if m.get("id") == "detector"
                                     and m["version"] == GOOD], 10, interval=0.2, what="metrics of the good version")[0]
        dets = got(a, "det")
        closing = close_out(rt, a, names)
        seen_restarts = restarts(port)
        states = rt.states()
        alerts = got(a, "alerts")
    finally:
        rt.cleanup()
    total_s = time.monotonic() - t_start
    # -- what a user sees --------------------------------------------------------------------------------------
    versions = [x["model"]["version"] for x in dets]
    first_good = versions.index(GOOD)
    assert set(versions[:first_good]) == {old} and set(versions[first_good:]) == {GOOD}, "one switch, to the good one"
    stamps = [x["timestamp"] for x in dets]
    seqs = [x["sequence"] for x in dets]
    gap = max(b - c for c, b in zip(stamps, stamps[1:], strict=False))
    assert gap < 2.0, f"detections stopped for {gap:.1f} s while bad models were refused"
    assert len(seqs) == len(set(seqs)), "a frame answered twice"
    assert all(x["detections"] is not None for x in dets)
    assert metric["load_errors"] == 4 and f"{MODEL} 1.4.0" in metric["last_error"], metric
    assert not any(x.get("alert") == "inference-hung" for x in alerts), "the old model served: nothing hung"
    assert not any(seen_restarts.values()), seen_restarts
    assert str(states[names["inference"]]) == "RUNNING"
    assert rt.log(names["inference"]).count("run: starting") == 1
    assert closing.lost == 0 and closing.duplicates == 0, (closing.lost, closing.duplicates)
    assert closing.news, "events happened during the rehearsal"
    refused = ", ".join(f"{k} after {v['refused_after_s']} s" for k, v in figures.items())
    print(f"\nbad models: refused {refused}; "
          f"longest gap between detections {gap:.2f} s over {len(dets)} frames ({len(set(seqs))} distinct); "
          f"good {GOOD} serving {t_recovered:.1f} s after its deployment began; events {len(closing.news)}, "
          f"ends lost {closing.lost}, duplicate uploads {closing.duplicates}; restarts {seen_restarts}; "
          f"whole test {total_s:.0f} s")
    for k, v in figures.items():
        print(f"  {k}: ...{v['reason'].split('ModelError: ')[-1][-200:]}")
