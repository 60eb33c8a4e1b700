"""The fire-risk candidates (model_registry/demo/fire_ensemble.py): exported graphs keep the tabular contract and
compute what scikit-learn computes; the scores and the operating point mean what docs/models-demo.md says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model_registry.demo import fire_ensemble as fe
from model_registry.demo.fire_data import make_rows

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "components" / "com.ggvision.Model.FireRisk" / "manifest.json"


@pytest.fixture(scope="module")
def rows():
    return make_rows(range(3), 30, seed=0, distances=(1.0, 6.0))


@pytest.mark.parametrize("name", ["gradient_boosting", "logistic_regression", "mlp", "soft_voting"])
def test_every_candidate_exports_to_the_tabular_contract(rows, name: str) -> None:
    clf = {**fe.members(0), **fe.combiners(0)}[name].fit(rows.x, rows.y)
    p = fe.fire_probability(fe.export(clf), rows.x)
    assert p.shape == (len(rows.y),)
    np.testing.assert_allclose(p, clf.predict_proba(rows.x)[:, 1], atol=1e-4)


def test_the_threshold_flags_at_most_the_false_alarm_rate() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(1000, int), np.ones(200, int)]
    p = np.r_[rng.uniform(0, 0.6, 1000), rng.uniform(0.4, 1, 200)]
    thr = fe.threshold_for_false_alarms(y, p)
    assert (p[y == 0] >= thr).mean() <= 0.01
    assert (p[y == 0] >= np.nextafter(thr, 0) - 1e-3).mean() > 0.005  # and not much stricter than needed
    perfect = np.r_[np.full(1000, 0.1), np.full(200, 0.9)]
    assert fe.recall_at_false_alarms(y, perfect) == 1.0


def test_a_tie_on_recall_goes_to_the_better_calibrated_model() -> None:
    assert fe.better(fe.Score(0.99, 0.9604, 0.01), fe.Score(0.99, 0.9600, 0.02))
    assert not fe.better(fe.Score(0.99, 0.9600, 0.02), fe.Score(0.99, 0.9604, 0.01))
    assert fe.better(fe.Score(0.98, 0.97, 0.05), fe.Score(0.99, 0.95, 0.01))


def test_the_shipped_model_is_the_one_the_rule_picks() -> None:
    metrics = json.loads(SHIPPED.read_text())["metrics"]
    valid = {k: fe.Score(**v) for k, v in metrics["validation"].items()}
    member, combiner = metrics["best_member"], metrics["best_combiner"]
    assert all(not fe.better(valid[m], valid[member]) for m in fe.MEMBERS)
    assert all(not fe.better(valid[c], valid[combiner]) for c in fe.COMBINERS)
    assert metrics["shipped"] == (combiner if fe.better(valid[combiner], valid[member]) else member)
    assert metrics["at_threshold"]["false_alarm_rate"] <= 0.02  # chosen at 1 % on validation, held out here


def test_the_operating_threshold_raises_no_needless_alarm() -> None:
    y = np.r_[np.zeros(1000, int), np.ones(200, int)]
    separated = np.r_[np.linspace(0, 0.01, 1000), np.linspace(0.3, 1, 200)]
    assert fe.operating_threshold(y, separated) == pytest.approx(0.3)  # not the 1 % point (~0.0099)
    assert fe.operating_threshold(y, np.r_[np.linspace(0, 0.01, 1000), np.linspace(0.8, 1, 200)]) == 0.5
    overlapping = np.r_[np.linspace(0, 0.6, 1000), np.linspace(0.4, 1, 200)]
    thr = fe.operating_threshold(y, overlapping)
    assert (overlapping[:1000] >= thr).mean() <= 0.01 and thr < 0.6
