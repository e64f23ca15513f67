"""The SOAP client against the Hubject simulator over real loopback HTTPS with mutual TLS.

Mirrors test_rest_client.py: the same round trips, faults, retry decisions and typed errors, over SOAP.
Every envelope the client sends is checked against the shipped XSD (``all_sent_envelopes_are_valid``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from lxml import etree

from oicp.client import ClientSettings, EvseStatusClient
from oicp.errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    HTTPStatusError,
    RateLimitedError,
    RejectedError,
    RequestError,
    RequestTimeoutError,
    ResponseDecodeError,
    TLSError,
)
from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord
from oicp.retry import RetryPolicy
from oicp.simulator import FaultKind, HubjectSimulator, ServedSimulator, serve_simulator
from oicp.soap import SoapAnswer, SoapClient, soap_endpoint, translate_soap_answer
from oicp.wsdl import (
    NS_COMMON_TYPES,
    NS_EVSE_STATUS,
    NS_SOAP_ENV,
    SOAP_PATH,
    ServiceSchema,
    SoapOperation,
    load_zeep_client,
)
from tests.conftest import TLSMaterial

OPERATOR = OperatorID("DE*ABC")
PROVIDER = ProviderID("DE-XYZ")
E1, E2, E3 = EvseID("DE*ABC*E1"), EvseID("DE*ABC*E2"), EvseID("DE*ABC*E3")
A, OCC, X = EvseStatus.AVAILABLE, EvseStatus.OCCUPIED, EvseStatus.OUT_OF_SERVICE
ES = f"{{{NS_EVSE_STATUS}}}"


def records(statuses: dict[EvseID, EvseStatus]) -> list[EvseStatusRecord]:
    return [EvseStatusRecord(evse_id=evse_id, evse_status=status) for evse_id, status in statuses.items()]


class RetryLog:
    def __init__(self) -> None:
        self.calls: list[tuple[int, RequestError, float]] = []

    def __call__(self, attempt: int, error: RequestError, wait: float) -> None:
        self.calls.append((attempt, error, wait))


@pytest.fixture(scope="module")
def schema() -> ServiceSchema:
    return ServiceSchema.load()


def sent_payload(body: object) -> etree._Element:
    """The Body payload of an envelope from the simulator's request log."""
    assert isinstance(body, str)
    envelope = etree.fromstring(body.encode())
    assert envelope.tag == f"{{{NS_SOAP_ENV}}}Envelope"
    payload = envelope.find(f"{{{NS_SOAP_ENV}}}Body")
    assert payload is not None
    assert len(payload) == 1
    return payload[0]


@pytest.fixture(autouse=True)
def all_sent_envelopes_are_valid(simulator: HubjectSimulator, schema: ServiceSchema) -> Iterator[None]:
    """Acceptance: every envelope the client sent validates against the shipped XSD."""
    yield
    for entry in simulator.request_log:
        assert entry.path == SOAP_PATH
        assert schema.errors(sent_payload(entry.body)) == []


# --- round trips ---------------------------------------------------------------------------------------

EXPECTED_AFTER = {
    ActionType.FULL_LOAD: {E2: X, E3: A},
    ActionType.UPDATE: {E1: A, E2: X, E3: A},
    ActionType.INSERT: {E1: A, E2: X, E3: A},
    ActionType.DELETE: {E1: A},
}


@pytest.mark.parametrize("action", list(ActionType))
async def test_push_then_pull_round_trip_for_each_action_type(
    action: ActionType, settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    client: EvseStatusClient
    async with SoapClient(settings) as client:
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
    sent = [sent_payload(entry.body).tag for entry in simulator.request_log]
    assert sent == [
        f"{ES}eRoamingPushEvseStatus",
        f"{ES}eRoamingPushEvseStatus",
        f"{ES}eRoamingPullEvseStatus",
        f"{ES}eRoamingPullEvseStatusByOperatorID",
        f"{ES}eRoamingPullEvseStatusById",
    ]
    assert sent_payload(simulator.request_log[1].body).findtext(f"{ES}ActionType") == action.value


async def test_pull_by_id_splits_into_requests_of_at_most_100(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    many = {EvseID(f"DE*ABC*E{n}"): A for n in range(250)}
    async with SoapClient(settings) as client:
        await client.push_evse_status(OPERATOR, ActionType.FULL_LOAD, records(many))
        pulled = await client.pull_evse_status(PROVIDER, evse_ids=list(many))
    assert pulled == many
    pulls = [entry for entry in simulator.request_log if entry.operation == "pull"]
    assert [len(sent_payload(entry.body).findall(f"{ES}EvseId")) for entry in pulls] == [100, 100, 50]


async def test_pull_filters_by_operator(settings: ClientSettings, simulator: HubjectSimulator) -> None:
    other_evse = EvseID("DE*DEF*E1")
    async with SoapClient(settings) as client:
        await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
        await client.push_evse_status(OperatorID("DE*DEF"), ActionType.UPDATE, records({other_evse: OCC}))
        assert await client.pull_evse_status(PROVIDER) == {E1: A, other_evse: OCC}
        assert await client.pull_evse_status(PROVIDER, operator_ids=[OperatorID("DE*DEF")]) == {
            other_evse: OCC
        }


async def test_result_keeps_hubjects_process_id(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    async with SoapClient(settings) as client:
        result = await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert result.process_id is not None
    assert result.process_id == simulator.request_log[-1].process_id


async def test_envelope_uses_hubjects_namespaces_and_element_names(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    async with SoapClient(settings) as client:
        await client.push_evse_status(
            OperatorID("de*abc"),
            ActionType.UPDATE,
            [EvseStatusRecord(evse_id=EvseID("de*abc*e9"), evse_status=A)],
            operator_name="ABC Charging",
        )
    payload = sent_payload(simulator.request_log[-1].body)
    assert payload.tag == f"{{{NS_EVSE_STATUS}}}eRoamingPushEvseStatus"
    block = payload.find(f"{ES}OperatorEvseStatus")
    assert block is not None
    assert block.findtext(f"{ES}OperatorID") == "DE*ABC"
    assert block.findtext(f"{ES}OperatorName") == "ABC Charging"
    # OICP 2.x SOAP spells it EvseId (REST 2.3: EvseID)
    assert block.findtext(f"{ES}EvseStatusRecord/{ES}EvseId") == "DE*ABC*E9"
    assert block.findtext(f"{ES}EvseStatusRecord/{ES}EvseStatus") == "Available"


async def test_pushes_are_sequential_even_across_operators(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    """OICP 2.3 CPO 01, Data push operations: pushes of one operation MUST never run in parallel."""
    simulator.faults.latency = 0.02
    other = OperatorID("DE*DEF")
    async with SoapClient(settings) as client:
        await asyncio.gather(
            *(client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A})) for _ in range(4)),
            *(
                client.push_evse_status(
                    other, ActionType.UPDATE, [EvseStatusRecord(evse_id=EvseID("DE*DEF*E1"), evse_status=OCC)]
                )
                for _ in range(4)
            ),
        )
    assert simulator.push_count() == 8
    assert simulator.max_in_flight_overall == 1


# --- endpoint, offline WSDL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        (
            "https://service-qa.hubject.com/api/oicp",
            "https://service-qa.hubject.com/ws/HubjectEvseStatus_V2.1",
        ),
        ("https://service.hubject.com/api/oicp/", "https://service.hubject.com/ws/HubjectEvseStatus_V2.1"),
        ("http://127.0.0.1:8090", "http://127.0.0.1:8090/ws/HubjectEvseStatus_V2.1"),
        ("https://proxy.example/hubject/ws/EvseStatus", "https://proxy.example/hubject/ws/EvseStatus"),
    ],
)
def test_soap_endpoint_is_under_ws_on_the_rest_host(url: str, endpoint: str) -> None:
    assert soap_endpoint(url) == endpoint


def test_the_wsdl_is_loaded_offline_and_nothing_else_is_fetched() -> None:
    client = load_zeep_client()
    assert "eRoamingPushEvseStatus" in str(client.service._binding.get("eRoamingPushEvseStatus"))
    with pytest.raises(ConfigurationError, match="only the shipped"):
        client.transport.load("https://service-qa.hubject.com/ws/HubjectEvseStatus_V2.1?wsdl")


# --- TLS ------------------------------------------------------------------------------------------------


async def test_mtls_refuses_a_client_without_certificate(
    served: ServedSimulator, tls: TLSMaterial, simulator: HubjectSimulator
) -> None:
    settings = ClientSettings(url=served.url, ca_cert=tls.ca_cert, timeout=2.0)
    policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.01)
    async with SoapClient(settings, retry_policy=policy) as client:
        with pytest.raises((TLSError, ConnectionLostError)) as caught:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
    assert "client certificate" in (caught.value.hint or "") + str(caught.value)
    assert simulator.push_count() == 0


async def test_client_certificate_reaches_the_server(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    async with SoapClient(settings) as client:
        await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
    assert simulator.request_log[-1].client_cert_subject is not None


async def test_untrusted_server_certificate_fails_at_once_and_is_not_retried(
    served: ServedSimulator, tls: TLSMaterial, simulator: HubjectSimulator
) -> None:
    settings = ClientSettings(url=served.url, client_cert=tls.client_cert, client_key=tls.client_key)
    retries = RetryLog()
    async with SoapClient(settings, on_retry=retries) as client:
        with pytest.raises(TLSError, match="certificate"):
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
    assert retries.calls == []
    assert simulator.push_count() == 0


async def test_hostname_is_verified(tls: TLSMaterial) -> None:
    simulator = HubjectSimulator()
    wrong_name = tls.ca.issue_cert("hubject.example")
    context = tls.server_context(require_client_cert=False)
    wrong_name.configure_cert(context)
    async with serve_simulator(simulator, ssl_context=context) as served:
        settings = ClientSettings(url=served.url, ca_cert=tls.ca_cert)
        async with SoapClient(settings) as client:
            with pytest.raises(TLSError, match=r"(?i)hostname|IP address mismatch"):
                await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
    assert simulator.push_count() == 0


async def test_connection_refused_is_a_connect_error_after_the_cap(fast_retries: RetryPolicy) -> None:
    retries = RetryLog()
    settings = ClientSettings(url="http://127.0.0.1:9/api/oicp", connect_timeout=1.0)
    async with SoapClient(settings, retry_policy=fast_retries, on_retry=retries) as client:
        with pytest.raises(ConnectError):
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
    assert len(retries.calls) == fast_retries.max_attempts - 1


# --- fault modes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [FaultKind.SERVER_ERROR, FaultKind.DROP, FaultKind.HANG, FaultKind.SLOW])
async def test_one_transient_fault_is_retried_and_the_push_lands(
    fault: FaultKind, settings: ClientSettings, simulator: HubjectSimulator, fast_retries: RetryPolicy
) -> None:
    simulator.faults.retry_after = None
    simulator.faults.slow_latency = 0.1
    simulator.faults.queue.append(fault)
    short = settings.model_copy(update={"timeout": 0.5})
    async with SoapClient(short, retry_policy=fast_retries) as client:
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
    settings: ClientSettings,
    simulator: HubjectSimulator,
    fast_retries: RetryPolicy,
) -> None:
    simulator.faults.retry_after = None
    simulator.faults.queue.extend([fault] * fast_retries.max_attempts)
    short = settings.model_copy(update={"timeout": 0.3})
    async with SoapClient(short, retry_policy=fast_retries) as client:
        with pytest.raises(error_type):
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert simulator.push_count() == fast_retries.max_attempts
    assert simulator.statuses(OPERATOR) == {}


async def test_soap_server_fault_is_a_retryable_http_500_with_fault_text_and_process_id(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    simulator.faults.error_5xx_status = 500
    simulator.faults.queue.append(FaultKind.SERVER_ERROR)
    async with SoapClient(settings, retry_policy=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(HTTPStatusError) as caught:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert caught.value.status == 500
    assert "SOAP Fault Server" in caught.value.body_excerpt
    assert "Simulated server error" in caught.value.body_excerpt
    assert caught.value.process_id == simulator.request_log[-1].process_id
    assert caught.value.retryable


async def test_gateway_error_without_soap_carries_status_and_body_excerpt(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    simulator.faults.error_5xx_status = 502
    simulator.faults.queue.append(FaultKind.SERVER_ERROR)
    async with SoapClient(settings, retry_policy=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(HTTPStatusError) as caught:
            await client.pull_evse_status(PROVIDER)
    assert caught.value.status == 502
    assert "Simulated server error" in caught.value.body_excerpt
    assert caught.value.process_id == simulator.request_log[-1].process_id
    assert caught.value.retryable


@pytest.mark.parametrize(("fault", "status"), [(FaultKind.RATE_LIMIT, 429), (FaultKind.SERVER_ERROR, 503)])
async def test_retry_after_is_honoured(
    fault: FaultKind,
    status: int,
    settings: ClientSettings,
    simulator: HubjectSimulator,
    fast_retries: RetryPolicy,
) -> None:
    simulator.faults.retry_after = 0.4
    simulator.faults.error_5xx_status = 503
    simulator.faults.queue.append(fault)
    retries = RetryLog()
    async with SoapClient(settings, retry_policy=fast_retries, on_retry=retries) as client:
        result = await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert result.attempts == 2
    first, second = (entry for entry in simulator.request_log if entry.operation == "push")
    assert first.http_status == status
    # fast_retries would wait at most 0.05 s on its own: the 0.4 s came from Retry-After
    assert second.received_at - first.received_at >= 0.4
    assert retries.calls[0][2] >= 0.4
    assert retries.calls[0][1].retry_after == pytest.approx(0.4)


async def test_rate_limiting_slows_the_client_down(
    settings: ClientSettings, simulator: HubjectSimulator, fast_retries: RetryPolicy
) -> None:
    simulator.faults.retry_after = 0.0
    simulator.faults.queue.extend([FaultKind.RATE_LIMIT] * 3)
    async with SoapClient(settings, retry_policy=fast_retries) as client:
        await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
        assert client.throttle.slowdown >= 4.0
        assert client.throttle.rate < settings.max_calls_per_minute / 60.0


async def test_simulated_rate_limit_gives_a_rate_limited_error_with_retry_after_and_hint(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    simulator.faults.calls_per_minute = 2
    async with SoapClient(settings, retry_policy=RetryPolicy(max_attempts=1)) as client:
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
    settings: ClientSettings, simulator: HubjectSimulator, fast_retries: RetryPolicy
) -> None:
    simulator.faults.reject_code = "001"  # Hubject system error
    simulator.faults.queue.append(FaultKind.REJECT)
    async with SoapClient(settings, retry_policy=fast_retries) as client:
        result = await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert result.attempts == 2
    assert simulator.statuses(OPERATOR) == {E1: OCC}


@pytest.mark.parametrize("code", ["017", "018", "022"])
async def test_permanent_rejection_is_not_retried(
    code: str, settings: ClientSettings, simulator: HubjectSimulator, fast_retries: RetryPolicy
) -> None:
    simulator.faults.reject_code = code
    simulator.faults.queue.extend([FaultKind.REJECT] * 3)
    retries = RetryLog()
    async with SoapClient(settings, retry_policy=fast_retries, on_retry=retries) as client:
        with pytest.raises(RejectedError) as caught:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert caught.value.code == code
    assert not caught.value.retryable
    assert retries.calls == []
    assert simulator.push_count() == 1
    assert caught.value.process_id == simulator.request_log[-1].process_id


async def test_unauthorized_operator_gets_a_hint_about_the_certificate(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    simulator.faults.reject_code = "017"
    simulator.faults.queue.append(FaultKind.REJECT)
    async with SoapClient(settings) as client:
        with pytest.raises(RejectedError) as caught:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert "DE*ABC" in (caught.value.hint or "")
    assert "certificate" in str(caught.value)


async def test_unknown_evse_is_rejected_603_and_changes_nothing(tls: TLSMaterial) -> None:
    simulator = HubjectSimulator(known_evse_ids=[str(E1)])
    async with serve_simulator(
        simulator, ssl_context=tls.server_context(require_client_cert=False)
    ) as served:
        settings = ClientSettings(url=served.url, ca_cert=tls.ca_cert)
        async with SoapClient(settings) as client:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A}))
            with pytest.raises(RejectedError) as caught:
                await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC, E2: OCC}))
    assert caught.value.code == "603"
    assert str(E2) in (caught.value.additional_info or "")
    assert "EVSE data" in (caught.value.hint or "")
    assert simulator.statuses(OPERATOR) == {E1: A}
    assert simulator.push_count() == 2


async def test_wrong_soap_path_is_a_permanent_404_with_a_hint(
    served: ServedSimulator, tls: TLSMaterial
) -> None:
    settings = ClientSettings(
        url=served.base_url + "/ws/HubjectEvseStatus_V1",
        client_cert=tls.client_cert,
        client_key=tls.client_key,
        ca_cert=tls.ca_cert,
    )
    retries = RetryLog()
    async with SoapClient(settings, on_retry=retries) as client:
        with pytest.raises(HTTPStatusError) as caught:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert caught.value.status == 404
    assert not caught.value.retryable
    assert SOAP_PATH in (caught.value.hint or "")
    assert retries.calls == []


async def test_retry_budget_bounds_the_time_spent(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    simulator.faults.error_5xx_rate = 1.0
    simulator.faults.retry_after = None
    policy = RetryPolicy(max_attempts=1000, initial_wait=0.05, multiplier=1.0, max_wait=0.05, budget=0.5)
    started = time.monotonic()
    async with SoapClient(settings, retry_policy=policy) as client:
        with pytest.raises(HTTPStatusError):
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: OCC}))
    assert time.monotonic() - started < 5.0
    assert 2 <= simulator.push_count() < 1000


def test_client_used_outside_async_with_is_a_configuration_error(settings: ClientSettings) -> None:
    with pytest.raises(ConfigurationError, match="async with"):
        SoapClient(settings).build_envelope(SoapOperation.PULL, ProviderID="DE-XYZ")


# --- the translation boundary: every kind of answer becomes one typed error ------------------------------

ENV_OPEN = f'<s:Envelope xmlns:s="{NS_SOAP_ENV}"><s:Body>'
ENV_CLOSE = "</s:Body></s:Envelope>"
ACK_OK = (
    f'<c:eRoamingAcknowledgement xmlns:c="{NS_COMMON_TYPES}"><c:Result>true</c:Result>'
    "<c:StatusCode><c:Code>000</c:Code></c:StatusCode></c:eRoamingAcknowledgement>"
)


def fault(code: str, text: str) -> str:
    return f"<s:Fault><faultcode>s:{code}</faultcode><faultstring>{text}</faultstring></s:Fault>"


@pytest.mark.parametrize(
    ("status", "body", "error_type", "retryable"),
    [
        (200, "<html>maintenance</html>", ResponseDecodeError, True),
        (200, "not xml at all", ResponseDecodeError, True),
        (502, "Bad gateway", HTTPStatusError, True),
        (400, "<html>bad request</html>", HTTPStatusError, False),
        (500, ENV_OPEN + fault("Server", "boom") + ENV_CLOSE, HTTPStatusError, True),
        (500, ENV_OPEN + fault("Client", "invalid") + ENV_CLOSE, RejectedError, False),
        (500, ENV_OPEN + fault("Client.Authentication", "who") + ENV_CLOSE, RejectedError, False),
        (200, ENV_OPEN + "<x:Other xmlns:x='urn:x'/>" + ENV_CLOSE, ResponseDecodeError, True),
        (200, ENV_OPEN + ACK_OK.replace("true", "maybe") + ENV_CLOSE, ResponseDecodeError, True),
        (200, ENV_OPEN + ACK_OK.replace("000", "0") + ENV_CLOSE, ResponseDecodeError, True),
        (200, ENV_OPEN + ENV_CLOSE, ResponseDecodeError, True),
    ],
)
def test_every_answer_translates_to_one_typed_error(
    status: int, body: str, error_type: type[RequestError], retryable: bool, schema: ServiceSchema
) -> None:
    answer = SoapAnswer(status, body.encode(), "pid-1", None)
    with pytest.raises(error_type) as caught:
        translate_soap_answer(
            answer, SoapOperation.PUSH, url="https://h/ws", schema=schema, zeep_client=load_zeep_client()
        )
    assert type(caught.value) is error_type
    assert caught.value.retryable is retryable
    assert caught.value.process_id == "pid-1"


def test_a_valid_acknowledgement_translates_to_its_fields(schema: ServiceSchema) -> None:
    answer = SoapAnswer(200, (ENV_OPEN + ACK_OK + ENV_CLOSE).encode(), None, None)
    payload = translate_soap_answer(
        answer, SoapOperation.PUSH, url="https://h/ws", schema=schema, zeep_client=load_zeep_client()
    )
    assert payload["Result"] is True
    assert payload["StatusCode"]["Code"] == "000"


# --- streamed pushes ------------------------------------------------------------------------------------


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


async def test_a_streamed_full_load_lands_whole_and_its_envelope_is_valid(
    settings: ClientSettings, simulator: HubjectSimulator, schema: ServiceSchema
) -> None:
    many = {EvseID(f"DE*ABC*E{n}"): (A if n % 2 else OCC) for n in range(1050)}
    pages = Pages(many, page_size=100)
    async with SoapClient(settings) as client:
        await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({EvseID("DE*ABC*EOLD"): A}))
        result = await client.push_evse_status_stream(
            OPERATOR, ActionType.FULL_LOAD, pages, operator_name="ABC & Co"
        )
    assert result.acknowledgement.result is True
    assert pages.reads == 1
    assert simulator.statuses(OPERATOR) == many
    payload = sent_payload(simulator.request_log[-1].body)
    assert schema.errors(payload) == []
    assert payload.findtext(f"{ES}OperatorEvseStatus/{ES}OperatorName") == "ABC & Co"
    assert len(payload.findall(f"{ES}OperatorEvseStatus/{ES}EvseStatusRecord")) == 1050


async def test_a_streamed_push_reads_its_pages_again_on_retry(
    settings: ClientSettings, simulator: HubjectSimulator, fast_retries: RetryPolicy
) -> None:
    simulator.faults.retry_after = None
    simulator.faults.queue.append(FaultKind.SERVER_ERROR)
    pages = Pages({E1: OCC, E2: A}, page_size=1)
    async with SoapClient(settings, retry_policy=fast_retries) as client:
        result = await client.push_evse_status_stream(OperatorID("DE*ABC"), ActionType.UPDATE, pages)
    assert result.attempts == 2
    assert pages.reads == 2
    assert simulator.statuses(OPERATOR) == {E1: OCC, E2: A}


async def test_a_streamed_push_for_a_din_operator_is_valid(tls: TLSMaterial, schema: ServiceSchema) -> None:
    simulator = HubjectSimulator()
    async with serve_simulator(
        simulator, ssl_context=tls.server_context(require_client_cert=False)
    ) as served:
        settings = ClientSettings(url=served.url, ca_cert=tls.ca_cert)
        din_evse = EvseID("+49*810*000*438")
        async with SoapClient(settings) as client:
            await client.push_evse_status_stream(
                OperatorID("+49*810"), ActionType.UPDATE, Pages({din_evse: A}, page_size=10)
            )
    assert simulator.statuses(OperatorID("+49*810")) == {din_evse: A}
    assert schema.errors(sent_payload(simulator.request_log[-1].body)) == []
