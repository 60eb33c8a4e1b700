"""Health gates: judge a candidate model version by the health-summary/1.0 messages its devices publish.

Per device the candidate's samples (summaries whose ``inference`` entry for the model carries the candidate
version) are compared with the same device's samples of the previous version (the baseline window read before
the deployment), so a slow box is compared with itself. Aggregates are medians (robust to one odd period),
except the error ratio, which is a mean. A gate with no data yet is "pending"; at the end of the soak a device
still without ``min_samples`` candidate samples fails the rollout ("no health data"), since silence is not health.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import Gates

SUMMARY_MAJOR = "health-summary/1."
PASS, FAIL, PENDING = "pass", "fail", "pending"


@dataclass(frozen=True)
class Sample:
    """One device's model metrics from one health summary."""

    thing: str
    timestamp: float
    version: str | None
    error_ratio: float | None
    p95_ms: float | None
    score_mean: float | None
    detection_fps: float | None
    shadow_agreement: float | None


@dataclass(frozen=True)
class GateResult:
    gate: str
    thing: str
    status: str  # pass | fail | pending
    value: float | None
    baseline: float | None
    limit: str
    reason: str = ""


@dataclass
class Verdict:
    status: str  # pass | fail | pending
    results: list[GateResult] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [r.reason for r in self.results if r.status == FAIL]

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons) if self.status == FAIL else self.status


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def sample(summary: Mapping[str, Any], model: str) -> Sample | None:
    """The model's metrics in a health summary, or None (other schema, no such model, malformed)."""
    if not isinstance(summary, Mapping) or not str(summary.get("schema", "")).startswith(SUMMARY_MAJOR):
        return None
    inference = summary.get("inference")
    if not isinstance(inference, Mapping):
        return None
    entry = inference.get(model)
    if entry is None and len(inference) == 1:  # the Inference component names it by its model id
        entry = next(iter(inference.values()))
    if not isinstance(entry, Mapping):
        return None
    shadow = entry.get("shadow") if isinstance(entry.get("shadow"), Mapping) else {}
    return Sample(thing=str(summary.get("thing", "")), timestamp=_num(summary.get("timestamp")) or 0.0,
                  version=None if entry.get("version") is None else str(entry.get("version")),
                  error_ratio=_num(entry.get("error_ratio")), p95_ms=_num(entry.get("p95_ms")),
                  score_mean=_num(entry.get("score_mean")), detection_fps=_num(summary.get("detection_fps_total")),
                  shadow_agreement=_num(shadow.get("matched_ratio")))


def samples(summaries: Iterable[Mapping[str, Any]], model: str, version: str | None = None) -> dict[str, list[Sample]]:
    """Samples per thing, only those of `version` when given."""
    out: dict[str, list[Sample]] = {}
    for s in summaries:
        x = sample(s, model)
        if x is None or (version is not None and x.version != version):
            continue
        out.setdefault(x.thing, []).append(x)
    return out


def _median(xs: list[Sample], attr: str) -> float | None:
    vals = [getattr(x, attr) for x in xs if getattr(x, attr) is not None]
    return statistics.median(vals) if vals else None


def _mean(xs: list[Sample], attr: str) -> float | None:
    vals = [getattr(x, attr) for x in xs if getattr(x, attr) is not None]
    return sum(vals) / len(vals) if vals else None


def evaluate(gates: Gates, things: Iterable[str], candidate: Mapping[str, list[Sample]],
             baseline: Mapping[str, list[Sample]], deployment_failures: Mapping[str, str] | None = None,
             final: bool = False) -> Verdict:
    """Judge the candidate on `things`. final=True: the soak is over, missing data fails instead of pending."""
    results: list[GateResult] = []
    failures = dict(deployment_failures or {})
    n_fail = len(failures)
    results.append(GateResult(
        "deployment_failures", "*", FAIL if n_fail > gates.deployment_failures_max else PASS, float(n_fail), None,
        f"<= {gates.deployment_failures_max}",
        "" if n_fail <= gates.deployment_failures_max else
        f"deployment failed on {n_fail} device(s): " + "; ".join(f"{t}: {why}" for t, why in sorted(failures.items()))))
    for thing in sorted(things):
        if thing in failures:
            continue
        cand = candidate.get(thing, [])
        base = baseline.get(thing, [])
        if len(cand) < gates.min_samples:
            status = FAIL if final else PENDING
            results.append(GateResult("health_data", thing, status, float(len(cand)), None,
                                      f">= {gates.min_samples} summaries",
                                      f"{thing}: only {len(cand)} health summaries with the new version "
                                      f"(need {gates.min_samples})" if status == FAIL else ""))
            continue
        results.extend(_device(gates, thing, cand, base))
    statuses = {r.status for r in results}
    status = FAIL if FAIL in statuses else PENDING if PENDING in statuses else PASS
    return Verdict(status, results)


def _device(g: Gates, thing: str, cand: list[Sample], base: list[Sample]) -> list[GateResult]:
    out: list[GateResult] = []

    def add(gate: str, ok: bool, value: float | None, baseline: float | None, limit: str, why: str) -> None:
        out.append(GateResult(gate, thing, PASS if ok else FAIL, value, baseline, limit,
                              "" if ok else f"{thing}: {why}"))

    er, er0 = _mean(cand, "error_ratio"), _mean(base, "error_ratio")
    if er is not None:
        if g.error_ratio_max is not None:
            add("inference_error_ratio", er <= g.error_ratio_max, er, er0, f"<= {g.error_ratio_max:g}",
                f"inference error ratio {er:.3g} > {g.error_ratio_max:g}")
        if g.error_ratio_max_increase is not None and er0 is not None:
            add("inference_error_ratio_increase", er - er0 <= g.error_ratio_max_increase, er, er0,
                f"<= baseline + {g.error_ratio_max_increase:g}",
                f"inference error ratio {er:.3g} vs {er0:.3g} before (+{er - er0:.3g} > "
                f"{g.error_ratio_max_increase:g})")
    p95, p950 = _median(cand, "p95_ms"), _median(base, "p95_ms")
    if p95 is not None:
        if g.p95_ms_max is not None:
            add("inference_p95_ms", p95 <= g.p95_ms_max, p95, p950, f"<= {g.p95_ms_max:g} ms",
                f"p95 latency {p95:.1f} ms > {g.p95_ms_max:g} ms")
        if g.p95_ratio_max is not None and p950:
            ok = p95 / p950 <= g.p95_ratio_max or p95 - p950 <= g.p95_noise_ms
            add("inference_p95_ratio", ok, p95, p950, f"<= {g.p95_ratio_max:g} x baseline",
                f"p95 latency {p95:.1f} ms is {p95 / p950:.2f}x the previous version's {p950:.1f} ms "
                f"(limit {g.p95_ratio_max:g}x)")
    fps, fps0 = _median(cand, "detection_fps"), _median(base, "detection_fps")
    if fps is not None:
        if g.fps_min is not None:
            add("detection_fps", fps >= g.fps_min, fps, fps0, f">= {g.fps_min:g}",
                f"detection fps {fps:.2f} < {g.fps_min:g}")
        if g.fps_ratio_min is not None and fps0:
            add("detection_fps_ratio", fps / fps0 >= g.fps_ratio_min, fps, fps0, f">= {g.fps_ratio_min:g} x baseline",
                f"detection fps {fps:.2f} is {fps / fps0:.2f}x the previous version's {fps0:.2f} "
                f"(limit {g.fps_ratio_min:g}x)")
    score, score0 = _median(cand, "score_mean"), _median(base, "score_mean")
    if g.score_drift_max is not None and score is not None and score0 is not None:
        add("score_drift", abs(score - score0) <= g.score_drift_max, score, score0, f"|drift| <= {g.score_drift_max:g}",
            f"mean score {score:.3f} drifted {score - score0:+.3f} from the previous version's {score0:.3f} "
            f"(limit {g.score_drift_max:g})")
    agree = _median(cand, "shadow_agreement")
    if g.shadow_agreement_min is not None and agree is not None:
        add("shadow_agreement", agree >= g.shadow_agreement_min, agree, None, f">= {g.shadow_agreement_min:g}",
            f"shadow agreement {agree:.2f} < {g.shadow_agreement_min:g}")
    return out
