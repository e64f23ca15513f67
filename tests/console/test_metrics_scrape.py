"""``/metrics`` tells the truth at the moment of the scrape: a real bridge, the Hubject simulator, real
scrapes."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from datetime import UTC
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from bridge.dispatcher import ResyncResult
from bridge.metrics import RESYNC_RESULTS
from oicp.simulator import HubjectSimulator, serve_simulator
from tests.bridge.conftest import wait_for
from tests.conftest import TLSMaterial
from tests.console.conftest import (
    ADMIN_TOKEN,
    OPERATOR,
    config,
    push_fleet,
    running,
    scrape,
    serve,
    small_fleet,
    status_json,
    value,
)


def oldest_unacknowledged_since(db: Path) -> float:
    with sqlite3.connect(db) as conn:
        (since,) = conn.execute(
            "SELECT MIN(pending_since) FROM outbox WHERE state IN ('pending', 'in_flight')"
        ).fetchone()
    assert since is not None
    return float(since)


async def test_during_an_outage_the_oldest_wait_gauge_follows_the_truth_every_second(tmp_path: Path) -> None:
    async with serve_simulator(HubjectSimulator()) as hubject:
        hubject.simulator.faults.error_5xx_rate = 1.0  # Hubject down; the client keeps retrying in flight
        hubject.simulator.faults.retry_after = None
        # A long retry budget and a long lane backoff: the lane does not wake up during the test, so only
        # a gauge computed at scrape time can follow the clock.
        cfg = config(
            tmp_path,
            hubject,
            push={
                "flush_interval": 0.05,
                "max_retry_interval": 60,
                "retry_budget": 300,
                "shutdown_timeout": 1,
            },
        )
        async with running(cfg) as bridge:
            await push_fleet(bridge, small_fleet())

            async def in_flight() -> bool:
                return bool((await status_json(bridge))["operators"][OPERATOR]["in_flight"] == 3)

            await wait_for(in_flight, within=10)
            since = oldest_unacknowledged_since(tmp_path / "bridge.db")
            seen = []
            for _ in range(5):
                samples = await scrape(bridge)
                truth = time.time() - since
                gauge = value(samples, "oicp_bridge_oldest_pending_age_seconds", operator_id=OPERATOR)
                assert abs(gauge - truth) < 1.0, (gauge, truth)
                assert value(samples, "oicp_bridge_pending_records", operator_id=OPERATOR) == 3
                seen.append(gauge)
                await asyncio.sleep(1.0)  # the scrape cadence under test, not a wait for work
            hubject.simulator.faults.error_5xx_rate = 0.0
    assert all(later > earlier + 0.5 for earlier, later in itertools.pairwise(seen)), seen


async def test_a_real_scrape_has_every_family_with_bounded_initialised_labels(
    tmp_path: Path, tls: TLSMaterial
) -> None:
    async with serve_simulator(HubjectSimulator()) as hubject:
        cfg = config(tmp_path, hubject)
        async with running(cfg) as bridge:
            text = await _metrics_text(bridge.admin_url)
            samples = await scrape(bridge)
    assert "_created" not in text  # no doubled series (docs/metrics.md)
    names = {name for name, _ in samples}
    for family in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"):
        assert family in names
    build = [labels for name, labels in samples if name == "oicp_bridge_build_info"]
    assert len(build) == 1
    assert dict(build[0])["version"]
    assert value(samples, "oicp_bridge_ready") == 1.0
    assert value(samples, "oicp_bridge_operator_failing", operator_id=OPERATOR) == 0.0
    assert value(samples, "oicp_bridge_last_success_timestamp_seconds", operator_id=OPERATOR) == 0.0
    # counters exist before their first event, for every known label value
    assert value(samples, "oicp_bridge_records_pushed_total", operator_id=OPERATOR, result="dead") == 0.0
    for result in RESYNC_RESULTS:
        assert value(samples, "oicp_bridge_resyncs_total", operator_id=OPERATOR, result=result) == 0.0
    assert value(samples, "oicp_bridge_hubject_requests_total", http_status="503", oicp_code="none") == 0.0
    assert value(samples, "oicp_bridge_feed_rejected_authentications_total", party="DE/OBD") == 0.0
    assert value(samples, "oicp_bridge_feed_stale", kind="push", feed="DE/OBD") == 0.0
    assert value(samples, "oicp_bridge_observations_total", ocpi_status="AVAILABLE") == 0.0


def test_resync_results_initialised_are_the_dispatchers() -> None:
    assert set(RESYNC_RESULTS) == {r.value for r in ResyncResult}


async def test_hubject_answers_are_counted_by_http_status_and_oicp_code(tmp_path: Path) -> None:
    async with serve_simulator(HubjectSimulator()) as hubject:
        hubject.simulator.faults.error_5xx_rate = 1.0
        hubject.simulator.faults.error_5xx_status = 503
        hubject.simulator.faults.retry_after = None
        async with running(config(tmp_path, hubject)) as bridge:
            await push_fleet(bridge, small_fleet())

            async def failing() -> bool:
                samples = await scrape(bridge)
                return value(samples, "oicp_bridge_operator_failing", operator_id=OPERATOR) == 1.0

            await wait_for(failing, within=15)
            samples = await scrape(bridge)
            assert (
                value(samples, "oicp_bridge_hubject_requests_total", http_status="503", oicp_code="none") > 0
            )
            assert value(samples, "oicp_bridge_ready") == 0.0
            assert value(samples, "oicp_bridge_push_failing_seconds", operator_id=OPERATOR) > 0
            hubject.simulator.faults.error_5xx_rate = 0.0

            async def recovered() -> bool:
                samples = await scrape(bridge)
                return value(samples, "oicp_bridge_operator_failing", operator_id=OPERATOR) == 0.0

            await wait_for(recovered, within=15)
            samples = await scrape(bridge)
            assert (
                value(samples, "oicp_bridge_hubject_requests_total", http_status="200", oicp_code="000") > 0
            )
            assert value(samples, "oicp_bridge_last_success_timestamp_seconds", operator_id=OPERATOR) > 0
            assert value(samples, "oicp_bridge_push_failing_seconds", operator_id=OPERATOR) == 0.0


async def test_client_certificate_expiry_is_exported(tmp_path: Path, tls: TLSMaterial) -> None:
    expected = x509.load_pem_x509_certificate(tls.client_cert.read_bytes()).not_valid_after_utc
    async with serve_simulator(HubjectSimulator()) as hubject:
        hubject_section = {
            "url": hubject.url,
            "timeout": 2,
            "client_cert": str(tls.client_cert),
            "client_key": str(tls.client_key),
        }
        async with running(config(tmp_path, hubject, hubject=hubject_section)) as bridge:
            samples = await scrape(bridge)
    assert (
        value(samples, "oicp_bridge_client_cert_expiry_timestamp_seconds")
        == expected.astimezone(UTC).timestamp()
    )


async def test_with_the_polled_sender_stopped_the_feed_is_stale_within_the_threshold(tmp_path: Path) -> None:
    from bridge.ocpi.cpo_sim.sender import CpoSender
    from bridge.ocpi.versions import OcpiVersion
    from tests.console.conftest import CPO_TOKEN

    threshold = 1.5
    sender = CpoSender(small_fleet(), versions=(OcpiVersion.V2_2_1,), tokens=[CPO_TOKEN])
    async with serve_simulator(HubjectSimulator()) as hubject, serve(sender.app()) as (sender_url, runner):
        sender.base_url = sender_url
        source = {
            "versions_url": f"{sender_url}/ocpi/versions",
            "token": CPO_TOKEN,
            "poll_interval": 0.2,
            "country_code": "DE",
            "party_id": "OBD",
        }
        ocpi = {"receiver": {"listen": "127.0.0.1:0"}, "sources": [source], "stale_after": threshold}
        async with running(config(tmp_path, hubject, ocpi=ocpi)) as bridge:
            feed = {"kind": "poll", "feed": str(source["versions_url"])}

            async def polled() -> bool:
                samples = await scrape(bridge)
                return value(samples, "oicp_bridge_feed_requests_total", **feed) >= 2

            await wait_for(polled, within=10)
            samples = await scrape(bridge)
            assert value(samples, "oicp_bridge_feed_stale", **feed) == 0.0
            assert value(samples, "oicp_bridge_feed_last_change_timestamp_seconds", **feed) > 0
            await runner.cleanup()  # the CPO's sender dies
            stopped = time.monotonic()

            async def stale() -> bool:
                return value(await scrape(bridge), "oicp_bridge_feed_stale", **feed) == 1.0

            await wait_for(stale, within=threshold + 2.0)
            took = time.monotonic() - stopped
            # stale as soon as the last complete poll is older than the threshold: at most one poll
            # interval after the threshold, never before it
            assert threshold - 0.3 <= took <= threshold + 1.0, took
            samples = await scrape(bridge)
            assert value(samples, "oicp_bridge_feed_silence_seconds", **feed) > threshold
            assert value(samples, "oicp_bridge_ready") == 1.0  # documented: staleness does not fail /ready
            body = await status_json(bridge)
            assert body["state"] == "degraded"
            assert "silent for" in body["reason"]
            (polled_feed,) = [f for f in body["feeds"] if f["kind"] == "poll"]
            assert polled_feed["stale"]

            # the sender comes back on its address: the next complete poll makes the feed alive again
            port = int(sender_url.rsplit(":", 1)[1])
            revived = web.AppRunner(sender.app(), shutdown_timeout=1.0)
            await revived.setup()
            await web.TCPSite(revived, "127.0.0.1", port, reuse_address=True).start()
            try:

                async def alive() -> bool:
                    return value(await scrape(bridge), "oicp_bridge_feed_stale", **feed) == 0.0

                await wait_for(alive, within=20)
                assert (await status_json(bridge))["state"] == "ok"
            finally:
                await revived.cleanup()


async def test_rejected_tokens_are_counted_per_party_the_url_names_if_known(tmp_path: Path) -> None:
    async with (
        serve_simulator(HubjectSimulator()) as hubject,
        running(config(tmp_path, hubject)) as bridge,
        aiohttp.ClientSession() as session,
    ):
        for path in ("DE/OBD/LOC1", "DE/OBD/LOC2", "XX/NOP/LOC1"):
            url = f"{bridge.receiver_url}/ocpi/2.2.1/locations/{path}"
            async with session.put(url, json={}, headers={"Authorization": "Token wrong"}) as response:
                assert response.status == 401
        samples = await scrape(bridge)
        assert value(samples, "oicp_bridge_feed_rejected_authentications_total", party="DE/OBD") == 2
        assert value(samples, "oicp_bridge_feed_rejected_authentications_total", party="unknown") == 1
        assert ("oicp_bridge_feed_rejected_authentications_total", (("party", "XX/NOP"),)) not in samples


async def test_a_pushing_party_is_alive_after_a_push_and_stale_when_silent(tmp_path: Path) -> None:
    async with serve_simulator(HubjectSimulator()) as hubject:
        ocpi = {
            "receiver": {
                "listen": "127.0.0.1:0",
                "tokens": [{"token": "console-cpo-token-4e7a", "country_code": "DE", "party_id": "OBD"}],
            },
            "stale_after": 1.0,
        }
        async with running(config(tmp_path, hubject, ocpi=ocpi)) as bridge:
            await push_fleet(bridge, small_fleet())
            samples = await scrape(bridge)
            feed = {"kind": "push", "feed": "DE/OBD"}
            assert value(samples, "oicp_bridge_feed_stale", **feed) == 0.0
            assert value(samples, "oicp_bridge_feed_requests_total", **feed) >= 1

            async def stale() -> bool:
                return value(await scrape(bridge), "oicp_bridge_feed_stale", **feed) == 1.0

            await wait_for(stale, within=3.0)


async def _metrics_text(admin_url: str | None) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{admin_url}/metrics") as response:
        return await response.text()


@pytest.mark.parametrize("path", ["/metrics", "/status.json", "/status", "/ready"])
async def test_views_answer_while_the_store_is_closed(tmp_path: Path, path: str) -> None:
    async with (
        serve_simulator(HubjectSimulator()) as hubject,
        running(config(tmp_path, hubject)) as bridge,
        aiohttp.ClientSession() as session,
    ):
        await bridge.db.close()
        async with session.get(f"{bridge.admin_url}{path}") as response:
            body = await response.text()
        await bridge.db.open()
    assert response.status == (503 if path == "/ready" else 200)
    if path != "/metrics":
        assert "the store cannot be read" in body
    else:
        assert "oicp_bridge_ready 0.0" in body
    assert ADMIN_TOKEN not in body


async def test_a_registered_cpo_that_never_pushes_goes_stale(tmp_path: Path) -> None:
    from bridge.ocpi.auth import Party, Registration, TokenStore
    from bridge.ocpi.versions import OcpiVersion
    from bridge.store.database import Database
    from bridge.store.schema import MIGRATIONS

    # SQLite only: the daemon's feed staleness is the point; registrations on PostgreSQL are in tests/ocpi
    db = Database(tmp_path / "bridge.db", MIGRATIONS)
    await db.open()
    registration = Registration(
        Party("NL", "REG"),
        OcpiVersion.V2_2_1,
        "inbound-5f1c",
        "outbound-77aa",
        "https://reg.example/v",
        [],
        {},
    )
    await TokenStore(db, []).save(registration)
    await db.close()
    async with serve_simulator(HubjectSimulator()) as hubject:
        ocpi = {"receiver": {"listen": "127.0.0.1:0"}, "stale_after": 0.5}
        async with running(config(tmp_path, hubject, ocpi=ocpi)) as bridge:
            feed = {"kind": "push", "feed": "NL/REG"}

            async def stale() -> bool:
                samples = await scrape(bridge)
                return samples.get(("oicp_bridge_feed_stale", tuple(sorted(feed.items())))) == 1.0

            await wait_for(stale, within=3.0)
            assert (
                value(await scrape(bridge), "oicp_bridge_feed_rejected_authentications_total", party="NL/REG")
                == 0
            )
