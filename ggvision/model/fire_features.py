"""Features of the fire-risk model: 15 from one radiometric thermal frame, 3 from the gas sensor.

One frame at a time (no history), so a reading can be scored the moment it arrives. The thermal
features are chosen to tell a fire from things that are merely hot: a heater is a large flat area
at 60-75 °C, sunlight a broad mild patch, a pan on a stove a flat disc at 150-230 °C with sharp
edges; a fire is a peaked, flickering plume whose hot area and peak keep growing. So besides levels
and hot-pixel fractions there are shape features: how flat the top of the hottest region is, how
sharp its peak is, how spread out the hot pixels are, and the edge strength around them.
The order of FEATURE_NAMES is the model's input order (model-manifest input.features).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

THERMAL_SHAPE = (120, 160)  # FLIR Lepton 3.5, rows x columns, °C
GAS_KEYS = ("co2_ppm", "temperature_c", "humidity_pct")
FEATURE_NAMES = (
    "t_max", "t_mean", "t_std", "t_p95", "t_p99",
    "frac_above_50", "frac_above_100", "frac_above_150",
    "hot_area_frac",  # pixels hotter than max(40 °C, median + 15 °C)
    "hot_spread_px",  # spatial spread (RMS distance from the centroid) of those pixels
    "grad_max", "grad_mean_hot",  # gradient magnitude, °C per pixel: overall max, mean over the hot region
    "max_minus_median",
    "peak_flatness",  # area within 10 % of the peak excess / area within 50 %: ~1 flat top, ~0.15 a peak
    "peak_sharpness",  # drop from the max to the mean of its 5x5 neighbourhood, relative to the excess
    *GAS_KEYS,
)
PLAUSIBLE_C = (-40.0, 1200.0)  # beyond the Lepton's high-gain/low-gain range: a broken frame, not a reading


def _gas_values(gas: Any) -> list[float]:
    values = []
    for key in GAS_KEYS:
        if isinstance(gas, Mapping):
            if key not in gas:
                raise ValueError(f"gas reading: missing {key!r} (need {', '.join(GAS_KEYS)})")
            v = gas[key]
        elif hasattr(gas, key):
            v = getattr(gas, key)
        else:
            raise ValueError(f"gas reading: expected a mapping with {', '.join(GAS_KEYS)}, got {type(gas).__name__}")
        if isinstance(v, bool) or not isinstance(v, int | float | np.number) or not math.isfinite(float(v)):
            raise ValueError(f"gas reading: {key!r} must be a finite number, got {v!r}")
        values.append(float(v))
    return values


def _thermal(thermal_c: Any) -> np.ndarray:
    if not isinstance(thermal_c, np.ndarray):
        raise ValueError(f"thermal frame: expected a numpy array, got {type(thermal_c).__name__}")
    img = thermal_c[..., 0] if thermal_c.ndim == 3 and thermal_c.shape[2] == 1 else thermal_c
    if img.shape != THERMAL_SHAPE:
        raise ValueError(f"thermal frame: expected shape {THERMAL_SHAPE} (or with one trailing channel), "
                         f"got {thermal_c.shape}")
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"thermal frame: expected degrees Celsius as floats, got dtype {img.dtype}")
    img = img.astype(np.float32, copy=False)
    bad = ~np.isfinite(img)
    if bad.any():
        raise ValueError(f"thermal frame: {int(bad.sum())} NaN or infinite pixel(s)")
    lo, hi = float(img.min()), float(img.max())
    if lo < PLAUSIBLE_C[0] or hi > PLAUSIBLE_C[1]:
        raise ValueError(f"thermal frame: values {lo:.1f}..{hi:.1f} °C are outside {PLAUSIBLE_C[0]:g}.."
                         f"{PLAUSIBLE_C[1]:g} °C (not a radiometric frame in °C?)")
    return img


def feature_vector(thermal_c: np.ndarray, gas: Mapping[str, Any] | Any) -> np.ndarray:
    """The (18,) float32 feature vector of one thermal frame (°C, 120x160) and one gas reading.

    ``gas`` is a mapping with co2_ppm, temperature_c, humidity_pct (a gas/1.0 message) or an object
    with those attributes. ValueError names the problem for a wrong shape, NaN pixels or a bad reading.
    """
    img = _thermal(thermal_c)
    gas_values = _gas_values(gas)
    t_max = float(img.max())
    median = float(np.median(img))
    p95, p99 = (float(v) for v in np.percentile(img, (95, 99)))
    n = img.size
    excess = max(t_max - median, 1e-3)

    hot = img > max(40.0, median + 15.0)
    hot_n = int(hot.sum())
    gy, gx = np.gradient(img)
    grad = np.hypot(gx, gy)
    if hot_n:
        ys, xs = np.nonzero(hot)
        spread = float(np.sqrt(xs.var() + ys.var()))
        grad_hot = float(grad[hot].mean())
    else:
        spread = grad_hot = 0.0

    near_top = int((img > median + 0.9 * excess).sum())
    upper_half = int((img > median + 0.5 * excess).sum())
    y, x = np.unravel_index(int(img.argmax()), img.shape)
    patch = img[max(0, y - 2):y + 3, max(0, x - 2):x + 3]
    sharpness = (t_max - float(patch.mean())) / excess

    out = np.array([
        t_max, float(img.mean()), float(img.std()), p95, p99,
        float((img > 50).sum()) / n, float((img > 100).sum()) / n, float((img > 150).sum()) / n,
        hot_n / n, spread, float(grad.max()), grad_hot, t_max - median,
        near_top / max(upper_half, 1), sharpness,
        *gas_values,
    ], np.float32)
    return out
