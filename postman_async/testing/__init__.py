"""Test support: a faithful local Postman v2 simulator and a pytest plugin."""

from .process import SimulatorProcess
from .simulator import Faults, PostmanSimulator, RequestRecord, SimulatorStats
from .state import TEST_NUMBERS, Campaign

__all__ = [
    "TEST_NUMBERS",
    "Campaign",
    "Faults",
    "PostmanSimulator",
    "RequestRecord",
    "SimulatorProcess",
    "SimulatorStats",
]
