"""The poller against a sender that advertises its Locations URL with a trailing slash and routes only
that spelling (issue 12 item 2), and its log events: structured, one line when the feed fails and one
when it recovers (item 13)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from bridge.config import SourceConfig
from bridge.ocpi.poller import PollError, SenderPoller
from tests.bridge.conftest import wait_for
from tests.ocpi.conftest import RecordingLocations, load_example

TOKEN = "slash-token"


@dataclass
class Sender:
    server: TestServer
    failing: bool = False
    requests: int = 0

    @property
    def versions_url(self) -> str:
        return str(self.server.make_url("/ocpi/versions"))


def envelope(data: object) -> web.Response:
    return web.json_response(
        {"data": data, "status_code": 1000, "status_message": "OK", "timestamp": "2030-01-01T00:00:00Z"}
    )


@pytest.fixture
async def sender() -> AsyncIterator[Sender]:
    app = web.Application()
    state: dict[str, Sender] = {}

    async def versions(request: web.Request) -> web.Response:
        return envelope([{"version": "2.2.1", "url": str(request.url.with_path("/ocpi/2.2.1"))}])

    async def details(request: web.Request) -> web.Response:
        locations = str(request.url.with_path("/ocpi/2.2.1/locations/"))  # advertised with its slash
        return envelope(
            {
                "version": "2.2.1",
                "endpoints": [{"identifier": "locations", "role": "SENDER", "url": locations}],
            }
        )

    async def locations(request: web.Request) -> web.Response:
        state["sender"].requests += 1
        if state["sender"].failing:
            return web.json_response({"status_code": 3000, "status_message": "down"}, status=503)
        return envelope([load_example("2.2.1", "location_example.json")])

    app.router.add_get("/ocpi/versions", versions)
    app.router.add_get("/ocpi/2.2.1", details)
    app.router.add_get("/ocpi/2.2.1/locations/", locations)  # only this spelling: no slash is a 404
    server = TestServer(app)
    await server.start_server()
    state["sender"] = Sender(server)
    yield state["sender"]
    await server.close()


def poller(sender: Sender, store: RecordingLocations, **options: object) -> SenderPoller:
    source = SourceConfig(versions_url=sender.versions_url, token=TOKEN, poll_interval=0.01)
    return SenderPoller(source, store, store.db, rng=random.Random(1), retry_base=0.001, **options)  # type: ignore[arg-type]


async def test_the_locations_url_is_used_as_advertised(sender: Sender, store: RecordingLocations) -> None:
    polling = poller(sender, store)
    try:
        with capture_logs() as logs:
            result = await polling.poll_once()
    finally:
        await polling.aclose()
    assert result.locations == 1
    assert await store.location_count("BE", "BEC") == 1
    (done,) = [e for e in logs if e["event"] == "ocpi_poll_done"]
    assert done["locations"] == 1
    assert done["source"] == sender.versions_url
    assert all(isinstance(e["event"], str) and "PollResult(" not in e["event"] for e in logs)


async def test_one_line_when_the_feed_fails_and_one_when_it_recovers(
    sender: Sender, store: RecordingLocations
) -> None:
    sender.failing = True
    polling = poller(sender, store, page_attempts=1, max_backoff=0.02)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(polling.run(stop))
        try:
            await wait_for(lambda: asyncio.sleep(0, polling.consecutive_failures >= 4), within=20)
            sender.failing = False
            await wait_for(lambda: asyncio.sleep(0, polling.consecutive_failures == 0), within=20)
        finally:
            stop.set()
            await task
            await polling.aclose()
    events = [e["event"] for e in logs if e["log_level"] != "debug"]
    assert events.count("ocpi_source_failing") == 1
    assert events.count("ocpi_source_recovered") == 1
    recovered = next(e for e in logs if e["event"] == "ocpi_source_recovered")
    assert recovered["failed_polls"] >= 4
    failing = next(e for e in logs if e["event"] == "ocpi_source_failing")
    assert failing["log_level"] == "warning"
    assert "503" in failing["error"]


async def test_a_source_that_cannot_work_as_configured_logs_at_error(store: RecordingLocations) -> None:
    app = web.Application()

    async def versions(request: web.Request) -> web.Response:
        return envelope([{"version": "2.1.1", "url": str(request.url.with_path("/ocpi/2.1.1"))}])

    async def details(request: web.Request) -> web.Response:
        url = str(request.url.with_path("/ocpi/2.1.1/locations"))
        return envelope({"version": "2.1.1", "endpoints": [{"identifier": "locations", "url": url}]})

    async def locations(request: web.Request) -> web.Response:
        return envelope([load_example("2.1.1", "mod_locations__06.json")])

    app.router.add_get("/ocpi/versions", versions)
    app.router.add_get("/ocpi/2.1.1", details)
    app.router.add_get("/ocpi/2.1.1/locations", locations)
    async with TestServer(app) as server:
        source = SourceConfig(versions_url=str(server.make_url("/ocpi/versions")), token=TOKEN)
        polling = SenderPoller(source, store, store.db)  # 2.1.1 without country_code/party_id
        stop = asyncio.Event()
        with capture_logs() as logs:
            task = asyncio.create_task(polling.run(stop))
            await wait_for(lambda: asyncio.sleep(0, polling.consecutive_failures >= 1), within=20)
            stop.set()
            await task
        await polling.aclose()
        once = SenderPoller(source, store, store.db)
        with pytest.raises(PollError, match="set country_code and party_id"):
            await once.poll_once()
        await once.aclose()
    failing = next(e for e in logs if e["event"] == "ocpi_source_failing")
    assert (failing["log_level"], failing["permanent"]) == ("error", True)
