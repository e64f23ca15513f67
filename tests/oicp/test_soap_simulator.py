"""The simulator's SOAP endpoint, spoken to with hand-written envelopes over real loopback HTTPS with mTLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import pytest
from lxml import etree

from oicp import ClientSettings, RestClient, RetryPolicy, SoapClient, client_ssl_context
from oicp._http import Answer as HttpAnswer
from oicp._soap_codec import SoapCodec
from oicp.errors import RateLimitedError, RejectedError
from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord
from oicp.simulator import HubjectSimulator, ServedSimulator
from oicp.wsdl import (
    NS_COMMON_TYPES,
    NS_EVSE_STATUS,
    NS_SOAP_ENV,
    SOAP_PATH,
    ServiceSchema,
    SoapOperation,
    load_zeep_client,
)

OPERATOR = OperatorID("DE*ABC")
E1, E2 = EvseID("DE*ABC*E1"), EvseID("DE*ABC*E2")
ENV, ES, CT = f"{{{NS_SOAP_ENV}}}", f"{{{NS_EVSE_STATUS}}}", f"{{{NS_COMMON_TYPES}}}"


def push_envelope(evse_id: str = "DE*ABC*E1", operator_name: str | None = None) -> str:
    name = f"<e:OperatorName>{operator_name}</e:OperatorName>" if operator_name is not None else ""
    return (
        f'<s:Envelope xmlns:s="{NS_SOAP_ENV}" xmlns:e="{NS_EVSE_STATUS}"><s:Header/><s:Body>'
        "<e:eRoamingPushEvseStatus><e:ActionType>update</e:ActionType><e:OperatorEvseStatus>"
        f"<e:OperatorID>DE*ABC</e:OperatorID>{name}<e:EvseStatusRecord><e:EvseId>{evse_id}</e:EvseId>"
        "<e:EvseStatus>Occupied</e:EvseStatus></e:EvseStatusRecord></e:OperatorEvseStatus>"
        "</e:eRoamingPushEvseStatus></s:Body></s:Envelope>"
    )


@dataclass
class Answer:
    status: int
    body: bytes
    process_id: str | None

    @property
    def payload(self) -> etree._Element:
        body = etree.fromstring(self.body).find(f"{ENV}Body")
        assert body is not None
        return body[0]


class Send(Protocol):
    async def __call__(self, envelope: str | bytes, soap_action: str | None = None) -> Answer: ...


@pytest.fixture
async def post(served: ServedSimulator, settings: ClientSettings) -> AsyncIterator[Send]:
    connector = aiohttp.TCPConnector(ssl=client_ssl_context(settings))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(envelope: str | bytes, soap_action: str | None = None) -> Answer:
            headers = {"Content-Type": "text/xml; charset=utf-8"}
            if soap_action is not None:
                headers["SOAPAction"] = soap_action
            data = envelope.encode() if isinstance(envelope, str) else envelope
            async with session.post(served.base_url + SOAP_PATH, data=data, headers=headers) as response:
                return Answer(response.status, await response.read(), response.headers.get("Process-ID"))

        yield send


@pytest.fixture(scope="module")
def schema() -> ServiceSchema:
    return ServiceSchema.load()


async def test_a_valid_push_is_applied_and_acknowledged_with_a_valid_answer(
    post: Send, simulator: HubjectSimulator, schema: ServiceSchema
) -> None:
    answer = await post(push_envelope(), '"eRoamingPushEvseStatus"')
    assert answer.status == 200
    assert answer.payload.tag == f"{CT}eRoamingAcknowledgement"
    assert answer.payload.findtext(f"{CT}Result") == "true"
    assert answer.payload.findtext(f"{CT}StatusCode/{CT}Code") == "000"
    assert schema.errors(answer.payload) == []
    assert answer.process_id == simulator.request_log[-1].process_id
    assert simulator.statuses(OPERATOR) == {E1: EvseStatus.OCCUPIED}
    assert simulator.request_log[-1].action_type == "update"


@pytest.mark.parametrize(
    ("envelope", "soap_action", "complaint"),
    [
        (push_envelope(evse_id="not-an-evse"), None, "EvseId"),
        (push_envelope(operator_name="N" * 101), None, "OperatorName"),
        ("this is not xml", None, "well-formed"),
        ("<Envelope/>", None, "SOAP 1.1 Envelope"),
        (push_envelope().replace("eRoamingPushEvseStatus", "eRoamingPushEvseData"), None, "not an operation"),
        (push_envelope(), '"eRoamingPullEvseStatus"', "SOAPAction"),
    ],
)
async def test_an_invalid_request_gets_a_client_fault_and_changes_nothing(
    envelope: str,
    soap_action: str | None,
    complaint: str,
    post: Send,
    simulator: HubjectSimulator,
) -> None:
    answer = await post(envelope, soap_action)
    assert answer.status == 500
    fault = answer.payload
    assert fault.tag == f"{ENV}Fault"
    assert fault.findtext("faultcode") == "soapenv:Client"
    assert fault.findtext("faultstring") == "Validation error: The request message is invalid"
    errors = [node.text or "" for node in fault.iterfind("detail/Validation/Errors/Error")]
    assert any(complaint in error for error in errors), errors
    assert simulator.all_statuses() == {}
    assert answer.process_id == simulator.request_log[-1].process_id
    assert simulator.request_log[-1].http_status == 500


async def test_a_client_fault_maps_to_a_permanent_022_rejection(post: Send, schema: ServiceSchema) -> None:
    answer = await post(push_envelope(evse_id="not-an-evse"))
    with pytest.raises(RejectedError) as caught:
        SoapCodec(load_zeep_client(), schema).decode(
            HttpAnswer(answer.status, answer.body, answer.process_id),
            SoapOperation.PUSH,
            "https://h" + SOAP_PATH,
        )
    assert caught.value.code == "022"
    assert not caught.value.retryable
    assert "EvseId" in (caught.value.additional_info or "")
    assert caught.value.process_id == answer.process_id


async def test_soap_and_rest_share_the_simulated_state(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    provider = ProviderID("DE-XYZ")
    async with SoapClient(settings) as soap, RestClient(settings) as rest:
        await soap.push_evse_status(
            OPERATOR, ActionType.FULL_LOAD, [EvseStatusRecord(evse_id=E1, evse_status=EvseStatus.AVAILABLE)]
        )
        await rest.push_evse_status(
            OPERATOR, ActionType.UPDATE, [EvseStatusRecord(evse_id=E2, evse_status=EvseStatus.RESERVED)]
        )
        expected = {E1: EvseStatus.AVAILABLE, E2: EvseStatus.RESERVED}
        assert await rest.pull_evse_status(provider) == expected
        assert await soap.pull_evse_status(provider) == expected
    assert simulator.push_count(OPERATOR) == 2
    assert simulator.request_log[0].path == SOAP_PATH


async def test_the_rate_limit_window_is_shared_with_rest(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    simulator.faults.calls_per_minute = 1
    record = [EvseStatusRecord(evse_id=E1, evse_status=EvseStatus.AVAILABLE)]
    async with (
        RestClient(settings) as rest,
        SoapClient(settings, retry_policy=RetryPolicy(max_attempts=1)) as soap,
    ):
        await rest.push_evse_status(OPERATOR, ActionType.UPDATE, record)
        with pytest.raises(RateLimitedError):
            await soap.push_evse_status(OPERATOR, ActionType.UPDATE, record)
    assert simulator.request_log[-1].http_status == 429


async def test_pull_answers_validate_against_the_xsd(
    post: Send, simulator: HubjectSimulator, schema: ServiceSchema
) -> None:
    await post(push_envelope())
    by_id = (
        f'<s:Envelope xmlns:s="{NS_SOAP_ENV}" xmlns:e="{NS_EVSE_STATUS}"><s:Body>'
        "<e:eRoamingPullEvseStatusById><e:ProviderID>DE-XYZ</e:ProviderID>"
        "<e:EvseId>DE*ABC*E1</e:EvseId><e:EvseId>DE*ABC*E2</e:EvseId>"
        "</e:eRoamingPullEvseStatusById></s:Body></s:Envelope>"
    )
    answer = await post(by_id)
    assert answer.status == 200
    assert schema.errors(answer.payload) == []
    found = {
        node.findtext(f"{ES}EvseId"): node.findtext(f"{ES}EvseStatus")
        for node in answer.payload.iterfind(f"{ES}EvseStatusRecords/{ES}EvseStatusRecord")
    }
    assert found == {"DE*ABC*E1": "Occupied", "DE*ABC*E2": "EvseNotFound"}
