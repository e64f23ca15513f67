"""The Hubject simulator: a stand-in for Hubject QA's EVSE status service, for tests and integrators."""

from oicp.simulator.app import HubjectSimulator, LoggedRequest
from oicp.simulator.faults import FaultKind, Faults
from oicp.simulator.server import ServedSimulator, serve_simulator
from oicp.simulator.state import PushOutcome, SimulatorState

__all__ = [
    "FaultKind",
    "Faults",
    "HubjectSimulator",
    "LoggedRequest",
    "PushOutcome",
    "ServedSimulator",
    "SimulatorState",
    "serve_simulator",
]
