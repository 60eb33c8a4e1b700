"""The fire-risk candidates: three diverse members, two ways to combine them, their ONNX export and scores.

Members: gradient-boosted trees (the 1.0.0 model), a logistic regression and a small MLP (both on standardised
features), so errors differ in kind: axis-aligned splits, one hyperplane, a smooth non-linear surface. Combiners:
soft voting (the mean of the members' fire probabilities) and stacking (a logistic regression on the members'
out-of-fold probabilities). Every candidate is exported with skl2onnx into one graph with the house's tabular
contract (input `features [N, 18]`, outputs `label [N]` and `probabilities [N, 2]`, column 1 = fire), so the
FireRisk model component runs an ensemble exactly as it runs one model.

Scores (`score`): ROC-AUC, recall at a 1 % false-alarm rate (the ROC curve's true-positive rate where its
false-positive rate is 0.01, interpolated) and the Brier score (mean squared error of the probability: calibration
and sharpness together), always through onnxruntime, i.e. what a device would compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx.helper
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.base import ClassifierMixin
from sklearn.ensemble import GradientBoostingClassifier, StackingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ggvision.model.fire_features import FEATURE_NAMES

FALSE_ALARM_RATE = 0.01
MEMBERS = ("gradient_boosting", "logistic_regression", "mlp")
COMBINERS = ("soft_voting", "stacking")


def members(seed: int) -> dict[str, ClassifierMixin]:
    # Not HistGradientBoosting: skl2onnx 1.19.1 fails to convert it from scikit-learn 1.7.2.
    return {
        "gradient_boosting": GradientBoostingClassifier(n_estimators=120, max_depth=4, learning_rate=0.1,
                                                        subsample=0.5, random_state=seed),
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000)),
        "mlp": make_pipeline(StandardScaler(), MLPClassifier((32, 16), max_iter=400, early_stopping=True,
                                                             random_state=seed)),
    }


def combiners(seed: int) -> dict[str, ClassifierMixin]:
    return {
        "soft_voting": VotingClassifier(list(members(seed).items()), voting="soft", flatten_transform=False),
        "stacking": StackingClassifier(list(members(seed).items()), final_estimator=LogisticRegression(),
                                       stack_method="predict_proba", cv=3),
    }


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


def export(clf: ClassifierMixin) -> bytes:
    """One ONNX graph: `features` in, `label` and `probabilities` out (no ZipMap, for any nesting of models)."""
    _ints_not_bools()
    no_zipmap = {kind: {"zipmap": False} for kind in (GradientBoostingClassifier, LogisticRegression, MLPClassifier,
                                                       VotingClassifier, StackingClassifier)}
    onx = to_onnx(clf, np.zeros((1, len(FEATURE_NAMES)), np.float32), options=no_zipmap,
                  target_opset={"": 17, "ai.onnx.ml": 3})
    source = onx.graph.input[0].name
    onx.graph.input[0].name = "features"
    for node in onx.graph.node:  # the converter calls its input "X"; the manifest calls it "features"
        node.input[:] = ["features" if name == source else name for name in node.input]
    names = [o.name for o in onx.graph.output]
    if names != ["label", "probabilities"]:
        raise ValueError(f"exported outputs are {names}, expected ['label', 'probabilities']")
    return onx.SerializeToString()


def fire_probability(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"features": x})[0][:, 1]


def recall_at_false_alarms(y: np.ndarray, p: np.ndarray, rate: float = FALSE_ALARM_RATE) -> float:
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.interp(rate, fpr, tpr))


def threshold_for_false_alarms(y: np.ndarray, p: np.ndarray, rate: float = FALSE_ALARM_RATE) -> float:
    """The lowest score that flags at most `rate` of the negatives."""
    negatives = np.sort(p[y == 0])
    k = int(np.floor(len(negatives) * (1 - rate)))
    return float(np.nextafter(negatives[min(k, len(negatives) - 1)], np.inf))


def operating_threshold(y: np.ndarray, p: np.ndarray, rate: float = FALSE_ALARM_RATE, at_most: float = 0.5) -> float:
    """The alarm threshold: never below the `rate` false-alarm point, and above it as far as it can go (up to
    `at_most`) while still catching every positive that point catches: raising it past the lowest such positive
    would miss fires, and leaving it at the `rate` point would raise needless alarms when the classes separate."""
    low = threshold_for_false_alarms(y, p, rate)
    caught = p[(y == 1) & (p >= low)]
    return float(max(low, min(at_most, caught.min()))) if len(caught) else low


@dataclass(frozen=True)
class Score:
    roc_auc: float
    recall_at_1pct_false_alarms: float
    brier: float

    def as_dict(self) -> dict[str, float]:
        return {"roc_auc": round(self.roc_auc, 5), "recall_at_1pct_false_alarms": round(
            self.recall_at_1pct_false_alarms, 5), "brier": round(self.brier, 5)}


def score(y: np.ndarray, p: np.ndarray) -> Score:
    return Score(float(roc_auc_score(y, p)), recall_at_false_alarms(y, p), float(brier_score_loss(y, p)))


def better(a: Score, b: Score) -> bool:
    """a beats b: higher recall at 1 % false alarms; a tie (within 0.1 point) goes to the lower Brier score."""
    if abs(a.recall_at_1pct_false_alarms - b.recall_at_1pct_false_alarms) > 1e-3:
        return a.recall_at_1pct_false_alarms > b.recall_at_1pct_false_alarms
    return a.brier < b.brier


def fit_all(x: np.ndarray, y: np.ndarray, seed: int, log: Any = print) -> dict[str, ClassifierMixin]:
    fitted: dict[str, ClassifierMixin] = {}
    for name, clf in {**members(seed), **combiners(seed)}.items():
        log(f"fitting {name}")
        fitted[name] = clf.fit(x, y)
    return fitted
