"""Run a HubjectSimulator on a real socket for the duration of an ``async with``."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from oicp.simulator.app import API_PREFIX, HubjectSimulator


@dataclass(frozen=True)
class ServedSimulator:
    simulator: HubjectSimulator
    host: str
    port: int
    scheme: str

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OICP server URL, as a client's ``[hubject] url`` (ends in ``/api/oicp``)."""
        return self.base_url + API_PREFIX


@asynccontextmanager
async def serve_simulator(
    simulator: HubjectSimulator,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[ServedSimulator]:
    runner = web.AppRunner(simulator.build_app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
        bound_port = runner.addresses[0][1]
        yield ServedSimulator(simulator, host, bound_port, "https" if ssl_context else "http")
    finally:
        await runner.cleanup()
