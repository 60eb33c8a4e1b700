"""The committed demo models work through the runtime library, and their components build from the manifests.

No torch or scikit-learn here: the models are the committed ONNX files, run by onnxruntime through
ggvision.model.loader.load_model, as the Inference component runs them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from gglocal.nucleus.recipeparser import parse_recipe
from gglocal.packaging.build import RecipeSchemas, check_built, load_built
from gglocal.packaging.project import load_project
from ggvision.model.fire_features import FEATURE_NAMES, feature_vector
from ggvision.model.loader import load_model
from ggvision.model.manifest import load_manifest, sha256_file
from ggvision.sim.scenes import SyntheticScene
from ggvision.sim.thermal import ThermalSimulator
from model_registry.component import (
    ComponentBuildError,
    build_gdk_project,
    build_model_component,
    component_name,
    model_recipe,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO.parent / "shared" / "schemas"
DETECTOR = REPO / "components" / "com.ggvision.Model.SyntheticDetector"
FIRE = REPO / "components" / "com.ggvision.Model.FireRisk"
MODEL_DIRS = [pytest.param(DETECTOR, id="detector"), pytest.param(FIRE, id="fire-risk")]


def schemas() -> RecipeSchemas:
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} is not available (shared/ is not part of the repository)")
    return RecipeSchemas.load(SCHEMAS)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    return inter / (float(np.prod(a[2:] - a[:2])) + float(np.prod(b[2:] - b[:2])) - inter)


# --------------------------------------------------------------------------- the detector


@pytest.fixture(scope="module")
def detector():
    model = load_model(DETECTOR, provider="cpu", threads=1)
    yield model
    model.close()


@pytest.mark.parametrize(("size", "seed"), [((1280, 720), 424242), ((640, 360), 424243)])
def test_detector_finds_the_objects_of_held_out_frames(detector, size: tuple[int, int], seed: int) -> None:
    scene = SyntheticScene(*size, fps=10.0, seed=seed, objects=5)  # seeds far from the training seeds
    frames = [scene.render(i) for i in (3, 120, 480)]
    results, _ = detector.infer([f for f, _ in frames])
    found = total = 0
    for result, (_, truth) in zip(results, frames, strict=True):
        dets = result["detections"]
        assert all(d["label"] in ("person", "car", "bicycle") and 0 <= d["score"] <= 1 for d in dets)
        for ob in truth:
            total += 1
            found += any(d["label"] == ob.label and iou(np.array(d["box"]), np.array(ob.box)) >= 0.5 for d in dets)
        assert len(dets) <= len(truth) + 2, dets  # few false alarms
    assert found >= 0.8 * total, f"{found} of {total} objects found"


def test_detector_sees_nothing_in_an_empty_scene(detector) -> None:
    frame, truth = SyntheticScene(1280, 720, seed=424244, objects=0).render(7)
    assert truth == []
    results, _ = detector.infer([frame])
    assert results[0]["detections"] == []


# --------------------------------------------------------------------------- fire risk


@pytest.fixture(scope="module")
def fire_model():
    model = load_model(FIRE, provider="cpu", threads=1)
    yield model
    model.close()


def fire_probability(model, scenario: str, t: float, seed: int = 777) -> float:
    sim = ThermalSimulator(scenario, seed)
    results, _ = model.infer([feature_vector(sim.frame(t)[:, :, None], sim.gas(t).to_dict())])
    return results[0]["outputs"]["fire_probability"]


@pytest.mark.parametrize("t", [20.0, 90.0, 240.0])
def test_fire_is_flagged(fire_model, t: float) -> None:
    assert fire_probability(fire_model, "fire", t) > 0.9


@pytest.mark.parametrize("scenario", ["normal", "heater", "sunlight", "cooking"])
def test_hot_but_harmless_scenes_are_not_fire(fire_model, scenario: str) -> None:
    for t in (30.0, 300.0, 800.0):
        assert fire_probability(fire_model, scenario, t) < 0.1, (scenario, t)


def test_fire_features_shape_and_order() -> None:
    assert len(FEATURE_NAMES) == 18 == len(set(FEATURE_NAMES))
    assert FEATURE_NAMES[-3:] == ("co2_ppm", "temperature_c", "humidity_pct")
    sim = ThermalSimulator("cooking", 5)
    frame, gas = sim.frame(200.0), sim.gas(200.0)
    v = feature_vector(frame, gas)  # a GasReading works as well as a gas/1.0 mapping
    assert v.shape == (18,) and v.dtype == np.float32 and np.all(np.isfinite(v))
    w = feature_vector(frame[:, :, None], gas.to_dict())  # as the Inference component gets them (gas rounded)
    assert np.array_equal(v[:15], w[:15]) and np.allclose(v[15:], w[15:], atol=0.1)
    assert v[FEATURE_NAMES.index("t_max")] == pytest.approx(float(frame.max()))
    assert load_manifest(FIRE).input.features == FEATURE_NAMES  # the model reads them in this order


@pytest.mark.parametrize(("frame", "gas", "message"), [
    (np.zeros((120, 161), np.float32), {}, r"shape \(120, 160\)"),
    (np.zeros((120, 160, 3), np.float32), {}, "shape"),
    (np.full((120, 160), np.nan, np.float32), {}, "NaN"),
    (np.zeros((120, 160), np.uint16), {}, "dtype"),
    (np.full((120, 160), 5000.0, np.float32), {}, "outside"),
    ([[0.0] * 160] * 120, {}, "numpy array"),
    (None, {"co2_ppm": 500.0, "temperature_c": 21.0}, "missing 'humidity_pct'"),
    (None, {"co2_ppm": float("nan"), "temperature_c": 21.0, "humidity_pct": 40.0}, "'co2_ppm' must be a finite"),
    (None, {"co2_ppm": "500", "temperature_c": 21.0, "humidity_pct": 40.0}, "'co2_ppm' must be a finite"),
    (None, 42, "expected a mapping"),
])
def test_fire_features_refuse_bad_input(frame, gas, message: str) -> None:
    good_gas = {"co2_ppm": 500.0, "temperature_c": 21.0, "humidity_pct": 40.0}
    frame = np.full((120, 160), 21.0, np.float32) if frame is None else frame
    with pytest.raises(ValueError, match=message):
        feature_vector(frame, gas if gas != {} else good_gas)


def test_cooking_is_hot_and_steady_with_moderate_co2() -> None:
    sim = ThermalSimulator("cooking", seed=2)
    assert np.array_equal(sim.frame(100.0), ThermalSimulator("cooking", seed=2).frame(100.0))
    early, late = float(sim.frame(5).max()), float(sim.frame(600).max())
    assert early < 60 and 140 < late < 240  # a pan warming up, hotter than a heater, cooler than a fire
    assert (sim.frame(600) > 100).sum() < 600  # a pan-sized hot area, not a spreading plume
    co2 = [sim.gas(t).co2_ppm for t in range(0, 900, 5)]
    assert max(co2) < 1300 and np.mean(co2[-20:]) > np.mean(co2[:5]) + 200
    assert sim.gas(900).humidity_pct > sim.gas(0).humidity_pct  # steam, where a fire dries the air


# --------------------------------------------------------------------------- components from manifests


@pytest.mark.parametrize("model_dir", MODEL_DIRS)
def test_committed_manifest_matches_its_model(model_dir: Path) -> None:
    m = load_manifest(model_dir)
    assert sha256_file(model_dir / m.file) == m.sha256
    # fire-risk 1.1.0: the model the candidates' rule picked (docs/models-demo.md), after 1.0.0's single GB model
    assert (m.version, m.parent) in {("1.0.0", None), ("1.1.0", "1.0.0")} and m.created_by == "model_registry/demo"
    assert (model_dir / m.file).stat().st_size < 3_000_000
    assert {"precision", "recall"} <= set(m.metrics) and ("map50" in m.metrics or "f1" in m.metrics)


@pytest.mark.parametrize("model_dir", MODEL_DIRS)
def test_committed_recipe_is_the_generated_one(model_dir: Path) -> None:
    project = load_project(model_dir)
    assert yaml.safe_load(project.recipe_file.read_text()) == model_recipe(model_dir, project.name)
    assert project.version == load_manifest(model_dir).version


@pytest.mark.parametrize("model_dir", MODEL_DIRS)
def test_build_model_component_layout_digests_and_schema(model_dir: Path, tmp_path: Path) -> None:
    recipe = build_model_component(model_dir, tmp_path)
    m = load_manifest(model_dir)
    name = component_name(m.name)
    assert recipe["ComponentName"] == name and recipe["ComponentVersion"] == m.version
    (manifest,) = recipe["Manifests"]
    assert manifest["Lifecycle"] == {}
    built = tmp_path / "artifacts" / name / m.version
    assert sorted(p.name for p in built.iterdir()) == ["manifest.json", "model.onnx"]
    for art in manifest["Artifacts"]:
        file = built / art["URI"].rsplit("/", 1)[-1]
        assert art["Algorithm"] == "SHA-256"
        assert art["Digest"] == base64.b64encode(hashlib.sha256(file.read_bytes()).digest()).decode()
    config = recipe["ComponentConfiguration"]["DefaultConfiguration"]["model"]
    assert (config["name"], config["family"], config["labels"]) == (m.name, m.family, len(m.labels))
    doc = yaml.safe_load((tmp_path / "recipes" / f"{name}-{m.version}.yaml").read_text())
    assert doc == recipe
    schemas().validate(doc, "built recipe")
    assert parse_recipe(doc, "built recipe").name == name


def test_component_names_come_from_the_manifest() -> None:
    assert component_name("synthetic-detector") == "com.ggvision.Model.SyntheticDetector"
    assert component_name("fire_risk v2") == "com.ggvision.Model.FireRiskV2"
    with pytest.raises(ComponentBuildError, match="no letters"):
        component_name("--")


def test_gdk_build_of_a_model_component(tmp_path: Path) -> None:
    folder = tmp_path / DETECTOR.name
    shutil.copytree(DETECTOR, folder, ignore=shutil.ignore_patterns("greengrass-build"))
    build_gdk_project(folder)
    project = load_project(folder)
    check_built(load_built(project), schemas())  # what `ggvision build` checks after every build
    assert (project.artifacts_build_dir / "model.onnx").read_bytes() == (DETECTOR / "model.onnx").read_bytes()


def test_tampered_model_or_stale_recipe_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / FIRE.name
    shutil.copytree(FIRE, folder, ignore=shutil.ignore_patterns("greengrass-build"))
    data = json.loads((folder / "manifest.json").read_text())
    data["description"] = "changed"
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ComponentBuildError, match="recipe.yaml: out of date"):
        build_gdk_project(folder)
    with (folder / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ComponentBuildError, match="sha256 .* does not match"):
        build_model_component(folder, tmp_path / "out")
