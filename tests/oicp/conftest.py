"""Fixtures for the OICP library tests: a Hubject simulator on a real loopback socket with real TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from oicp import ClientSettings, RetryPolicy
from oicp.simulator import HubjectSimulator, ServedSimulator, serve_simulator
from tests.conftest import TLSMaterial


@pytest.fixture
def simulator() -> HubjectSimulator:
    return HubjectSimulator()


@pytest.fixture
async def served(simulator: HubjectSimulator, tls: TLSMaterial) -> AsyncIterator[ServedSimulator]:
    """The simulator over HTTPS, requiring a client certificate signed by the test CA (as Hubject does)."""
    async with serve_simulator(
        simulator, ssl_context=tls.server_context(require_client_cert=True)
    ) as running:
        yield running


@pytest.fixture
def settings(served: ServedSimulator, tls: TLSMaterial) -> ClientSettings:
    return ClientSettings(
        url=served.url,
        client_cert=tls.client_cert,
        client_key=tls.client_key,
        ca_cert=tls.ca_cert,
        connect_timeout=2.0,
        timeout=2.0,
        max_attempts=4,
    )


@pytest.fixture
def fast_retries() -> RetryPolicy:
    """Real backoff with small numbers, so retried tests finish quickly."""
    return RetryPolicy(max_attempts=4, initial_wait=0.01, multiplier=2.0, max_wait=0.05, budget=30.0)
