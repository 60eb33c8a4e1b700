"""Simulators with exact ground truth, shared by Capture's demo sources, the demo-model training and tests.

- scenes.py   SyntheticScene: moving people/cars/bicycles, every frame a pure function of (seed, index)
- thermal.py  ThermalSimulator: a Lepton 3.5 frame and SCD41 readings per scenario (normal ... fire)
"""
