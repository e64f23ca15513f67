"""The client contract: every behaviour RestClient and SoapClient share, run against both.

Real loopback HTTPS with mutual TLS against the Hubject simulator (REST and SOAP front ends share its
state). Each test gets a ``connect(settings, **options)`` that builds the client under test; behaviour
only one protocol has lives in test_soap_client.py (and the REST-only URL hint at the end here).
Every SOAP envelope the client sent is checked against the shipped XSD after each test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from typing import Any, Protocol, Unpack

import pytest

from oicp import (
    ActionType,
    ClientSettings,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    EvseID,
    EvseStatus,
    EvseStatusClient,
    EvseStatusRecord,
    HTTPStatusError,
    OperatorID,
    RateLimitedError,
    RejectedError,
    RequestError,
    RequestTimeoutError,
    RestClient,
    RetryPolicy,
    SoapClient,
    TLSError,
)
from oicp._http import SessionOptions
from oicp.simulator import FaultKind, HubjectSimulator, ServedSimulator, serve_simulator
from oicp.wsdl import SOAP_PATH, ServiceSchema
from tests.conftest import TLSMaterial
from tests.oicp.conftest import (
    E1,
    E2,
    E3,
    OCC,
    OPERATOR,
    PROVIDER,
    A,
    Pages,
    RetryLog,
    X,
    records,
    sent_records,
    soap_payload,
)


class Connect(Protocol):
    def __call__(self, settings: ClientSettings, **options: Unpack[SessionOptions]) -> EvseStatusClient: ...


@pytest.fixture(params=["rest", "soap"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(protocol: str) -> Connect:
    def build(settings: ClientSettings, **options: Unpack[SessionOptions]) -> EvseStatusClient:
        return RestClient(settings, **options) if protocol == "rest" else SoapClient(settings, **options)

    return build


@pytest.fixture(autouse=True)
def sent_envelopes_are_valid(simulator: HubjectSimulator, schema: ServiceSchema) -> Iterator[None]:
    """Every SOAP envelope a client sent validates against the shipped XSD."""
    yield
    for entry in simulator.request_log:
        if entry.path == SOAP_PATH:
            assert schema.errors(soap_payload(entry.body)) == []


# --- round trips ---------------------------------------------------------------------------------------

EXPECTED_AFTER = {
    ActionType.FULL_LOAD: {E2: X, E3: A},
    ActionType.UPDATE: {E1: A, E2: X, E3: A},
    ActionType.INSERT: {E1: A, E2: X, E3: A},
    ActionType.DELETE: {E1: A},
}


@pytest.mark.parametrize("action", list(ActionType))
async def test_push_then_pull_round_trip_for_each_action_type(
    action: ActionType, connect: Connect, settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    async with connect(settings) as client:
        await client.push_evse_status(OPERATOR, ActionType.FULL_LOAD, records({E1: A, E2: OCC}))
        result = await client.push_evse_status(OPERATOR, action, records({E2: X, E3: A}), operator_name="ABC")
        assert result.acknowledgement.result is True
        assert result.acknowledgement.status_code.code == "000"
        assert result.attempts == 1
        expected = EXPECTED_AFTER[action]
        assert await client.pull_evse_status(PROVIDER) == expected
        assert await client.pull_evse_status(PROVIDER, operator_ids=[OPERATOR]) == expected
        by_id = await client.pull_evse_status(PROVIDER, evse_ids=[E1, E2, E3])
    assert by_id == {e: expected.get(e, EvseStatus.EVSE_NOT_FOUND) for e in (E1, E2, E3)}
    assert simulator.statuses(OPERATOR) == expected
    assert simulator.request_log[1].action_type == action.value


async def test_pull_filters_by_operator(connect: Connect, settings: ClientSettings) -> None:
    other_evse = EvseID("DE*DEF*E1")
    async with connect(settings) as client:
        await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
        await client.push_evse_status(OperatorID("DE*DEF"), ActionType.UPDATE, records({other_evse: OCC}))
        assert await client.pull_evse_status(PROVIDER) == {E1: A, other_evse: OCC}
        assert await client.pull_evse_status(PROVIDER, operator_ids=[OperatorID("DE*DEF")]) == {
            other_evse: OCC
        }


async def test_pull_by_id_splits_into_requests_of_at_most_100(
    connect: Connect, settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    many = {EvseID(f"DE*ABC*E{n}"): A for n in range(250)}
    async with connect(settings) as client:
        await client.push_evse_status(OPERATOR, ActionType.FULL_LOAD, records(many))
        pulled = await client.pull_evse_status(PROVIDER, evse_ids=list(many))
    assert pulled == many
    pulls = [entry for entry in simulator.request_log if entry.operation == "pull"]
    assert [len(sent_records(entry)) for entry in pulls] == [100, 100, 50]


async def test_result_keeps_hubjects_process_id_and_the_certificate_arrived(
    connect: Connect, settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    async with connect(settings) as client:
        result = await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert result.process_id is not None
    assert result.process_id == simulator.request_log[-1].process_id
    assert simulator.request_log[-1].client_cert_subject is not None  # mutual TLS: the certificate arrived


async def test_lower_case_ids_are_sent_normalised(
    connect: Connect, settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    async with connect(settings) as client:
        await client.push_evse_status(
            OperatorID("de*abc"),
            ActionType.UPDATE,
            [EvseStatusRecord(evse_id=EvseID("de*abc*e9"), evse_status=A)],
        )
    entry = simulator.request_log[-1]
    assert entry.operator_id == "DE*ABC"
    assert sent_records(entry) == [("DE*ABC*E9", "Available")]


async def test_pushes_are_sequential_even_across_operators(
    connect: Connect, settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    """OICP 2.3 CPO 01, Data push operations: pushes of one operation MUST never run in parallel."""
    simulator.faults.latency = 0.02
    other = records({EvseID("DE*DEF*E1"): OCC})
    async with connect(settings) as client:
        await asyncio.gather(
            *(client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A})) for _ in range(4)),
            *(client.push_evse_status(OperatorID("DE*DEF"), ActionType.UPDATE, other) for _ in range(4)),
        )
    assert simulator.push_count() == 8
    assert simulator.max_in_flight_overall == 1


# --- streamed pushes ------------------------------------------------------------------------------------


async def test_a_streamed_full_load_lands_whole(
    connect: Connect, settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    many = {EvseID(f"DE*ABC*E{n}"): (A if n % 2 else OCC) for n in range(1050)}
    pages = Pages(many, page_size=100)
    async with connect(settings) as client:
        await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({EvseID("DE*ABC*EOLD"): A}))
        result = await client.push_evse_status_stream(
            OPERATOR, ActionType.FULL_LOAD, pages, operator_name="ABC & Co"
        )
    assert result.acknowledgement.result is True
    assert pages.reads == 1
    assert simulator.statuses(OPERATOR) == many
    assert len(sent_records(simulator.request_log[-1])) == 1050


async def test_a_streamed_push_reads_its_pages_again_on_retry(
    connect: Connect, settings: ClientSettings, simulator: HubjectSimulator, fast_retries: RetryPolicy
) -> None:
    simulator.faults.retry_after = None
    simulator.faults.queue.append(FaultKind.SERVER_ERROR)
    pages = Pages({E1: OCC, E2: A}, page_size=1)
    async with connect(settings, retry_policy=fast_retries) as client:
        result = await client.push_evse_status_stream(OPERATOR, ActionType.UPDATE, pages)
    assert result.attempts == 2
    assert pages.reads == 2
    assert simulator.statuses(OPERATOR) == {E1: OCC, E2: A}


async def test_a_streamed_push_for_a_din_operator_lands(connect: Connect, tls: TLSMaterial) -> None:
    simulator = HubjectSimulator()
    async with serve_simulator(
        simulator, ssl_context=tls.server_context(require_client_cert=False)
    ) as served:
        din_evse = EvseID("+49*810*000*438")
        async with connect(ClientSettings(url=served.url, ca_cert=tls.ca_cert)) as client:
            await client.push_evse_status_stream(
                OperatorID("+49*810"), ActionType.UPDATE, Pages({din_evse: A}, page_size=10)
            )
    assert simulator.statuses(OperatorID("+49*810")) == {din_evse: A}


# --- TLS ------------------------------------------------------------------------------------------------


async def test_mtls_refuses_a_client_without_certificate(
    connect: Connect, served: ServedSimulator, tls: TLSMaterial, simulator: HubjectSimulator
) -> None:
    settings = ClientSettings(url=served.url, ca_cert=tls.ca_cert, timeout=2.0)
    policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.01)
    async with connect(settings, retry_policy=policy) as client:
        with pytest.raises((TLSError, ConnectionLostError)) as caught:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
    assert "client certificate" in (caught.value.hint or "") + str(caught.value)
    assert simulator.push_count() == 0


async def test_untrusted_server_certificate_fails_at_once_and_is_not_retried(
    connect: Connect, served: ServedSimulator, tls: TLSMaterial, simulator: HubjectSimulator
) -> None:
    settings = ClientSettings(url=served.url, client_cert=tls.client_cert, client_key=tls.client_key)
    retries = RetryLog()
    async with connect(settings, on_retry=retries) as client:
        with pytest.raises(TLSError, match="certificate"):
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
    assert retries.calls == []
    assert simulator.push_count() == 0


async def test_hostname_is_verified(connect: Connect, tls: TLSMaterial) -> None:
    simulator = HubjectSimulator()
    context = tls.server_context(require_client_cert=False)
    tls.ca.issue_cert("hubject.example").configure_cert(context)
    async with (
        serve_simulator(simulator, ssl_context=context) as served,
        connect(ClientSettings(url=served.url, ca_cert=tls.ca_cert)) as client,
    ):
        with pytest.raises(TLSError, match=r"(?i)hostname|IP address mismatch"):
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
    assert simulator.push_count() == 0


async def test_connection_refused_is_a_connect_error_after_the_cap(
    connect: Connect, fast_retries: RetryPolicy
) -> None:
    retries = RetryLog()
    settings = ClientSettings(url="http://127.0.0.1:9/api/oicp", connect_timeout=1.0)
    async with connect(settings, retry_policy=fast_retries, on_retry=retries) as client:
        with pytest.raises(ConnectError):
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
    assert len(retries.calls) == fast_retries.max_attempts - 1
    assert [attempt for attempt, _, _ in retries.calls] == [1, 2, 3]


# --- fault modes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [FaultKind.SERVER_ERROR, FaultKind.DROP, FaultKind.HANG, FaultKind.SLOW])
async def test_one_transient_fault_is_retried_and_the_push_lands(
    fault: FaultKind,
    connect: Connect,
    settings: ClientSettings,
    simulator: HubjectSimulator,
    fast_retries: RetryPolicy,
) -> None:
    simulator.faults.retry_after = None
    simulator.faults.slow_latency = 0.1
    simulator.faults.queue.append(fault)
    short = settings.model_copy(update={"timeout": 0.5})
    async with connect(short, retry_policy=fast_retries) as client:
        result = await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert simulator.statuses(OPERATOR) == {E1: OCC}
    expected_attempts = 1 if fault is FaultKind.SLOW else 2
    assert result.attempts == expected_attempts
    assert simulator.push_count() == expected_attempts


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (FaultKind.SERVER_ERROR, HTTPStatusError),
        (FaultKind.DROP, ConnectionLostError),
        (FaultKind.HANG, RequestTimeoutError),
    ],
)
async def test_a_persistent_fault_fails_with_its_typed_error_after_the_cap(
    fault: FaultKind,
    error_type: type[RequestError],
    connect: Connect,
    settings: ClientSettings,
    simulator: HubjectSimulator,
    fast_retries: RetryPolicy,
) -> None:
    simulator.faults.retry_after = None
    simulator.faults.queue.extend([fault] * fast_retries.max_attempts)
    short = settings.model_copy(update={"timeout": 0.3})
    async with connect(short, retry_policy=fast_retries) as client:
        with pytest.raises(error_type):
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert simulator.push_count() == fast_retries.max_attempts
    assert simulator.statuses(OPERATOR) == {}


@pytest.mark.parametrize("operation", ["push", "pull"])
async def test_a_gateway_error_carries_status_body_excerpt_and_process_id(
    operation: str, connect: Connect, settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    simulator.faults.error_5xx_status = 502
    simulator.faults.queue.append(FaultKind.SERVER_ERROR)
    async with connect(settings, retry_policy=RetryPolicy(max_attempts=1)) as client:
        call: Awaitable[object]
        if operation == "push":
            call = client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
        else:
            call = client.pull_evse_status(PROVIDER)
        with pytest.raises(HTTPStatusError) as caught:
            await call
    assert caught.value.status == 502
    assert "Simulated server error" in caught.value.body_excerpt
    assert caught.value.process_id == simulator.request_log[-1].process_id
    assert caught.value.retryable


@pytest.mark.parametrize(("fault", "status"), [(FaultKind.RATE_LIMIT, 429), (FaultKind.SERVER_ERROR, 503)])
async def test_retry_after_is_honoured(
    fault: FaultKind,
    status: int,
    connect: Connect,
    settings: ClientSettings,
    simulator: HubjectSimulator,
    fast_retries: RetryPolicy,
) -> None:
    simulator.faults.retry_after = 0.4
    simulator.faults.error_5xx_status = 503
    simulator.faults.queue.append(fault)
    retries = RetryLog()
    async with connect(settings, retry_policy=fast_retries, on_retry=retries) as client:
        result = await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert result.attempts == 2
    first, second = (entry for entry in simulator.request_log if entry.operation == "push")
    assert first.http_status == status
    # fast_retries would wait at most 0.05 s on its own: the 0.4 s came from Retry-After
    assert second.received_at - first.received_at >= 0.4
    assert retries.calls[0][2] >= 0.4
    assert retries.calls[0][1].retry_after == pytest.approx(0.4)


async def test_rate_limiting_slows_the_client_down(
    connect: Connect, settings: ClientSettings, simulator: HubjectSimulator, fast_retries: RetryPolicy
) -> None:
    simulator.faults.retry_after = 0.0
    simulator.faults.queue.extend([FaultKind.RATE_LIMIT] * 3)
    client: Any
    async with connect(settings, retry_policy=fast_retries) as client:
        await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
        assert client.throttle.slowdown >= 4.0
        assert client.throttle.rate < settings.max_calls_per_minute / 60.0


async def test_simulated_rate_limit_gives_a_rate_limited_error_with_retry_after_and_hint(
    connect: Connect, settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    simulator.faults.calls_per_minute = 2
    async with connect(settings, retry_policy=RetryPolicy(max_attempts=1)) as client:
        for _ in range(2):
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
        with pytest.raises(RateLimitedError) as caught:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
    assert caught.value.status == 429
    assert caught.value.retry_after is not None
    assert 1.0 <= caught.value.retry_after <= 60.0
    assert "2000" in (caught.value.hint or "")
    assert simulator.statuses(OPERATOR) == {E1: OCC}


async def test_retryable_rejection_is_retried(
    connect: Connect, settings: ClientSettings, simulator: HubjectSimulator, fast_retries: RetryPolicy
) -> None:
    simulator.faults.reject_code = "001"  # Hubject system error
    simulator.faults.queue.append(FaultKind.REJECT)
    async with connect(settings, retry_policy=fast_retries) as client:
        result = await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert result.attempts == 2
    assert simulator.statuses(OPERATOR) == {E1: OCC}


@pytest.mark.parametrize("code", ["017", "018", "022"])
async def test_permanent_rejection_is_not_retried(
    code: str,
    connect: Connect,
    settings: ClientSettings,
    simulator: HubjectSimulator,
    fast_retries: RetryPolicy,
) -> None:
    simulator.faults.reject_code = code
    simulator.faults.queue.extend([FaultKind.REJECT] * 3)
    retries = RetryLog()
    async with connect(settings, retry_policy=fast_retries, on_retry=retries) as client:
        with pytest.raises(RejectedError) as caught:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert caught.value.code == code
    assert not caught.value.retryable
    assert caught.value.record_level is (code == "018")
    if code == "017":  # Unauthorized Access: the hint names the operator and the certificate
        assert "DE*ABC" in (caught.value.hint or "")
        assert "certificate" in str(caught.value)
    assert retries.calls == []
    assert simulator.push_count() == 1
    assert caught.value.process_id == simulator.request_log[-1].process_id


async def test_unknown_evse_is_rejected_603_and_changes_nothing(connect: Connect, tls: TLSMaterial) -> None:
    simulator = HubjectSimulator(known_evse_ids=[str(E1)])
    context = tls.server_context(require_client_cert=False)
    async with (
        serve_simulator(simulator, ssl_context=context) as served,
        connect(ClientSettings(url=served.url, ca_cert=tls.ca_cert)) as client,
    ):
        await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
        with pytest.raises(RejectedError) as caught:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC, E2: OCC}))
    assert caught.value.code == "603"
    assert caught.value.record_level
    assert str(E2) in (caught.value.additional_info or "")
    assert "EVSE data" in (caught.value.hint or "")
    assert simulator.statuses(OPERATOR) == {E1: A}
    assert simulator.push_count() == 2


async def test_retry_budget_bounds_the_time_spent(
    connect: Connect, settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    simulator.faults.error_5xx_rate = 1.0
    simulator.faults.retry_after = None
    policy = RetryPolicy(max_attempts=1000, initial_wait=0.05, multiplier=1.0, max_wait=0.05, budget=0.5)
    started = time.monotonic()
    async with connect(settings, retry_policy=policy) as client:
        with pytest.raises(HTTPStatusError):
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert time.monotonic() - started < 5.0
    assert 2 <= simulator.push_count() < 1000


async def test_a_client_used_outside_async_with_is_a_configuration_error(
    connect: Connect, settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    with pytest.raises(ConfigurationError, match="async with"):
        await connect(settings).push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert simulator.request_log == []


@pytest.mark.parametrize("url", ["ftp://hubject.example/api/oicp", "service-qa.hubject.com/api/oicp"])
def test_a_url_that_is_not_http_is_refused_at_construction(connect: Connect, url: str) -> None:
    with pytest.raises(ConfigurationError, match="https://"):
        connect(ClientSettings(url=url))


# --- REST only: the URL hint (SOAP's wrong-path hint is in test_soap_client.py) -------------------------


async def test_rest_url_without_api_oicp_gets_a_hint(served: ServedSimulator, tls: TLSMaterial) -> None:
    settings = ClientSettings(
        url=served.base_url, client_cert=tls.client_cert, client_key=tls.client_key, ca_cert=tls.ca_cert
    )
    async with RestClient(settings) as client:
        assert client.url_hint is not None
        assert "/api/oicp" in client.url_hint
        with pytest.raises(HTTPStatusError) as caught:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert caught.value.status == 404
    assert not caught.value.retryable
    assert "/api/oicp" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"ca_cert": "/nonexistent/ca.pem"}, "CA bundle"),
        ({"client_cert": "/nonexistent/cpo.pem", "key_password": "s3cret-pw"}, "client certificate"),
        ({"client_key": "/nonexistent/cpo.key"}, "client_key is set but client_cert is not"),
    ],
)
async def test_unusable_tls_settings_fail_on_entering_and_never_show_the_password(
    connect: Connect, fields: dict[str, str], complaint: str
) -> None:
    client = connect(ClientSettings.model_validate({"url": "https://127.0.0.1:9/api/oicp", **fields}))
    with pytest.raises(ConfigurationError, match=complaint) as caught:
        async with client:
            pass
    assert "s3cret-pw" not in str(caught.value)
