"""A built-in Opinion API on 127.0.0.1 for ``whaled demo`` and the tests.

It serves the live response shapes (envelope, field names, types and units) from a deterministic world that
evolves over time, with fault switches for failure tests::

    async with await start_simulator(evolve_every_s=None) as simulator:
        client = OpinionClient(simulator.base_url, leaderboard_url=simulator.leaderboard_url)
        simulator.faults.rate_limit(retry_after=1, count=1)
        simulator.state.advance(60)
"""

from whaled.simulator._format import SimulatorError
from whaled.simulator.app import create_app
from whaled.simulator.faults import Fault, FaultKind, Faults, RequestRecord
from whaled.simulator.server import RunningSimulator, start_simulator
from whaled.simulator.state import SimulatorState

__all__ = [
    "Fault",
    "FaultKind",
    "Faults",
    "RequestRecord",
    "RunningSimulator",
    "SimulatorError",
    "SimulatorState",
    "create_app",
    "start_simulator",
]
