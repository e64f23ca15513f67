"""What only the SOAP client has: envelopes, faults, the endpoint, the offline WSDL, the soap extra.

The behaviour it shares with RestClient is in test_client_contract.py. The codec cases run without I/O
(no socket; the shipped WSDL/XSD files are read once).
"""

from __future__ import annotations

import contextlib
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from oicp import (
    ActionType,
    ClientSettings,
    ConfigurationError,
    EvseID,
    EvseStatus,
    EvseStatusRecord,
    HTTPStatusError,
    OperatorID,
    RejectedError,
    RequestError,
    ResponseDecodeError,
    RetryPolicy,
    SoapClient,
    soap_endpoint,
)
from oicp._http import Answer
from oicp._soap_codec import SoapCodec
from oicp.models import PushEvseStatusRequest
from oicp.simulator import FaultKind, HubjectSimulator, ServedSimulator
from oicp.wsdl import NS_COMMON_TYPES, NS_EVSE_STATUS, NS_SOAP_ENV, SOAP_PATH, SoapOperation, load_zeep_client
from tests.conftest import TLSMaterial
from tests.oicp.conftest import E1, OPERATOR, PROVIDER, records, soap_payload

ES = f"{{{NS_EVSE_STATUS}}}"
URL = "https://h" + SOAP_PATH


CODEC = SoapCodec.load()  # reads the shipped WSDL/XSD once, at collection


@pytest.fixture
def codec() -> SoapCodec:
    return CODEC


# --- the codec, without I/O -----------------------------------------------------------------------------


def test_a_push_envelope_uses_hubjects_namespaces_and_element_names(codec: SoapCodec) -> None:
    record = EvseStatusRecord(evse_id=EvseID("de*abc*e9"), evse_status=EvseStatus.AVAILABLE)
    request = PushEvseStatusRequest.of(OperatorID("de*abc"), ActionType.UPDATE, [record], "ABC Charging")
    payload = soap_payload(codec.encode_push(request).decode())
    assert payload.tag == f"{ES}eRoamingPushEvseStatus"
    assert codec.schema.errors(payload) == []
    assert payload.findtext(f"{ES}ActionType") == "update"
    block = payload.find(f"{ES}OperatorEvseStatus")
    assert block is not None
    assert block.findtext(f"{ES}OperatorID") == "DE*ABC"
    assert block.findtext(f"{ES}OperatorName") == "ABC Charging"
    # OICP 2.x SOAP spells it EvseId (REST 2.3: EvseID)
    assert block.findtext(f"{ES}EvseStatusRecord/{ES}EvseId") == "DE*ABC*E9"
    assert block.findtext(f"{ES}EvseStatusRecord/{ES}EvseStatus") == "Available"


@pytest.mark.parametrize(
    ("operator_ids", "evse_ids", "expected"),
    [
        (None, None, [("eRoamingPullEvseStatus", 0)]),
        ([OPERATOR], None, [("eRoamingPullEvseStatusByOperatorID", 0)]),
        (
            None,
            [EvseID(f"DE*ABC*E{n}") for n in range(250)],
            [("eRoamingPullEvseStatusById", n) for n in (100, 100, 50)],
        ),
    ],
)
def test_pulls_are_encoded_as_their_operation_in_chunks_of_100(
    codec: SoapCodec,
    operator_ids: list[OperatorID] | None,
    evse_ids: list[EvseID] | None,
    expected: list[tuple[str, int]],
) -> None:
    pulls = codec.encode_pulls(PROVIDER, operator_ids, evse_ids)
    payloads = [soap_payload(body.decode()) for _, body in pulls]
    assert [(etree.QName(p).localname, len(p.findall(f"{ES}EvseId"))) for p in payloads] == expected
    assert [operation.value for operation, _ in pulls] == [name for name, _ in expected]
    assert all(codec.schema.errors(p) == [] for p in payloads)


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
        (500, ENV_OPEN + ACK_OK + ENV_CLOSE, HTTPStatusError, True),
    ],
)
def test_every_answer_decodes_to_one_typed_error(
    status: int, body: str, error_type: type[RequestError], retryable: bool, codec: SoapCodec
) -> None:
    with pytest.raises(error_type) as caught:
        codec.decode_push(Answer(status, body.encode(), "pid-1"), URL)
    assert type(caught.value) is error_type
    assert caught.value.retryable is retryable
    assert caught.value.process_id == "pid-1"


def test_a_client_fault_is_022_with_its_detail(codec: SoapCodec) -> None:
    detail = "<detail><e>EvseId: pattern mismatch</e></detail>"
    body = ENV_OPEN + fault("Client", "invalid").replace("</s:Fault>", detail + "</s:Fault>") + ENV_CLOSE
    with pytest.raises(RejectedError) as caught:
        codec.decode_push(Answer(500, body.encode()), URL)
    assert caught.value.code == "022"
    assert caught.value.additional_info == "EvseId: pattern mismatch"


def test_a_valid_acknowledgement_decodes_to_its_fields(codec: SoapCodec) -> None:
    acknowledgement = codec.decode_push(Answer(200, (ENV_OPEN + ACK_OK + ENV_CLOSE).encode()), URL)
    assert acknowledgement.result is True
    assert acknowledgement.status_code.code == "000"


def test_a_pull_answer_with_a_bad_status_is_an_http_error(codec: SoapCodec) -> None:
    answer = f'<e:eRoamingEvseStatus xmlns:e="{NS_EVSE_STATUS}"><e:EvseStatuses/></e:eRoamingEvseStatus>'
    with pytest.raises(HTTPStatusError) as caught:
        codec.decode_pull(Answer(503, (ENV_OPEN + answer + ENV_CLOSE).encode()), SoapOperation.PULL, URL)
    assert caught.value.status == 503
    assert (
        codec.decode_pull(Answer(200, (ENV_OPEN + answer + ENV_CLOSE).encode()), SoapOperation.PULL, URL)
        == {}
    )


SOAP_BODIES = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from(
            [ENV_OPEN, ENV_CLOSE, ACK_OK, fault("Client", "x"), fault("Server", "y"), "<", "&", "\x00", "é"]
        ),
        max_size=6,
    ).map(lambda parts: "".join(parts).encode()),
)


@settings(max_examples=60, deadline=None)
@given(status=st.sampled_from([200, 400, 404, 500, 503]), body=SOAP_BODIES)
def test_the_soap_decoder_fed_anything_raises_only_request_errors(status: int, body: bytes) -> None:
    codec = CODEC
    for operation in SoapOperation:
        with contextlib.suppress(RequestError):  # anything else escapes and fails the test
            if operation is SoapOperation.PUSH:
                codec.decode_push(Answer(status, body), URL)
            else:
                codec.decode_pull(Answer(status, body), operation, URL)


# --- endpoint, offline WSDL, the soap extra --------------------------------------------------------------


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
    assert SoapClient(ClientSettings(url=url)).target_url == endpoint


def test_the_wsdl_is_loaded_offline_and_nothing_else_is_fetched() -> None:
    client = load_zeep_client()
    (binding,) = client.wsdl.bindings.values()
    assert "eRoamingPushEvseStatus" in str(binding.get("eRoamingPushEvseStatus"))
    with pytest.raises(ConfigurationError, match="only the shipped"):
        client.transport.load("https://service-qa.hubject.com/ws/HubjectEvseStatus_V2.1?wsdl")


async def test_without_the_soap_extra_entering_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, settings: ClientSettings
) -> None:
    # A None entry in sys.modules makes ``import zeep`` fail as if it were not installed.
    for name in [m for m in sys.modules if m == "oicp._soap_codec" or m.split(".")[0] == "zeep"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "zeep", None)
    with pytest.raises(ConfigurationError, match=r"oicp\[soap\]"):
        async with SoapClient(settings):
            pass


# --- against the simulator ------------------------------------------------------------------------------


async def test_each_call_sends_its_soap_operation(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    async with SoapClient(settings) as client:
        await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: EvseStatus.OCCUPIED}))
        await client.pull_evse_status(PROVIDER)
        await client.pull_evse_status(PROVIDER, operator_ids=[OPERATOR])
        await client.pull_evse_status(PROVIDER, evse_ids=[E1])
    sent = [soap_payload(entry.body).tag for entry in simulator.request_log]
    assert sent == [
        f"{ES}eRoamingPushEvseStatus",
        f"{ES}eRoamingPullEvseStatus",
        f"{ES}eRoamingPullEvseStatusByOperatorID",
        f"{ES}eRoamingPullEvseStatusById",
    ]


async def test_a_streamed_envelope_escapes_the_operator_name(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    async def pages():  # type: ignore[no-untyped-def]
        yield records({E1: EvseStatus.AVAILABLE})

    async with SoapClient(settings) as client:
        await client.push_evse_status_stream(OPERATOR, ActionType.UPDATE, pages, operator_name="ABC & Co")
    payload = soap_payload(simulator.request_log[-1].body)
    assert payload.findtext(f"{ES}OperatorEvseStatus/{ES}OperatorName") == "ABC & Co"


async def test_soap_server_fault_is_a_retryable_http_500_with_fault_text_and_process_id(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    simulator.faults.error_5xx_status = 500
    simulator.faults.queue.append(FaultKind.SERVER_ERROR)
    async with SoapClient(settings, retry_policy=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(HTTPStatusError) as caught:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: EvseStatus.OCCUPIED}))
    assert caught.value.status == 500
    assert "SOAP Fault Server" in caught.value.body_excerpt
    assert "Simulated server error" in caught.value.body_excerpt
    assert caught.value.process_id == simulator.request_log[-1].process_id
    assert caught.value.retryable


async def test_wrong_soap_path_is_a_permanent_404_with_a_hint(
    served: ServedSimulator, tls: TLSMaterial
) -> None:
    settings = ClientSettings(
        url=served.base_url + "/ws/HubjectEvseStatus_V1",
        client_cert=tls.client_cert,
        client_key=tls.client_key,
        ca_cert=tls.ca_cert,
    )
    waits: list[float] = []
    async with SoapClient(settings, on_retry=lambda _attempt, _error, wait: waits.append(wait)) as client:
        with pytest.raises(HTTPStatusError) as caught:
            await client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: EvseStatus.OCCUPIED}))
    assert caught.value.status == 404
    assert not caught.value.retryable
    assert SOAP_PATH in (caught.value.hint or "")
    assert waits == []
