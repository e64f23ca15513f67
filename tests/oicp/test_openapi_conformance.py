"""Every request the client sends validates against Hubject's official OpenAPI, checked by openapi-core
against the verbatim files shipped in ``oicp/openapi/`` (not a hand-copied schema).

The EMP OpenAPI declares the pull body as ``oneOf`` the three pull requests, but a ByID or ByOperatorID
body also satisfies the plain request, so ``oneOf`` can never pass for them (docs/oicp.md, "Known quirks
of the OpenAPI files"). Those two are checked against their own schema files from the same OpenAPI.
"""

from __future__ import annotations

import json
from functools import cache

import pytest
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest

from oicp import ClientSettings, RestClient
from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord
from oicp.openapi_schemas import OPENAPI_ROOT, Schema, validation_errors
from oicp.simulator import HubjectSimulator, LoggedRequest

HUBJECT_QA = "https://service-qa.hubject.com"


@cache
def official(side: str) -> OpenAPI:
    # The files' own ``info: {$ref: ...}`` breaks openapi-spec-validator's check of the document
    # (not of requests), so only that up-front check is switched off.
    return OpenAPI.from_file_path(
        str(OPENAPI_ROOT / f"{side}-2.3" / "src" / "openapi.yaml"), config=Config(spec_validator_cls=None)
    )


def as_openapi_request(entry: LoggedRequest) -> MockRequest:
    return MockRequest(
        HUBJECT_QA, "post", entry.path, content_type="application/json", data=json.dumps(entry.body).encode()
    )


async def test_every_push_and_pull_the_client_sends_is_valid_per_hubjects_openapi(
    settings: ClientSettings, simulator: HubjectSimulator
) -> None:
    statuses = list(EvseStatus)
    many = [
        EvseStatusRecord(evse_id=EvseID(f"DE*ABC*E{n}*{n % 3}"), evse_status=statuses[n % len(statuses)])
        for n in range(40)
    ]
    async with RestClient(settings) as client:
        for action in ActionType:
            await client.push_evse_status(OperatorID("DE*ABC"), action, many)
            await client.push_evse_status(
                OperatorID("deabc"), action, many[:1], operator_name="ABC Charging GmbH"
            )
        await client.push_evse_status(
            OperatorID("+49*810"),
            ActionType.UPDATE,
            [EvseStatusRecord(evse_id=EvseID("+49*810*000*438"), evse_status=EvseStatus.AVAILABLE)],
        )
        await client.pull_evse_status(ProviderID("DE-XYZ"))
        await client.pull_evse_status(ProviderID("DE*XYZ"), operator_ids=[OperatorID("DE*ABC")])
        await client.pull_evse_status(ProviderID("DE-XYZ"), evse_ids=[e.evse_id for e in many])
    pushes = [entry for entry in simulator.request_log if entry.operation == "push"]
    assert len(pushes) == 2 * len(ActionType) + 1
    for entry in pushes:
        official("cpo").validate_request(as_openapi_request(entry))
    pulls = [entry for entry in simulator.request_log if entry.operation == "pull"]
    assert len(pulls) == 3
    official("emp").validate_request(as_openapi_request(pulls[0]))
    assert validation_errors(Schema.PULL_EVSE_STATUS_BY_OPERATOR_ID, pulls[1].body) == []
    assert validation_errors(Schema.PULL_EVSE_STATUS_BY_ID, pulls[2].body) == []
    assert all(entry.http_status == 200 for entry in simulator.request_log)


def test_the_official_validator_does_reject_a_broken_push() -> None:
    """The check above is not vacuous: openapi-core with these files refuses a bad EvseID."""
    body = {
        "ActionType": "update",
        "OperatorEvseStatus": {
            "OperatorID": "DE*ABC",
            "EvseStatusRecord": [{"EvseID": "x", "EvseStatus": "Available"}],
        },
    }
    entry = LoggedRequest(
        "POST", "/api/oicp/evsepush/v21/operators/DE*ABC/status-records", "push", 0.0, body=body
    )
    with pytest.raises(Exception, match="does not match"):
        official("cpo").validate_request(as_openapi_request(entry))


def test_the_simulators_answers_are_valid_per_hubjects_openapi() -> None:
    simulator = HubjectSimulator()
    simulator.state.apply_push(
        OperatorID("DE*ABC"),
        ActionType.FULL_LOAD,
        [EvseStatusRecord(evse_id=EvseID("DE*ABC*E1"), evse_status=EvseStatus.OCCUPIED)],
        "ABC",
    )
    assert (
        validation_errors(Schema.EVSE_STATUS_RESPONSE, simulator.handle_pull({"ProviderID": "DE-XYZ"})) == []
    )
    by_id = simulator.handle_pull({"ProviderID": "DE-XYZ", "EvseID": ["DE*ABC*E1", "DE*ABC*E2"]})
    assert validation_errors(Schema.EVSE_STATUS_BY_ID_RESPONSE, by_id) == []
