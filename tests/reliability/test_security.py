"""Security checks: the admin API wants its bearer token and listens on loopback by default, OCPI tokens
are compared as digests in constant time, TLS to Hubject is always verified, the OCPI receiver can serve
TLS itself, and a daemon's logs hold no secret."""

from __future__ import annotations

import inspect
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.config import AdminConfig, BridgeConfig, ReceiverConfig
from bridge.ocpi import auth
from bridge.ocpi.cpo_sim.model import CpoFleet
from bridge.ocpi.cpo_sim.pusher import CpoPusher
from bridge.ocpi.versions import OcpiVersion
from oicp import ClientSettings, RestClient, RetryPolicy
from oicp.errors import TransportError
from oicp.ids import OperatorID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord
from oicp.simulator import HubjectSimulator, ServedSimulator, serve_simulator
from tests.bridge.conftest import wait_for
from tests.conftest import TLSMaterial
from tests.reliability.daemon import ADMIN_TOKEN, CPO_TOKEN, Daemon, DaemonConfig
from tests.test_end_to_end import TOKEN, bridge_config


def test_admin_and_receiver_listen_on_loopback_by_default() -> None:
    assert AdminConfig().listen.startswith("127.0.0.1:")
    assert ReceiverConfig().listen.startswith("127.0.0.1:")
    assert BridgeConfig().admin.token is None


def test_ocpi_tokens_are_compared_as_digests_in_constant_time() -> None:
    source = inspect.getsource(auth.TokenStore.authenticate)
    assert "hmac.compare_digest" in source
    assert "hash_token" in source
    assert "==" not in source  # no plain comparison of token values
    store_source = inspect.getsource(auth.TokenStore.__init__)
    assert "hash_token" in store_source  # pre-shared tokens are held as SHA-256 digests only


@pytest.fixture
async def hubject() -> AsyncIterator[ServedSimulator]:
    async with serve_simulator(HubjectSimulator()) as served:
        yield served


async def test_tls_to_hubject_never_skips_verification(tls: TLSMaterial, tmp_path: Path) -> None:
    context = tls.server_context(require_client_cert=False)
    async with serve_simulator(HubjectSimulator(), ssl_context=context) as served:
        policy = RetryPolicy(max_attempts=1, initial_wait=0.01, max_wait=0.01, budget=1.0)
        record = [EvseStatusRecord(evse_id="DE*OBD*E1*1", evse_status=EvseStatus.AVAILABLE)]
        # no CA given: the simulator's certificate is untrusted and the push fails
        async with RestClient(ClientSettings(url=served.url, timeout=2), retry_policy=policy) as client:
            with pytest.raises(TransportError):
                await client.push_evse_status(OperatorID("DE*OBD"), ActionType.UPDATE, record)
        # with the CA it works: the failure above was verification, not the setup
        settings = ClientSettings(url=served.url, timeout=2, ca_cert=tls.ca_cert)
        async with RestClient(settings, retry_policy=policy) as client:
            await client.push_evse_status(OperatorID("DE*OBD"), ActionType.UPDATE, record)
        assert served.simulator.statuses("DE*OBD")


async def test_the_ocpi_receiver_serves_tls_when_configured(
    tls: TLSMaterial, tmp_path: Path, hubject: ServedSimulator
) -> None:
    base = bridge_config(tmp_path, hubject, "rest").model_dump(mode="python")
    base["ocpi"]["receiver"] |= {
        "tokens": [{"token": TOKEN, "country_code": "DE", "party_id": "OBD"}],
        "tls_cert": tls.server_cert,
        "tls_key": tls.server_key,
    }
    base["admin"]["token"] = "admin"
    bridge = Bridge.build(BridgeConfig(**base), initial_resync=False)
    async with bridge.running():
        assert bridge.receiver_url is not None
        assert bridge.receiver_url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(tls.ca_cert))
        fleet = CpoFleet(seed=1, locations=2, evses_per_location=2, country_code="DE", party_id="OBD")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as session:
            pusher = CpoPusher(fleet, OcpiVersion.V2_2_1, session)
            url = await pusher.discover(f"{bridge.receiver_url}/ocpi/versions", TOKEN)
            assert url.startswith("https://")  # the endpoints it advertises are https too
            assert await pusher.push_all() == 2
        async with aiohttp.ClientSession() as plain:  # a client that does not trust the CA is refused
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await plain.get(f"{bridge.receiver_url}/ocpi/versions")


def test_receiver_tls_needs_both_files() -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        ReceiverConfig(tls_cert=Path("/x.pem"))


async def test_admin_refuses_resync_without_the_bearer_token_and_logs_hold_no_secret(
    tmp_path: Path, hubject: ServedSimulator, tls: TLSMaterial
) -> None:
    config = DaemonConfig(tmp_path, hubject.url, extra="")
    daemon = Daemon(config)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}):
                async with session.post(f"{config.admin_url}/resync", headers=headers) as response:
                    assert response.status == 401
            pusher = CpoPusher(CpoFleet(seed=2, locations=2, party_id="OBD"), OcpiVersion.V2_2_1, session)
            await pusher.discover(f"{config.receiver_url}/ocpi/versions", CPO_TOKEN)
            await pusher.push_all()
            bad = {"Authorization": "Token not-the-token"}
            async with session.get(f"{config.receiver_url}/ocpi/versions", headers=bad) as response:
                assert response.status == 401

            async def pushed() -> bool:
                return len(hubject.simulator.statuses("DE*OBD")) > 0

            await wait_for(pushed, within=20)
            auth_header = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with session.post(f"{config.admin_url}/resync", headers=auth_header) as response:
                assert response.status == 200
    finally:
        assert await daemon.stop() == 0
    logs = daemon.logs()
    assert "bridge stopped" in logs
    for secret in (CPO_TOKEN, ADMIN_TOKEN, "not-the-token", "PRIVATE KEY"):
        assert secret not in logs, f"the daemon's log contains {secret!r}"
