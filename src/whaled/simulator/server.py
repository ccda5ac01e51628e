"""Start and stop the simulator on a local port, with an optional background task that evolves the world."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from aiohttp import web

from whaled.log import simulator_logger as logger
from whaled.simulator._format import SimulatorError
from whaled.simulator.app import LEADERBOARD_PREFIX, OPENAPI_PREFIX, create_app
from whaled.simulator.faults import Faults
from whaled.simulator.state import SimulatorState

__all__ = ["RunningSimulator", "start_simulator"]

# Requests still running at close (hanging ones are released first) get this long before cancellation.
_SHUTDOWN_TIMEOUT_S = 2.0


class RunningSimulator:
    """A simulator serving on ``host:port``; close it with :meth:`close` or ``async with``."""

    def __init__(
        self,
        runner: web.AppRunner,
        *,
        host: str,
        port: int,
        state: SimulatorState,
        faults: Faults,
        evolve_every_s: float | None,
    ) -> None:
        self.state = state
        self.faults = faults
        self.host = host
        self.port = port
        self._runner = runner
        self._evolve_task: asyncio.Task[None] | None = None
        if evolve_every_s is not None:
            self._evolve_task = asyncio.create_task(
                self._evolve(evolve_every_s), name=f"whaled-simulator-evolve-{port}"
            )

    @property
    def base_url(self) -> str:
        """The OpenAPI base, for ``OpinionClient(base_url=...)``."""
        return f"http://{self._url_host}:{self.port}{OPENAPI_PREFIX}"

    @property
    def leaderboard_url(self) -> str:
        """The base of the web-app endpoints, for ``OpinionClient(leaderboard_url=...)``."""
        return f"http://{self._url_host}:{self.port}{LEADERBOARD_PREFIX}"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    async def close(self) -> None:
        """Stop evolving, release hanging requests, and stop the server."""
        if self._evolve_task is not None:
            self._evolve_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._evolve_task
            self._evolve_task = None
        self.faults.release()
        await self._runner.cleanup()
        logger.info("Simulator on port %d stopped after %d requests", self.port, len(self.faults.requests))

    async def __aenter__(self) -> RunningSimulator:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _evolve(self, every_s: float) -> None:
        """Advance the world by the time that really passed, every ``every_s`` seconds."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(every_s)
            now = loop.time()
            try:
                self.state.advance(now - last)
            except Exception:
                logger.exception("Simulator evolve step failed; the world stays as it was")
            last = now


async def start_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int = 7,
    evolve_every_s: float | None = 2.0,
    api_key: str | None = None,
    state: SimulatorState | None = None,
) -> RunningSimulator:
    """Serve a simulated Opinion API on ``host:port`` (0 picks a free port).

    :param seed: selects the world when ``state`` is not given.
    :param evolve_every_s: how often a background task advances the world by the time that passed; None
        leaves the world still until the caller calls ``state.advance``.
    :param api_key: the key ``/trade/*`` and ``/positions/*`` require in the ``apikey`` header; None for none.
    :param state: a prepared world, for example one with a fixed clock.
    """
    if evolve_every_s is not None and evolve_every_s <= 0:
        raise SimulatorError(f"evolve_every_s must be positive or None, got {evolve_every_s!r}")
    if state is None:
        # Building the week of history takes tens of milliseconds: keep it off the event loop.
        state = await asyncio.to_thread(SimulatorState, seed)
    faults = Faults()
    runner = web.AppRunner(
        create_app(state, faults, api_key=api_key), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = _bound_port(runner)
    logger.info("Simulator serving on %s:%d (seed %d)", host, bound_port, state.seed)
    return RunningSimulator(
        runner, host=host, port=bound_port, state=state, faults=faults, evolve_every_s=evolve_every_s
    )


def _bound_port(runner: web.AppRunner) -> int:
    address = runner.addresses[0]
    return int(address[1])
