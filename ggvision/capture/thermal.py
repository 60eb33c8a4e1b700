"""The simulated thermal camera + gas sensor of Capture: a ThermalSimulator (ggvision.sim.thermal) paced in
real time, frames and SCD41 readings handed to callbacks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..sim.thermal import SCD41_PERIOD_S, ThermalSimulator


class ThermalWorker(threading.Thread):
    """Paces a simulator in real time: frames to `on_frame`, SCD41 readings to `on_gas`."""

    def __init__(
        self,
        sensor_id: str,
        scenario: str,
        seed: int,
        fps: float,
        on_frame: Callable[[np.ndarray, float], None],
        on_gas: Callable[[dict[str, Any]], None],
    ) -> None:
        super().__init__(name=f"thermal-{sensor_id}", daemon=True)
        self.sensor_id = sensor_id
        self.sim = ThermalSimulator(scenario, seed)
        self.fps = fps
        self.on_frame, self.on_gas = on_frame, on_gas
        self._halt = threading.Event()  # not `_stop`: that name is threading.Thread's own method
        self.frames = 0

    def run(self) -> None:
        # Paced (and the scene's time kept) by the monotonic clock: a wall clock stepped back an hour must not
        # stop the sensor for an hour. Readings are stamped with the wall clock when they are taken.
        t0 = time.monotonic()
        next_gas = 0.0
        period = 1.0 / self.fps
        while not self._halt.wait(max(0.0, t0 + self.frames * period - time.monotonic())):
            now = time.time()
            t = time.monotonic() - t0
            self.on_frame(self.sim.frame(t)[:, :, None], now)
            self.frames += 1
            if t >= next_gas:
                next_gas += SCD41_PERIOD_S
                self.on_gas(
                    {
                        "schema": "gas/1.0",
                        "sensor": self.sensor_id,
                        "timestamp": now,
                        "scenario": self.sim.scenario,
                        **self.sim.gas(t).to_dict(),
                    }
                )

    def stop(self, timeout: float = 5.0) -> None:
        self._halt.set()
        self.join(timeout)
