"""The thermal + gas simulator behaves like the sensors it stands in for, per scenario."""

from __future__ import annotations

import numpy as np
import pytest

from ggvision.sim.thermal import HEIGHT, WIDTH, ThermalSimulator


def test_frames_are_radiometric_and_deterministic() -> None:
    a, b = ThermalSimulator("normal", seed=3), ThermalSimulator("normal", seed=3)
    f = a.frame(12.5)
    assert f.shape == (HEIGHT, WIDTH) and f.dtype == np.float32
    assert np.array_equal(f, b.frame(12.5))
    assert 15 < float(np.median(f)) < 28  # a room, in °C
    assert not np.array_equal(f, ThermalSimulator("normal", seed=4).frame(12.5))


@pytest.mark.parametrize(("scenario", "lo", "hi"), [("normal", 28, 40), ("heater", 55, 80), ("sunlight", 33, 70)])
def test_hot_but_not_fire_scenarios(scenario: str, lo: float, hi: float) -> None:
    sim = ThermalSimulator(scenario, seed=1)
    peaks = [float(sim.frame(t).max()) for t in range(0, 600, 30)]
    assert lo <= max(peaks) <= hi
    co2 = [sim.gas(t).co2_ppm for t in range(0, 600, 5)]
    assert max(co2) < 1000


def test_fire_grows_hot_and_raises_co2() -> None:
    sim = ThermalSimulator("fire", seed=1)
    early, late = sim.frame(5).max(), sim.frame(180).max()
    assert early < 150 < 300 < late
    hot_area = [(sim.frame(t) > 100).sum() for t in (30, 60, 120)]
    assert hot_area == sorted(hot_area) and hot_area[-1] > hot_area[0]
    assert sim.gas(0).co2_ppm < 800 < 2000 < sim.gas(180).co2_ppm
    assert sim.gas(180).humidity_pct < sim.gas(0).humidity_pct


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="scenario"):
        ThermalSimulator("volcano")


def test_capture_configuration_offers_the_simulator_scenarios() -> None:
    """The configuration model (which may not import the simulator) names the same scenarios and rate."""
    from ggvision.config.capture import LEPTON_FPS as CONFIG_FPS
    from ggvision.config.capture import SCENARIOS as CONFIG_SCENARIOS
    from ggvision.sim.thermal import LEPTON_FPS, SCENARIOS

    assert CONFIG_SCENARIOS == SCENARIOS and CONFIG_FPS == LEPTON_FPS


def test_worker_stops_and_joins_cleanly() -> None:
    """A Thread subclass must not shadow Thread._stop (Thread.join calls it): stopping once raised
    "TypeError: 'Event' object is not callable" in the thread machinery at shutdown."""
    import threading

    from ggvision.capture.thermal import ThermalWorker

    got = threading.Event()
    w = ThermalWorker("t1", "normal", 1, 50.0, lambda frame, ts: got.set(), lambda gas: None)
    w.start()
    assert got.wait(5)
    w.stop()
    assert not w.is_alive()
    w.join()  # joining a finished thread again runs Thread._stop: must not raise


def test_thermal_worker_keeps_its_pace_when_the_wall_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wall clock stepped back an hour must not stop the sensor for an hour (it is paced by the monotonic
    clock); its readings carry the wall clock's time as it is."""
    import threading
    import time

    from ggvision.capture.thermal import ThermalWorker

    offset = [0.0]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])
    stamps: list[float] = []
    ten = threading.Event()

    def on_frame(frame: np.ndarray, ts: float) -> None:
        stamps.append(ts)
        if len(stamps) >= 10 and stamps[-1] < real() - 1800:
            ten.set()

    w = ThermalWorker("t1", "normal", 1, 20.0, on_frame, lambda gas: None)
    w.start()
    try:
        while len(stamps) < 3:
            time.sleep(0.01)
        offset[0] = -3600.0
        assert ten.wait(5), f"{len(stamps)} frames, the last stamped {real() - stamps[-1]:.0f} s ago"
    finally:
        w.stop()
    assert stamps[-1] < real() - 3500  # stamped with the (stepped) wall clock


def test_distance_shrinks_the_scene_and_dilutes_the_gas() -> None:
    near, far = ThermalSimulator("fire", seed=1), ThermalSimulator("fire", seed=1, distance=4.0)
    assert np.array_equal(near.frame(60.0), ThermalSimulator("fire", seed=1, distance=1.0).frame(60.0))
    assert np.array_equal(far.frame(60.0), ThermalSimulator("fire", seed=1, distance=4.0).frame(60.0))
    assert (far.frame(60.0) > 50).sum() < (near.frame(60.0) > 50).sum() / 4  # a smaller hotspot
    assert far.frame(60.0).shape == (HEIGHT, WIDTH)
    rise_near, rise_far = near.gas(240).co2_ppm - 520, far.gas(240).co2_ppm - 520
    assert rise_far < rise_near / 2  # the sensor is farther from the smoke too
    with pytest.raises(ValueError, match="distance"):
        ThermalSimulator("fire", seed=1, distance=0.5)
