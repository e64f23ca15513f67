"""Fixtures of the core regression tests: the Hubject stand-in on a loopback port and an HTTP session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.reliability.hubject_standin import HubjectStandIn, serve_standin


@pytest.fixture
async def standin() -> AsyncIterator[HubjectStandIn]:
    async with serve_standin() as served:
        yield served


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
