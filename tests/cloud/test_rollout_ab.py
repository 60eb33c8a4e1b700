"""The A/B report's statistics on synthetic health summaries (rollout/abreport.py), the ab section of rollout.yaml,
and the CLI's argument parsing. End to end on a local fleet: tests/runtime/test_fleet_ab.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rollout.ab import AbError, parse_duration, parse_share
from rollout.abconfig import AbGates, Bootstrap, parse_ab
from rollout.abreport import FAIL, INCONCLUSIVE, PASS, bootstrap_ci, intervals, points, report
from rollout.config import ConfigError, parse_config

MODEL = "detector"
BOOT = Bootstrap(resamples=2000, confidence=0.95, seed=0)


def summaries(rates_a: dict[str, float], rates_b: dict[str, float], n: int = 60, frames: int = 50, seed: int = 1,
              thing: str = "ggv-1", b_version: str = "2.0.0", mode: str = "split", p95: tuple[float, float] = (
                  2.0, 2.1), err: tuple[float, float] = (0.0, 0.0), agreement: dict[str, Any] | None = None,
              t0: float = 1000.0) -> list[dict[str, Any]]:
    """Health summaries of one device whose arms find Poisson(rate) detections of each label per frame; the ab
    figures are cumulative since load, as Health reports them (dpf rounded to 4 digits)."""
    rng = np.random.default_rng(seed)
    counts = {"a": dict.fromkeys(rates_a, 0), "b": dict.fromkeys(rates_b, 0)}
    fr = {"a": 0, "b": 0}
    out = []
    for i in range(n):
        for arm, rates in (("a", rates_a), ("b", rates_b)):
            fr[arm] += frames
            for lb, r in rates.items():
                counts[arm][lb] += int(rng.poisson(r * frames))

        def entry(arm: str, version: str, role: str) -> dict[str, Any]:
            ab: dict[str, Any] = {"id": MODEL, "arm": arm, "mode": mode, "frames": fr[arm],
                                  "detections_per_frame": {k: round(v / fr[arm], 4) for k, v in counts[arm].items()
                                                           if v}}
            if arm == "a":
                ab.update(b_failed=0, b_skipped=0, agreement=agreement or {})
            return {"version": version, "role": role, "p95_ms": p95[arm == "b"], "error_ratio": err[arm == "b"],
                    "ab": ab}

        out.append({"schema": "health-summary/1.0", "thing": thing, "timestamp": t0 + i,
                    "inference": {MODEL: entry("a", "1.0.0", "primary"),
                                  f"{MODEL}#{mode}": entry("b", b_version, mode)}})
    return out


def test_the_ci_contains_the_true_difference_and_narrows_with_data() -> None:
    true = {"person": 0.8 - 1.0, "car": 0.33 - 0.3}
    docs = summaries({"person": 1.0, "car": 0.3}, {"person": 0.8, "car": 0.33}, n=120)
    rep = report(docs, MODEL, "2.0.0", "split", AbGates(dpf_max_drop=0.5, dpf_max_rise=0.5), BOOT)
    assert rep.intervals == 119 and rep.summaries == 120
    by = {d.label: d for d in rep.labels}
    for lb, diff in true.items():
        lo, hi = by[lb].ci
        assert lo <= diff <= hi, (lb, by[lb].ci, diff)
        assert hi - lo < 0.1
    # coverage over many data sets: a 95% interval holds the true difference most of the time
    hits = 0
    for seed in range(40):
        d = {x.label: x for x in report(summaries({"person": 1.0}, {"person": 0.9}, n=40, seed=seed), MODEL,
                                        "2.0.0", "split", AbGates(), BOOT).labels}["person"]
        hits += d.ci[0] <= -0.1 <= d.ci[1]
    assert hits >= 34, hits


def test_reports_are_reproducible_and_the_seed_matters() -> None:
    docs = summaries({"person": 1.0}, {"person": 0.95}, n=30)
    a = report(docs, MODEL, "2.0.0", "split", AbGates(), BOOT)
    b = report(list(reversed(docs)), MODEL, "2.0.0", "split", AbGates(), BOOT)
    assert a.labels[0].ci == b.labels[0].ci
    c = report(docs, MODEL, "2.0.0", "split", AbGates(), Bootstrap(seed=7))
    assert c.labels[0].ci != a.labels[0].ci


def test_an_equal_b_passes_a_clearly_worse_b_fails() -> None:
    good = report(summaries({"person": 1.0}, {"person": 1.0}), MODEL, "2.0.0", "split", AbGates(), BOOT)
    assert good.verdict == PASS, good.reasons
    worse = report(summaries({"person": 1.0}, {"person": 0.5}), MODEL, "2.0.0", "split", AbGates(), BOOT)
    assert worse.verdict == FAIL and any("person: B − A = -0.5" in r for r in worse.reasons), worse.reasons
    blind = report(summaries({"person": 1.0}, {}), MODEL, "2.0.0", "split", AbGates(), BOOT)  # finds nothing
    assert blind.verdict == FAIL and blind.labels[0].b_rate == 0.0
    noisy = report(summaries({"person": 1.0, "car": 0.3}, {"person": 1.0, "car": 0.9}), MODEL, "2.0.0", "split",
                   AbGates(), BOOT)  # false positives: car rises far above max_rise
    assert noisy.verdict == FAIL and [d.status for d in noisy.labels] == [FAIL, PASS]


def test_too_little_data_or_a_borderline_b_is_inconclusive() -> None:
    few = report(summaries({"person": 1.0}, {"person": 1.0}, n=3), MODEL, "2.0.0", "split", AbGates(), BOOT)
    assert few.verdict == INCONCLUSIVE and few.intervals == 2
    early = report(summaries({"person": 1.0}, {}, n=3), MODEL, "2.0.0", "split", AbGates(), BOOT)
    assert early.verdict == INCONCLUSIVE and early.labels[0].status == FAIL  # looks bad, but too soon to say
    edge = report(summaries({"person": 1.0}, {"person": 0.8}, n=8, frames=5), MODEL, "2.0.0", "split",
                  AbGates(dpf_max_drop=0.2), BOOT)
    assert edge.verdict == INCONCLUSIVE and edge.labels[0].ci[0] < -0.2 < edge.labels[0].ci[1]


def test_latency_errors_and_shadow_agreement_gates() -> None:
    slow = report(summaries({"person": 1.0}, {"person": 1.0}, p95=(2.0, 9.0)), MODEL, "2.0.0", "split",
                  AbGates(), BOOT)
    assert slow.verdict == FAIL and slow.latency["ratio"] == pytest.approx(4.5)
    assert any("p95 B 9.00 ms vs A 2.00 ms" in r for r in slow.reasons)
    failing = report(summaries({"person": 1.0}, {"person": 1.0}, err=(0.0, 0.3)), MODEL, "2.0.0", "split",
                     AbGates(), BOOT)
    assert failing.verdict == FAIL and failing.errors["delta"] == pytest.approx(0.3)
    flips = {"matched": {"person": 10}, "label_flips": {"person": 90}, "a_only": {}, "b_only": {}}
    shadow = report(summaries({"person": 1.0}, {"person": 1.0}, mode="shadow", agreement=flips), MODEL, "2.0.0",
                    "shadow", AbGates(), BOOT)
    assert shadow.verdict == FAIL and shadow.agreement == pytest.approx(0.1)
    assert shadow.labels[0].agreement == {"matched": 10, "label_flips": 90}
    agree = {"matched": {"person": 99}, "a_only": {"person": 1}}
    ok = report(summaries({"person": 1.0}, {"person": 1.0}, mode="shadow", agreement=agree), MODEL, "2.0.0",
                "shadow", AbGates(), BOOT)
    assert ok.verdict == PASS and ok.agreement == pytest.approx(0.99)


def test_only_the_experiments_version_counts_and_a_reload_restarts_the_intervals() -> None:
    old = summaries({"person": 1.0}, {"person": 0.0}, n=10, b_version="1.9.0", t0=0)
    new = summaries({"person": 1.0}, {"person": 1.0}, n=10, t0=100)
    pts = points(old + new, MODEL, "2.0.0")
    assert len(pts) == 10 and {p.b.version for p in pts} == {"2.0.0"}
    # two devices; the second one's B reloaded halfway (its cumulative frames went back)
    other = summaries({"person": 1.0}, {"person": 1.0}, n=5, thing="ggv-2", t0=100) + \
        summaries({"person": 1.0}, {"person": 1.0}, n=5, thing="ggv-2", t0=200, seed=3)
    ivs = intervals(points(new + other, MODEL, "2.0.0"))
    assert len(ivs) == 9 + 4 + 4
    assert all(abs(a - 1.0) < 0.5 and abs(b - 1.0) < 0.5 for iv in ivs for a, b in iv.values())


def test_bootstrap_ci_edge_cases() -> None:
    assert np.isnan(bootstrap_ci(np.array([]), BOOT)[0])
    assert bootstrap_ci(np.array([0.5]), BOOT) == (0.5, 0.5)
    lo, hi = bootstrap_ci(np.full(30, -0.2), BOOT)
    assert lo == pytest.approx(-0.2) and hi == pytest.approx(-0.2)


def test_ab_config_defaults_and_refusals(tmp_path: Path) -> None:
    base = {"stages": [{"name": "dev", "group": "g"}]}
    cfg = parse_config(base, tmp_path / "rollout.yaml")
    assert parse_ab(cfg.ab, "ab").gates == AbGates() and parse_ab(None, "ab").sample_rate == 0.1
    ab = parse_ab({"sample_rate": 1.0, "gates": {"min_intervals": 3, "detections_per_frame": {"max_drop": 0.1}},
                   "bootstrap": {"seed": 5}}, "ab")
    assert (ab.sample_rate, ab.gates.min_intervals, ab.gates.dpf_max_drop, ab.bootstrap.seed) == (1.0, 3, 0.1, 5)
    with pytest.raises(ConfigError, match=r"rollout.yaml: ab: unknown key"):
        parse_config({**base, "ab": {"gatez": {}}}, tmp_path / "rollout.yaml")
    with pytest.raises(ConfigError, match=r"ab.gates.detections_per_frame.max_drop: expected a number in \[0, 1\]"):
        parse_ab({"gates": {"detections_per_frame": {"max_drop": 2}}}, "ab")
    with pytest.raises(ConfigError, match=r"ab.bootstrap.resamples"):
        parse_ab({"bootstrap": {"resamples": 5}}, "ab")


def test_duration_and_share() -> None:
    assert [parse_duration(x) for x in ("90s", "15m", "24h", "2d", "30")] == [90, 900, 86400, 172800, 30]
    assert parse_share("20%") == pytest.approx(0.2) and parse_share("0.5") == 0.5
    for bad in ("0%", "120%", "x"):
        with pytest.raises(AbError, match="--share"):
            parse_share(bad)
    with pytest.raises(AbError, match="--for"):
        parse_duration("soon")


def test_b_is_merged_into_inference_configuration_and_removed_with_null() -> None:
    from rollout.ab import _merge_b, b_component

    comps: dict[str, Any] = {"com.ggvision.Inference": {"componentVersion": "0.1.0", "configurationUpdate": {
        "merge": '{"models": {"detector": {"component": "com.ggvision.Model.Detector"}}, "threads": 1}'}}}
    spec = {"mode": "split", "component": b_component(MODEL), "version": "2.0.0", "share": 0.2}
    _merge_b(comps, "com.ggvision.Inference", {}, MODEL, spec)
    merge = comps["com.ggvision.Inference"]["configurationUpdate"]["merge"]
    assert merge == {"models": {"detector": {"component": "com.ggvision.Model.Detector", "b": spec}}, "threads": 1}
    _merge_b(comps, "com.ggvision.Inference", {}, MODEL, None)  # stop: the key stays, null removes B
    assert comps["com.ggvision.Inference"]["configurationUpdate"]["merge"]["models"]["detector"]["b"] is None
    fresh: dict[str, Any] = {}
    _merge_b(fresh, "com.ggvision.Inference", {"com.ggvision.Inference": "0.2.0"}, "det", spec)
    assert fresh["com.ggvision.Inference"]["componentVersion"] == "0.2.0"
    assert b_component(MODEL) == "com.ggvision.Model.Detector.B"
