"""Health gates over recorded health-summary/1.0 sets: candidate vs the previous version on the same devices."""

from __future__ import annotations

from pathlib import Path

import pytest
from rollout_records import series, summary

from rollout.config import ConfigError, Gates, parse_config, parse_gates
from rollout.gates import FAIL, PASS, PENDING, evaluate, sample, samples

MODEL = "detector"
GATES = Gates(min_samples=3, error_ratio_max=0.01, error_ratio_max_increase=0.005, p95_ratio_max=1.5,
              fps_ratio_min=0.8, score_drift_max=0.15, shadow_agreement_min=0.9)


def judge(base: list[dict], cand: list[dict], things: tuple[str, ...] = ("a", "b"), final: bool = True,
          failures: dict | None = None, gates: Gates = GATES):
    return evaluate(gates, things, samples(cand, MODEL, "2.0.0"), samples(base, MODEL, "1.0.0"), failures, final)


def baseline() -> list[dict]:
    # Device b is a slower box: it is compared with itself, not with a.
    return series("a", "1.0.0", 5, p95=20) + series("b", "1.0.0", 5, p95=60)


def test_a_good_version_passes() -> None:
    cand = series("a", "2.0.0", 4, p95=22, score=0.62) + series("b", "2.0.0", 4, p95=70, score=0.58)
    v = judge(baseline(), cand)
    assert v.status == PASS, v.reasons
    row = next(r for r in v.results if r.gate == "inference_p95_ratio" and r.thing == "b")
    assert (row.value, row.baseline) == (70, 60)


def test_a_slow_version_fails_on_the_p95_ratio_against_the_same_device() -> None:
    # 50 ms would be fine for slow box b, but on a it is 2.5x its previous version.
    cand = series("a", "2.0.0", 4, p95=50) + series("b", "2.0.0", 4, p95=62)
    v = judge(baseline(), cand)
    assert v.status == FAIL
    assert v.reasons == ["a: p95 latency 50.0 ms is 2.50x the previous version's 20.0 ms (limit 1.5x)"]


def test_errors_fail_absolute_and_relative() -> None:
    cand = series("a", "2.0.0", 4, error_ratio=0.2) + series("b", "2.0.0", 4, p95=60)
    v = judge(baseline(), cand)
    assert v.status == FAIL
    assert {r.gate for r in v.results if r.status == FAIL} == {"inference_error_ratio",
                                                               "inference_error_ratio_increase"}


def test_fps_drop_score_drift_and_shadow_agreement() -> None:
    cand = series("a", "2.0.0", 4, fps=3.0) + series("b", "2.0.0", 4, p95=60, score=0.9, shadow=0.5)
    v = judge(baseline(), cand)
    assert {(r.gate, r.thing) for r in v.results if r.status == FAIL} == {
        ("detection_fps_ratio", "a"), ("score_drift", "b"), ("shadow_agreement", "b")}


def test_missing_data_is_pending_until_the_soak_ends_then_fails() -> None:
    cand = series("a", "2.0.0", 4) + series("b", "2.0.0", 1, p95=60)
    assert judge(baseline(), cand, final=False).status == PENDING
    v = judge(baseline(), cand, final=True)
    assert v.status == FAIL and v.reasons == ["b: only 1 health summaries with the new version (need 3)"]


def test_only_the_candidate_versions_samples_count() -> None:
    # Summaries still reporting the old version (the device has not swapped yet) are not the candidate's.
    cand = series("a", "1.0.0", 4) + series("b", "1.0.0", 4)
    assert judge(baseline(), cand, final=False).status == PENDING


def test_no_baseline_uses_absolute_limits_only() -> None:
    cand = series("a", "2.0.0", 3, p95=500) + series("b", "2.0.0", 3, p95=500)
    assert judge([], cand).status == PASS
    g = Gates(min_samples=3, p95_ms_max=100)
    assert judge([], cand, gates=g).status == FAIL


def test_deployment_failures_gate() -> None:
    cand = series("a", "2.0.0", 3)
    v = judge(baseline(), cand, things=("a", "b"), failures={"b": "FAILED FAILED_ROLLBACK_COMPLETE"})
    assert v.status == FAIL and v.reasons == ["deployment failed on 1 device(s): b: FAILED FAILED_ROLLBACK_COMPLETE"]


def test_sample_ignores_other_schemas_and_malformed_documents() -> None:
    assert sample({"schema": "health-summary/2.0", "inference": {}}, MODEL) is None
    assert sample({"schema": "health-summary/1.3", "inference": "x"}, MODEL) is None
    assert sample(summary("a", 1.0, "1.0.0", model="other-id"), MODEL).version == "1.0.0"  # sole model
    s = summary("a", 1.0, "1.0.0")
    s["inference"]["second"] = s["inference"][MODEL]
    assert sample(s, "third") is None


def test_config_parsing_and_refusals(tmp_path: Path) -> None:
    doc = {"backend": "local", "soak_s": 30, "stages": [
        {"name": "dev", "group": "ggv-dev"},
        {"name": "staging", "group": "ggv-staging", "canary": {"group": "ggv-staging-canary", "soak_s": 10}}],
        "gates": {"min_samples": 2, "inference_p95_ms": {"max_ratio": 2.0}}}
    cfg = parse_config(doc, tmp_path / "rollout.yaml")
    assert cfg.stage("staging").canary.soak_s == 10 and cfg.stage("dev").soak_s == 30
    assert cfg.gates.p95_ratio_max == 2.0 and cfg.gates.min_samples == 2
    assert cfg.previous_stage("staging").name == "dev" and cfg.previous_stage("dev") is None
    with pytest.raises(ConfigError, match="no stage 'prod'"):
        cfg.stage("prod")
    with pytest.raises(ConfigError, match=r"gates.inference_p95_ms: unknown key\(s\) \['maxratio'\]"):
        parse_gates({"inference_p95_ms": {"maxratio": 2}}, "gates")
    with pytest.raises(ConfigError, match="gates.inference_error_ratio.max: expected a number in"):
        parse_gates({"inference_error_ratio": {"max": 2}}, "gates")
    bad = dict(doc, stages=[{"name": "dev", "group": "g"}, {"name": "prod", "group": "g"}])
    with pytest.raises(ConfigError, match="thing group 'g' is used twice"):
        parse_config(bad, tmp_path / "r.yaml")
