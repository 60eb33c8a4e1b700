#!/usr/bin/env python3
"""Train the demo fire-risk classifier on simulated thermal + gas rows and write model.onnx + manifest.json.

    .venv/bin/python -m model_registry.demo.train_fire_risk [--out DIR] [--seeds N]

Rows: ggvision.model.fire_features.feature_vector of ThermalSimulator frames and gas readings for
the scenarios normal, heater, sunlight, cooking (label 0) and fire (label 1, from ignition on).
Training seeds 0..N-1, held-out seeds from 10000. Model: scikit-learn GradientBoostingClassifier,
exported with skl2onnx (no ZipMap: "probabilities" is an [N, 2] float tensor, column 1 = fire).
Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx.helper
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import f1_score, precision_score, recall_score

from ggvision.model.fire_features import FEATURE_NAMES
from ggvision.sim.thermal import SCENARIOS
from model_registry.demo.fire_data import FIRE, make_rows
from model_registry.demo.model_dir import utc_now, write_model_dir

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "components" / "com.ggvision.Model.FireRisk"
EVAL_SEED0 = 10000
THRESHOLD = 0.5


def train(x: np.ndarray, y: np.ndarray, seed: int) -> GradientBoostingClassifier:
    # Not HistGradientBoosting: skl2onnx 1.19.1 fails to convert it from scikit-learn 1.7.2.
    clf = GradientBoostingClassifier(n_estimators=120, max_depth=4, learning_rate=0.1, subsample=0.5,
                                     random_state=seed)
    return clf.fit(x, y)


def _ints_not_bools() -> None:
    """skl2onnx 1.19.1 writes nodes_missing_value_tracks_true as Python bools; protobuf >= 7 refuses bools in
    an int list ("Expected an int, got a boolean"). Coerce them where ONNX attributes are made."""
    make_attribute = onnx.helper.make_attribute
    if getattr(make_attribute, "ints_not_bools", False):
        return

    def patched(key: str, value: object, *args: object, **kwargs: object) -> onnx.AttributeProto:
        if isinstance(value, list | tuple) and value and all(isinstance(v, bool | np.bool_) for v in value):
            value = [int(v) for v in value]
        return make_attribute(key, value, *args, **kwargs)

    patched.ints_not_bools = True  # type: ignore[attr-defined]
    onnx.helper.make_attribute = patched


def export(clf: GradientBoostingClassifier) -> bytes:
    _ints_not_bools()
    onx = to_onnx(clf, np.zeros((1, len(FEATURE_NAMES)), np.float32), options={id(clf): {"zipmap": False}},
                  target_opset={"": 17, "ai.onnx.ml": 3}, final_types=None)
    onx.graph.input[0].name = "features"
    for node in onx.graph.node:  # the converter calls its input "X"; the manifest calls it "features"
        node.input[:] = ["features" if name == "X" else name for name in node.input]
    return onx.SerializeToString()


def evaluate(onnx_bytes: bytes, x: np.ndarray, y: np.ndarray, scenario: np.ndarray, t: np.ndarray) -> dict:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    prob = session.run(["probabilities"], {"features": x})[0][:, 1]
    pred = (prob >= THRESHOLD).astype(np.int64)
    metrics: dict = {
        "precision": round(float(precision_score(y, pred)), 4),
        "recall": round(float(recall_score(y, pred)), 4),
        "f1": round(float(f1_score(y, pred)), 4),
        "eval_rows": int(len(y)),
        "threshold": THRESHOLD,
    }
    for name in SCENARIOS:
        m = scenario == name
        if name == FIRE:
            metrics["recall_fire"] = round(float(pred[m].mean()), 4)
            early = m & (t < 30)
            metrics["recall_fire_first_30s"] = round(float(pred[early].mean()), 4)
        else:
            metrics[f"false_positive_rate_{name}"] = round(float(pred[m].mean()), 5)
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model directory to write (default: %(default)s)")
    ap.add_argument("--seeds", type=int, default=210, help="training seeds per scenario (100 rows each)")
    ap.add_argument("--eval-seeds", type=int, default=40, help="held-out seeds per scenario (100 rows each)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.monotonic()
    rows = make_rows(range(args.seeds), 100, seed=args.seed)
    held = make_rows(range(EVAL_SEED0, EVAL_SEED0 + args.eval_seeds), 100, seed=args.seed + 1)
    gen_s = time.monotonic() - t0
    print(f"{len(rows.y)} training rows ({int(rows.y.sum())} fire), {len(held.y)} held-out rows "
          f"({gen_s:.0f} s)", flush=True)
    clf = train(rows.x, rows.y, args.seed)
    onnx_bytes = export(clf)
    train_s = time.monotonic() - t0
    metrics = evaluate(onnx_bytes, held.x, held.y, held.scenario, held.t)
    metrics.update(train_rows=int(len(rows.y)), train_wall_s=round(train_s), data_wall_s=round(gen_s))
    print("metrics:", metrics, flush=True)
    manifest = {
        "schema": "model-manifest/1.0", "name": "fire-risk", "version": "1.0.0",
        "family": "tabular", "task": "tabular", "file": "model.onnx",
        "input": {"name": "features", "shape": [-1, len(FEATURE_NAMES)], "dtype": "float32",
                  "features": list(FEATURE_NAMES)},
        "labels": ["no_fire", "fire"],
        "thresholds": {"score": THRESHOLD},
        "decoder": {"probability_output": "probabilities", "positive_index": 1,
                    "outputs": {"fire_probability": "positive", "label": ["no_fire", "fire"]},
                    "features": "ggvision.model.fire_features"},
        "metrics": metrics, "parent": None, "created_by": "model_registry/demo", "created_at": utc_now(),
        "description": "Demo fire-risk classifier on one thermal frame + one SCD41 reading (features: "
                       "ggvision.model.fire_features); trained on simulated scenarios by "
                       "model_registry/demo/train_fire_risk.py. Not for real fire safety.",
    }
    write_model_dir(args.out, onnx_bytes, manifest)
    print(f"wrote {args.out} ({len(onnx_bytes) / 1e3:.0f} kB) in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
