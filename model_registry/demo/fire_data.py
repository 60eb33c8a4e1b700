"""Fire-risk rows from the thermal + gas simulator: one row per (scenario, seed, time).

Each row is FEATURE_NAMES of one simulated Lepton frame and the SCD41 reading of the same moment,
labelled 1 for the fire scenario (from ignition on, so the early, still small fire is in the data)
and 0 for normal, heater, sunlight and cooking. Seeds split train / held-out evaluation. Each (scenario, seed)
is seen from a distance drawn uniformly from `distances` (ThermalSimulator's `distance`: smaller, cooler-reading
hotspots and diluted gas), so the classes overlap as they would for sensors mounted at different heights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ggvision.model.fire_features import feature_vector
from ggvision.sim.thermal import SCENARIOS, ThermalSimulator

FIRE = "fire"
HORIZON_S = 900.0  # non-fire scenarios are sampled over 15 minutes (sun drift, pan warm-up, CO2 cycle)
FIRE_HORIZON_S = 300.0


@dataclass(frozen=True)
class Rows:
    x: np.ndarray  # (n, 18) float32
    y: np.ndarray  # (n,) int64, 1 = fire
    scenario: np.ndarray  # (n,) str
    t: np.ndarray  # (n,) float64 scenario time, s
    distance: np.ndarray  # (n,) float64 the simulator's viewing distance


def sample_times(scenario: str, count: int, rng: np.random.Generator) -> np.ndarray:
    if scenario == FIRE:
        # Half in the first minute after ignition: the early fire is the one worth catching.
        early = rng.uniform(0, 60, count // 2)
        return np.concatenate([early, rng.uniform(60, FIRE_HORIZON_S, count - len(early))])
    return rng.uniform(0, HORIZON_S, count)


def make_rows(seeds: Sequence[int], per_seed: int, scenarios: Sequence[str] = SCENARIOS, seed: int = 0,
              distances: tuple[float, float] = (1.0, 1.0)) -> Rows:
    rng = np.random.default_rng(seed)
    xs, ys, names, times, dists = [], [], [], [], []
    for scenario in scenarios:
        for s in seeds:
            d = float(rng.uniform(*distances)) if distances[1] > distances[0] else distances[0]
            sim = ThermalSimulator(scenario, s, distance=d)
            for t in sample_times(scenario, per_seed, rng):
                xs.append(feature_vector(sim.frame(float(t)), sim.gas(float(t))))
                ys.append(int(scenario == FIRE))
                names.append(scenario)
                times.append(float(t))
                dists.append(d)
    return Rows(np.stack(xs).astype(np.float32), np.array(ys, np.int64), np.array(names), np.array(times),
                np.array(dists))

