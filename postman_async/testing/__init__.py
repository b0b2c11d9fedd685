"""Test support: a faithful local Postman v2 simulator and a pytest plugin."""

from .gateway import Faults, RequestRecord
from .ground_truth import PostLedger, batch_key, send_key
from .network import Network
from .process import SimulatorProcess
from .simulator import PostmanSimulator, SimulatorStats
from .state import TEST_NUMBERS, Campaign

__all__ = [
    "TEST_NUMBERS",
    "Campaign",
    "Faults",
    "Network",
    "PostLedger",
    "PostmanSimulator",
    "RequestRecord",
    "SimulatorProcess",
    "SimulatorStats",
    "batch_key",
    "send_key",
]
