"""The ``ab:`` section of rollout.yaml: how `rollout ab` configures arm B and the gates its report judges by.

```yaml
ab:
  inference_component: com.ggvision.Inference   # whose configuration gets models.<model_id>.b
  model_id: null            # the model's id in that configuration; default: the model's name
  sample_rate: 0.1          # shadow: share of A's frames B also sees (Inference's sampleRate)
  skip_when_queued: 1       # shadow: Inference's skipWhenQueued
  bootstrap: {resamples: 2000, confidence: 0.95, seed: 0}
  gates:
    min_intervals: 5        # paired per-interval samples before a verdict other than INCONCLUSIVE
    detections_per_frame: {max_drop: 0.2, max_rise: 0.5, min_abs: 0.02}   # relative to A's rate, per label
    shadow_agreement: {min: 0.8}
    inference_p95_ms: {max_ratio: 1.5, noise_ms: 1.0}
    inference_error_ratio: {max_increase: 0.01}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import AB_KEYS, ConfigError, RolloutConfig, _num, _obj


@dataclass(frozen=True)
class AbGates:
    min_intervals: int = 5
    dpf_max_drop: float = 0.2  # B may find at most this share fewer detections per frame than A (per label)
    dpf_max_rise: float = 0.5  # ... or this share more (false positives)
    dpf_min_abs: float = 0.02  # limits never tighter than this many detections per frame (rare labels)
    agreement_min: float | None = 0.8  # shadow: matched / all outcomes
    p95_ratio_max: float | None = 1.5
    p95_noise_ms: float = 1.0
    error_max_increase: float | None = 0.01


@dataclass(frozen=True)
class Bootstrap:
    resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class AbConfig:
    inference_component: str = "com.ggvision.Inference"
    model_id: str | None = None
    sample_rate: float = 0.1
    skip_when_queued: int = 1
    bootstrap: Bootstrap = field(default_factory=Bootstrap)
    gates: AbGates = field(default_factory=AbGates)


def _int(d: dict, key: str, where: str, default: int, lo: int, hi: int) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{where}.{key}: expected an int in [{lo}, {hi}], got {v!r}")
    return v


def parse_ab(raw: Any, where: str) -> AbConfig:
    top = _obj(raw, where, AB_KEYS)
    d, dg, db = AbConfig(), AbGates(), Bootstrap()
    b = _obj(top.get("bootstrap"), f"{where}.bootstrap", {"resamples", "confidence", "seed"})
    g = _obj(top.get("gates"), f"{where}.gates", {"min_intervals", "detections_per_frame", "shadow_agreement",
                                                   "inference_p95_ms", "inference_error_ratio"})
    dpf = _obj(g.get("detections_per_frame"), f"{where}.gates.detections_per_frame", {"max_drop", "max_rise",
                                                                                       "min_abs"})
    ag = _obj(g.get("shadow_agreement"), f"{where}.gates.shadow_agreement", {"min"})
    p95 = _obj(g.get("inference_p95_ms"), f"{where}.gates.inference_p95_ms", {"max_ratio", "noise_ms"})
    er = _obj(g.get("inference_error_ratio"), f"{where}.gates.inference_error_ratio", {"max_increase"})
    for key in ("inference_component", "model_id"):
        if top.get(key) is not None and not isinstance(top[key], str):
            raise ConfigError(f"{where}.{key}: expected a string, got {top[key]!r}")
    gw = f"{where}.gates"
    return AbConfig(
        inference_component=top.get("inference_component") or d.inference_component,
        model_id=top.get("model_id"),
        sample_rate=_num(top, "sample_rate", where, d.sample_rate, 0, 1) or 0.0,
        skip_when_queued=_int(top, "skip_when_queued", where, d.skip_when_queued, 1, 1024),
        bootstrap=Bootstrap(resamples=_int(b, "resamples", f"{where}.bootstrap", db.resamples, 100, 1_000_000),
                            confidence=_num(b, "confidence", f"{where}.bootstrap", db.confidence, 0.5, 0.999)
                            or db.confidence,
                            seed=_int(b, "seed", f"{where}.bootstrap", db.seed, 0, 2**32 - 1)),
        gates=AbGates(
            min_intervals=_int(g, "min_intervals", gw, dg.min_intervals, 1, 1_000_000),
            dpf_max_drop=_num(dpf, "max_drop", f"{gw}.detections_per_frame", dg.dpf_max_drop, 0, 1) or 0.0,
            dpf_max_rise=_num(dpf, "max_rise", f"{gw}.detections_per_frame", dg.dpf_max_rise) or 0.0,
            dpf_min_abs=_num(dpf, "min_abs", f"{gw}.detections_per_frame", dg.dpf_min_abs) or 0.0,
            agreement_min=_num(ag, "min", f"{gw}.shadow_agreement", dg.agreement_min, 0, 1),
            p95_ratio_max=_num(p95, "max_ratio", f"{gw}.inference_p95_ms", dg.p95_ratio_max, 1.0),
            p95_noise_ms=_num(p95, "noise_ms", f"{gw}.inference_p95_ms", dg.p95_noise_ms) or 0.0,
            error_max_increase=_num(er, "max_increase", f"{gw}.inference_error_ratio", dg.error_max_increase, 0, 1),
        ),
    )


def ab_config(cfg: RolloutConfig) -> AbConfig:
    """The rollout configuration's ``ab`` section, checked (ConfigError naming the file and key)."""
    return parse_ab(cfg.ab, f"{cfg.path}: ab")
