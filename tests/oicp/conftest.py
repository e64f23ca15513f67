"""Fixtures for the OICP library tests: a Hubject simulator on a real loopback socket with real TLS, and the
helpers the client test files share (records, what the simulator received, a retry log, streamed pages)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
from lxml import etree

from oicp import (
    ClientSettings,
    EvseID,
    EvseStatus,
    EvseStatusRecord,
    OperatorID,
    ProviderID,
    RequestError,
    RetryPolicy,
)
from oicp.simulator import HubjectSimulator, LoggedRequest, ServedSimulator, serve_simulator
from oicp.wsdl import NS_EVSE_STATUS, NS_SOAP_ENV, ServiceSchema
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


OPERATOR = OperatorID("DE*ABC")
PROVIDER = ProviderID("DE-XYZ")
E1, E2, E3 = EvseID("DE*ABC*E1"), EvseID("DE*ABC*E2"), EvseID("DE*ABC*E3")
A, OCC, X = EvseStatus.AVAILABLE, EvseStatus.OCCUPIED, EvseStatus.OUT_OF_SERVICE
ES = f"{{{NS_EVSE_STATUS}}}"


def records(statuses: dict[EvseID, EvseStatus]) -> list[EvseStatusRecord]:
    return [EvseStatusRecord(evse_id=evse_id, evse_status=status) for evse_id, status in statuses.items()]


def soap_payload(body: object) -> etree._Element:
    """The Body payload of an envelope from the simulator's request log."""
    assert isinstance(body, str)
    envelope = etree.fromstring(body.encode())
    payload = envelope.find(f"{{{NS_SOAP_ENV}}}Body")
    assert payload is not None
    assert len(payload) == 1
    return payload[0]


def sent_records(entry: LoggedRequest) -> list[tuple[str, str]]:
    """The (EvseID, status) pairs of a push or the EvseIDs of a pull, as the simulator received them."""
    if isinstance(entry.body, dict):
        if entry.operation == "pull":
            return [(evse_id, "") for evse_id in entry.body["EvseID"]]
        block = entry.body["OperatorEvseStatus"]["EvseStatusRecord"]
        return [(record["EvseID"], record["EvseStatus"]) for record in block]
    payload = soap_payload(entry.body)
    if entry.operation == "pull":
        return [(node.text or "", "") for node in payload.findall(f"{ES}EvseId")]
    return [
        (node.findtext(f"{ES}EvseId") or "", node.findtext(f"{ES}EvseStatus") or "")
        for node in payload.iter(f"{ES}EvseStatusRecord")
    ]


class RetryLog:
    def __init__(self) -> None:
        self.calls: list[tuple[int, RequestError, float]] = []

    def __call__(self, attempt: int, error: RequestError, wait: float) -> None:
        self.calls.append((attempt, error, wait))


@pytest.fixture(scope="module")
def schema() -> ServiceSchema:
    return ServiceSchema.load()


class Pages:
    """``pages()`` for push_evse_status_stream: counts how often the records were read."""

    def __init__(self, statuses: dict[EvseID, EvseStatus], page_size: int) -> None:
        self.records = records(statuses)
        self.page_size = page_size
        self.reads = 0

    def __call__(self) -> AsyncIterator[Sequence[EvseStatusRecord]]:
        self.reads += 1
        return self._pages()

    async def _pages(self) -> AsyncIterator[Sequence[EvseStatusRecord]]:
        for start in range(0, len(self.records), self.page_size):
            yield self.records[start : start + self.page_size]
        yield []
