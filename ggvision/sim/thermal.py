"""Thermal camera + gas sensor simulator for the fire-risk use, deterministic by seed.

Stands in for a FLIR Lepton 3.5 (160x120 radiometric frames, degrees Celsius, ~8.7 Hz, noise
around 50 mK) and a Sensirion SCD41 (CO2 ppm, temperature, relative humidity; a reading every 5 s,
CO2 accuracy about ±(40 ppm + 5 %)). Scenarios:
  normal    room at ~21 °C, people (~30-34 °C) walking through, CO2 ~450-700 ppm
  heater    as normal plus a radiator at a steady 60-75 °C: hot but not a fire
  sunlight  a broad patch warming to 35-45 °C and drifting slowly with the sun
  cooking   a pan on a stove heating to 150-230 °C over a few minutes, flat and steady (a disc, not a
            flickering plume); the stove adds a few hundred ppm of CO2 and steam raises the humidity
  fire      a hotspot that grows and flickers, reaching several hundred °C, CO2 climbing past
            2,000 ppm, air warming and drying

`distance` (1 = the default view) stands back from the scene: the rendered room is shrunk by that factor
by area averaging (what a farther sensor's pixels integrate, so a small hotspot reads cooler) and placed
in a plain room at a seeded offset; the gas sensor, farther from the source too, sees each rise above the
room's baseline divided by it. Training data draws distances to make the fire-risk task less easy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

WIDTH, HEIGHT = 160, 120
SCENARIOS = ("normal", "heater", "sunlight", "cooking", "fire")
LEPTON_FPS = 8.7
SCD41_PERIOD_S = 5.0
MAX_DISTANCE = 8.0


@dataclass(frozen=True)
class GasReading:
    co2_ppm: float
    temperature_c: float
    humidity_pct: float

    def to_dict(self) -> dict[str, float]:
        return {
            "co2_ppm": round(self.co2_ppm, 1),
            "temperature_c": round(self.temperature_c, 2),
            "humidity_pct": round(self.humidity_pct, 1),
        }


class ThermalSimulator:
    def __init__(self, scenario: str = "normal", seed: int = 0, distance: float = 1.0) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
        if not 1.0 <= distance <= MAX_DISTANCE:
            raise ValueError(f"distance must be within 1..{MAX_DISTANCE:g}, got {distance!r}")
        self.scenario = scenario
        self.seed = seed
        self.distance = float(distance)
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        self._yy, self._xx = yy, xx
        # A fixed room: a gentle vertical gradient (warmer ceiling) and per-pixel offsets.
        self._room = (20.5 + 1.5 * (1 - yy / HEIGHT) + rng.normal(0, 0.15, (HEIGHT, WIDTH))).astype(np.float32)
        self._people = [(rng.uniform(0.02, 0.08), rng.uniform(0, 2 * math.pi), rng.uniform(30, 34)) for _ in range(2)]
        self._fire_xy = (rng.uniform(40, 120), rng.uniform(60, 100))
        # Drawn last so the other scenarios keep their seeded values: pan centre, radius, top temperature.
        self._pan = (rng.uniform(30, 130), rng.uniform(60, 100), rng.uniform(7, 13), rng.uniform(150, 230))
        # Drawn from their own stream so distance 1 keeps every earlier seeded value.
        self._view_at = np.random.default_rng((seed, 11)).uniform(0, 1, 2)

    def _blob(self, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
        return np.exp(-(((self._xx - cx) / sx) ** 2 + ((self._yy - cy) / sy) ** 2) / 2).astype(np.float32)

    def frame(self, t: float) -> np.ndarray:
        """The radiometric frame at scenario time t (seconds), float32 °C, shape (120, 160)."""
        rng = np.random.default_rng((self.seed, int(t * 1000)))
        img = self._room.copy()
        for speed, phase, temp in self._people:  # people crossing the room
            x = (math.sin(phase + t * speed * 2 * math.pi) * 0.45 + 0.5) * WIDTH
            img = np.maximum(img, 21 + (temp - 21) * self._blob(x, 70, 6, 18))
        if self.scenario == "heater":
            heater = ((self._xx > 10) & (self._xx < 40) & (self._yy > 80) & (self._yy < 110)).astype(np.float32)
            img = np.maximum(img, heater * (67 + 4 * math.sin(t / 30)))
        elif self.scenario == "sunlight":
            cx = 80 + 40 * math.sin(t / 600)
            img += (14 + 6 * math.sin(t / 300)) * self._blob(cx, 95, 30, 12)
        elif self.scenario == "cooking":
            cx, cy, radius, top = self._pan
            heat = 1 - math.exp(-t / 90)  # the pan warms up over a few minutes, then holds
            pan_t = 21 + (top - 21) * heat * (1 + 0.02 * math.sin(t / 20))
            dist = np.hypot(self._xx - cx, (self._yy - cy) * 1.6)  # seen at an angle: an ellipse
            pan = np.clip(radius - dist, 0, 1)  # flat top, one-pixel edge
            ring = np.exp(-(((dist - radius - 1.5) / 1.2) ** 2)) * (21 + 0.5 * (pan_t - 21))  # burner around it
            img = np.maximum(img, np.maximum(21 + (pan_t - 21) * pan, ring))
        elif self.scenario == "fire":
            growth = min(1.0, t / 120)  # two minutes from ignition to a developed fire
            size = 2 + 14 * growth
            peak = 60 + 440 * growth
            flicker = 1 + 0.15 * math.sin(t * 7.3) + 0.1 * rng.standard_normal()
            img = np.maximum(img, 21 + (peak * flicker - 21) * self._blob(*self._fire_xy, size, size * 1.3))
        if self.distance > 1.0:
            img = self._from_afar(img)
        img += rng.normal(0, 0.05, img.shape).astype(np.float32)  # sensor noise (NETD ~50 mK)
        return img

    def _from_afar(self, img: np.ndarray) -> np.ndarray:
        w, h = max(1, round(WIDTH / self.distance)), max(1, round(HEIGHT / self.distance))
        small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        out = self._room.copy()
        x0, y0 = int(self._view_at[0] * (WIDTH - w)), int(self._view_at[1] * (HEIGHT - h))
        out[y0:y0 + h, x0:x0 + w] = small
        return out

    def gas(self, t: float) -> GasReading:
        rng = np.random.default_rng((self.seed, 7, int(t / SCD41_PERIOD_S)))
        co2, temp, rh = 520 + 80 * math.sin(t / 900), 21.5, 45.0
        if self.scenario == "heater":
            temp, rh = 23.5, 38.0
        elif self.scenario == "sunlight":
            temp = 22.5 + 1.5 * math.sin(t / 600)
        elif self.scenario == "cooking":
            heat = 1 - math.exp(-t / 180)
            co2 += 450 * heat  # a gas hob burning, people in the kitchen
            temp += 1.5 * heat
            rh += 10 * heat  # steam
        elif self.scenario == "fire":
            growth = min(1.0, t / 120)
            co2 += 2400 * growth**1.5
            temp += 9 * growth
            rh -= 15 * growth
        d = self.distance  # a farther sensor sees each rise above the room's baseline diluted
        co2, temp, rh = 520 + (co2 - 520) / d, 21.5 + (temp - 21.5) / d, 45.0 + (rh - 45.0) / d
        co2 += rng.normal(0, 40 + 0.05 * co2) / 2
        return GasReading(float(max(400.0, co2)), float(temp + rng.normal(0, 0.2)), float(rh + rng.normal(0, 0.8)))
