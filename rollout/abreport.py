"""A/B report: what the devices' health summaries say about arm B against arm A, and a verdict against gates.

Input: health-summary/1.x documents (what Health publishes to IoT Core); each arm's figures are the model entry
whose ``ab`` block names the experiment's model id and the arm (docs/messages.md). Only summaries in which B runs
the experiment's version count.

- **Per-label difference**: ``detections_per_frame`` and ``frames`` are cumulative since each arm's model loaded,
  so consecutive summaries of a device give each arm's rate over the interval between them (an interval is closed
  once both arms saw new frames; a reload, where ``frames`` goes back, starts again). Each interval is one paired
  sample B − A; the report gives the mean difference with a percentile bootstrap confidence interval over those
  samples (seeded: the same summaries give the same report), and the difference relative to A's rate.
- **shadow**: agreement per label from A's cumulative ``agreement`` counts (matched, label flips, A only, B only)
  of each device's latest summary, summed over devices.
- **latency / errors**: medians of each arm's p95 latency and means of each arm's error ratio over the summaries.

Verdict: INCONCLUSIVE while there are fewer than ``min_intervals`` paired intervals; then FAIL when a gate is
confidently broken (the whole CI beyond the limit, agreement below its minimum, p95 or errors beyond theirs),
INCONCLUSIVE when a label's CI straddles a limit, else PASS. Gates and their defaults: rollout/abconfig.py
(docs/rollout.md, "A/B experiments").
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .abconfig import AbGates, Bootstrap

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
OUTCOMES = ("matched", "label_flips", "a_only", "b_only")


@dataclass(frozen=True)
class ArmPoint:
    """One arm in one summary."""

    version: str | None
    frames: float | None
    dpf: dict[str, float]
    p95_ms: float | None
    error_ratio: float | None
    ab: dict[str, Any]


@dataclass(frozen=True)
class Point:
    thing: str
    timestamp: float
    a: ArmPoint
    b: ArmPoint


@dataclass
class LabelDiff:
    label: str
    a_rate: float
    b_rate: float
    diff: float  # mean over intervals of B − A, detections per frame
    ci: tuple[float, float]
    limits: tuple[float, float]
    status: str
    agreement: dict[str, float] = field(default_factory=dict)  # shadow: outcome -> count

    @property
    def relative(self) -> float | None:
        return self.diff / self.a_rate if self.a_rate else None


@dataclass
class Check:
    gate: str
    status: str
    detail: str


@dataclass
class Report:
    mode: str
    b_version: str
    devices: list[str]
    summaries: int
    intervals: int
    labels: list[LabelDiff]
    latency: dict[str, float | None]
    errors: dict[str, float | None]
    agreement: float | None
    checks: list[Check]

    @property
    def verdict(self) -> str:
        if any(c.gate == "intervals" for c in self.checks):
            return INCONCLUSIVE  # too few samples to judge anything yet, however the gates look so far
        statuses = {c.status for c in self.checks}
        return FAIL if FAIL in statuses else INCONCLUSIVE if INCONCLUSIVE in statuses else PASS

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if c.status != PASS]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _arm(entry: Mapping[str, Any]) -> ArmPoint:
    ab = entry.get("ab") if isinstance(entry.get("ab"), Mapping) else {}
    dpf = ab.get("detections_per_frame") if isinstance(ab.get("detections_per_frame"), Mapping) else {}
    return ArmPoint(version=None if entry.get("version") is None else str(entry["version"]),
                    frames=_num(ab.get("frames")),
                    dpf={str(k): float(v) for k, v in dpf.items() if _num(v) is not None},
                    p95_ms=_num(entry.get("p95_ms")), error_ratio=_num(entry.get("error_ratio")), ab=dict(ab))


def points(summaries: Iterable[Mapping[str, Any]], model_id: str, b_version: str) -> list[Point]:
    """Each summary in which both arms of `model_id` report and B runs `b_version`, oldest first."""
    out = []
    for s in summaries:
        if not isinstance(s, Mapping) or not str(s.get("schema", "")).startswith("health-summary/1."):
            continue
        inference = s.get("inference") if isinstance(s.get("inference"), Mapping) else {}
        arms: dict[str, ArmPoint] = {}
        for entry in inference.values():
            ab = entry.get("ab") if isinstance(entry, Mapping) else None
            if isinstance(ab, Mapping) and ab.get("id") == model_id and ab.get("arm") in ("a", "b"):
                arms[str(ab["arm"])] = _arm(entry)
        if set(arms) == {"a", "b"} and arms["b"].version == b_version:
            out.append(Point(str(s.get("thing", "")), _num(s.get("timestamp")) or 0.0, arms["a"], arms["b"]))
    return sorted(out, key=lambda p: (p.thing, p.timestamp))


def _counts(a: ArmPoint) -> dict[str, float]:
    return {k: v * (a.frames or 0.0) for k, v in a.dpf.items()}


def intervals(pts: list[Point]) -> list[dict[str, tuple[float, float]]]:
    """Per-interval (A rate, B rate) per label, over every device: the paired samples the bootstrap resamples."""
    out: list[dict[str, tuple[float, float]]] = []
    by_thing: dict[str, list[Point]] = {}
    for p in pts:
        by_thing.setdefault(p.thing, []).append(p)
    for seq in by_thing.values():
        anchor: Point | None = None
        for p in seq:
            if p.a.frames is None or p.b.frames is None:
                continue
            if anchor is None or p.a.frames < anchor.a.frames or p.b.frames < anchor.b.frames:  # type: ignore[operator]
                anchor = p  # first point, or an arm reloaded (its counts started again)
                continue
            fa, fb = p.a.frames - (anchor.a.frames or 0.0), p.b.frames - (anchor.b.frames or 0.0)
            if fa <= 0 or fb <= 0:
                continue  # one arm saw no new frame yet: widen the interval
            ca0, cb0, ca, cb = _counts(anchor.a), _counts(anchor.b), _counts(p.a), _counts(p.b)
            labels = set(ca) | set(cb)
            out.append({lb: (max(0.0, ca.get(lb, 0.0) - ca0.get(lb, 0.0)) / fa,
                             max(0.0, cb.get(lb, 0.0) - cb0.get(lb, 0.0)) / fb) for lb in labels})
            anchor = p
    return out


def bootstrap_ci(diffs: np.ndarray, boot: Bootstrap) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `diffs` (seeded)."""
    if diffs.size == 0:
        return (float("nan"), float("nan"))
    if diffs.size == 1:
        return (float(diffs[0]), float(diffs[0]))
    rng = np.random.default_rng(boot.seed)
    idx = rng.integers(0, diffs.size, size=(boot.resamples, diffs.size))
    means = diffs[idx].mean(axis=1)
    alpha = (1.0 - boot.confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def _label(label: str, samples: list[tuple[float, float]], gates: AbGates, boot: Bootstrap) -> LabelDiff:
    a = np.array([x[0] for x in samples])
    b = np.array([x[1] for x in samples])
    a_rate, b_rate = float(a.mean()), float(b.mean())
    diff = float((b - a).mean())
    ci = bootstrap_ci(b - a, boot)
    lo_lim = -max(gates.dpf_max_drop * a_rate, gates.dpf_min_abs)
    hi_lim = max(gates.dpf_max_rise * a_rate, gates.dpf_min_abs)
    if ci[1] < lo_lim or ci[0] > hi_lim:
        status = FAIL
    elif lo_lim <= ci[0] and ci[1] <= hi_lim:
        status = PASS
    else:
        status = INCONCLUSIVE
    return LabelDiff(label, a_rate, b_rate, diff, ci, (lo_lim, hi_lim), status)


def report(summaries: Iterable[Mapping[str, Any]], model_id: str, b_version: str, mode: str, gates: AbGates,
           boot: Bootstrap) -> Report:
    pts = points(summaries, model_id, b_version)
    ivs = intervals(pts)
    labels_seen = sorted({lb for iv in ivs for lb in iv})
    labels = [_label(lb, [iv.get(lb, (0.0, 0.0)) for iv in ivs], gates, boot) for lb in labels_seen]
    checks: list[Check] = []
    if len(ivs) < gates.min_intervals:
        checks.append(Check("intervals", INCONCLUSIVE, f"{len(ivs)} paired intervals, need {gates.min_intervals}"))
    for d in labels:
        rel = f" ({d.relative:+.0%} of A)" if d.relative is not None else ""
        checks.append(Check(f"detections_per_frame[{d.label}]", d.status,
                            f"{d.label}: B − A = {d.diff:+.3f} detections/frame{rel}, "
                            f"{boot.confidence:.0%} CI [{d.ci[0]:+.3f}, {d.ci[1]:+.3f}], "
                            f"limits [{d.limits[0]:+.3f}, {d.limits[1]:+.3f}]"))
    latest: dict[str, Point] = {}
    for p in pts:
        latest[p.thing] = p
    agreement: float | None = None
    if mode == "shadow":
        tot: dict[str, dict[str, float]] = {}
        for p in latest.values():
            ag = p.a.ab.get("agreement") if isinstance(p.a.ab.get("agreement"), Mapping) else {}
            for outcome in OUTCOMES:
                for lb, n in (ag.get(outcome) or {}).items():
                    if _num(n) is not None:
                        tot.setdefault(lb, {}).setdefault(outcome, 0.0)
                        tot[lb][outcome] += float(n)
        for d in labels:
            d.agreement = tot.get(d.label, {})
        total = sum(sum(v.values()) for v in tot.values())
        if total:
            agreement = sum(v.get("matched", 0.0) for v in tot.values()) / total
            if gates.agreement_min is not None:
                ok = agreement >= gates.agreement_min
                checks.append(Check("shadow_agreement", PASS if ok else FAIL,
                                    f"shadow agreement {agreement:.2f} (matched / all outcomes), "
                                    f"minimum {gates.agreement_min:g}"))
    p95_a = _median([p.a.p95_ms for p in pts])
    p95_b = _median([p.b.p95_ms for p in pts])
    latency = {"a_p95_ms": p95_a, "b_p95_ms": p95_b, "delta_ms": None if p95_a is None or p95_b is None
               else p95_b - p95_a, "ratio": p95_b / p95_a if p95_a and p95_b is not None else None}
    if gates.p95_ratio_max is not None and latency["ratio"] is not None and latency["delta_ms"] is not None:
        ok = latency["ratio"] <= gates.p95_ratio_max or latency["delta_ms"] <= gates.p95_noise_ms
        checks.append(Check("latency_p95", PASS if ok else FAIL,
                            f"p95 B {p95_b:.2f} ms vs A {p95_a:.2f} ms ({latency['ratio']:.2f}x, limit "
                            f"{gates.p95_ratio_max:g}x unless within {gates.p95_noise_ms:g} ms)"))
    er_a = _mean([p.a.error_ratio for p in pts])
    er_b = _mean([p.b.error_ratio for p in pts])
    b_failed = sum(_num(p.a.ab.get("b_failed")) or 0.0 for p in latest.values())
    errors = {"a_error_ratio": er_a, "b_error_ratio": er_b,
              "delta": None if er_a is None or er_b is None else er_b - er_a, "b_failed": b_failed}
    if gates.error_max_increase is not None and errors["delta"] is not None:
        ok = errors["delta"] <= gates.error_max_increase
        checks.append(Check("errors", PASS if ok else FAIL,
                            f"error ratio B {er_b:.3f} vs A {er_a:.3f} ({errors['delta']:+.3f}, limit "
                            f"+{gates.error_max_increase:g}; B failures {b_failed:g})"))
    return Report(mode=mode, b_version=b_version, devices=sorted(latest), summaries=len(pts), intervals=len(ivs),
                  labels=labels, latency=latency, errors=errors, agreement=agreement, checks=checks)


def _median(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return statistics.median(v) if v else None


def _mean(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return sum(v) / len(v) if v else None
