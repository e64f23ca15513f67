"""``hubject-sim`` as a user runs it: a separate process on a real port, driven over HTTP(S)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from oicp import ClientSettings, RestClient
from oicp.errors import RejectedError
from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord
from tests.conftest import TLSMaterial

URL_LINE = re.compile(r'url = "(?P<url>[^"]+)"')


@asynccontextmanager
async def hubject_sim(*args: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "hubject-sim",
        "--listen",
        "127.0.0.1:0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        match = URL_LINE.search(line)
        assert match, f"unexpected first line: {line!r}"
        yield match["url"], process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=30)


async def test_standalone_simulator_takes_a_push_and_serves_the_pull_then_stops_on_sigterm() -> None:
    async with hubject_sim() as (url, process):
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/api/oicp")
        async with RestClient(ClientSettings(url=url)) as client:
            record = EvseStatusRecord(evse_id=EvseID("DE*ABC*E1"), evse_status=EvseStatus.OCCUPIED)
            await client.push_evse_status(OperatorID("DE*ABC"), ActionType.FULL_LOAD, [record])
            assert await client.pull_evse_status(ProviderID("DE-XYZ")) == {record.evse_id: record.evse_status}
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0


async def test_standalone_simulator_with_mtls_and_a_fault_flag(tls: TLSMaterial) -> None:
    tls_args = (
        "--tls-cert",
        str(tls.server_cert),
        "--tls-key",
        str(tls.server_key),
        "--client-ca",
        str(tls.ca_cert),
    )
    async with hubject_sim(*tls_args, "--reject-rate", "1", "--reject-code", "018") as (url, _):
        assert url.startswith("https://")
        settings = ClientSettings(
            url=url, client_cert=tls.client_cert, client_key=tls.client_key, ca_cert=tls.ca_cert
        )
        async with RestClient(settings) as client:
            record = EvseStatusRecord(evse_id=EvseID("DE*ABC*E1"), evse_status=EvseStatus.OCCUPIED)
            with pytest.raises(RejectedError) as caught:
                await client.push_evse_status(OperatorID("DE*ABC"), ActionType.UPDATE, [record])
    assert caught.value.code == "018"


async def test_bad_flags_are_refused_with_a_message() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "hubject-sim",
        "--listen",
        "nonsense",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert b"HOST:PORT" in stderr
