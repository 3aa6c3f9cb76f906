"""Simulators, so that nobody needs a real meter or radio: a smart meter that behaves like
one (`meter`, over `load` and `registers`), fleets of them (`fleet`), and simulated time
(`clock`). Everything listens on loopback only."""

from .clock import Clock, ManualClock, ScaledClock
from .fleet import SimFleet
from .meter import MeterConfig, MeterEndpoint, MeterFaults, SimulatedMeter

__all__ = [
    "Clock", "ManualClock", "MeterConfig", "MeterEndpoint", "MeterFaults", "ScaledClock",
    "SimFleet", "SimulatedMeter",
]  # fmt: skip
